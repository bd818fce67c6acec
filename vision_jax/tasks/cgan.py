"""A class-conditional GAN (DCGAN-style, `vision_jax.models.cgan`) as a trainer task.

State: one parameter tree {'generator': ..., 'discriminator': ...} with one named
optimizer each (`config.optimizers.generator` / `.discriminator`, their `params`
selecting the two sub-trees) and an EMA of the generator (`config.ema`). A train step
updates the discriminator on a real batch and a fake batch of uniformly drawn labels,
then the generator against the updated discriminator (`config.loss.kind`:
non_saturating | lsgan | hinge). Reported losses: d_loss and g_loss.

Evaluation is the task's own (`evaluate`), on device and by a judge:
  * a judge classifier (`vision_jax.evaluation.judge`) is trained deterministically on
    the real train split and cached (`eval.judge_cache_dir`, default
    `<data_dir>/judges`); it reports its own accuracy on the real test images
    (`cgan/judge_real_accuracy`, the upper bound of what generated digits can score);
  * `eval.samples_per_class` digits per class (1,000 for 10 classes) are generated with
    the EMA generator (`eval.use_ema`) from `context.rng`, and scored:
    `cgan/conditioning_accuracy` = the judge's accuracy on them against the labels they
    were asked for, and `cgan/frechet_distance` = the Fréchet distance of the judge's
    penultimate features between them and the real test images, next to
    `cgan/frechet_distance_floor`, the same distance between the real train and test
    images;
  * the picture holds one row per class (`eval.picture_columns` samples each).
Prediction (`launch.predict --labels=3,7`): one row of `eval.picture_columns` samples per
requested label, from fixed noise (config.seed).

Images are uint8 in the pipeline and [-1, 1] inside the networks
(`vision_jax.ops.image.to_signed_unit`).
"""
import jax
import jax.numpy as jnp
import numpy as np

from vision_jax.data import labelled_images
from vision_jax.evaluation import judge
from vision_jax.losses import gan as gan_losses
from vision_jax.models import cgan
from vision_jax.ops import image as image_ops
from vision_jax.tasks import base
from vision_jax.tasks import judge_cache
from vision_jax.tasks import networks
from vision_jax.train import config as config_lib
from vision_jax.train import optim
from vision_jax.train.state import TrainState
from vision_jax.viz import grid as grid_lib

OPTIMIZERS = ('generator', 'discriminator')


class ConditionalGanTask(base.Task):

  def __init__(self, config):
    super().__init__(config)
    data = config.data
    self.source = labelled_images.get_labelled_image_source(data.dataset, data.get('data_dir'))
    self.num_classes = self.source.num_classes
    self.image_size = tuple(data.image_size)
    if self.image_size[0] != self.image_size[1]:
      raise config_lib.ConfigError(f'data.image_size={self.image_size}: the GAN makes '
                                   'square images')
    channels = self.source.image_shape[-1]
    m = config.model
    dtype = jnp.dtype(m.dtype)
    try:
      self.generator = cgan.Generator(
          num_classes=self.num_classes, latent_dim=m.latent_dim, embed_dim=m.embed_dim,
          widths=tuple(m.generator_widths), image_size=self.image_size[0], channels=channels,
          upsample=m.upsample, norm=m.generator_norm, dtype=dtype)
      self.discriminator = cgan.Discriminator(
          num_classes=self.num_classes, widths=tuple(m.discriminator_widths),
          image_size=self.image_size[0], channels=channels, conditioning=m.conditioning,
          norm=m.discriminator_norm, dtype=dtype)
      gan_losses.generator_loss(jnp.zeros(1), config.loss.kind)
    except ValueError as e:
      raise config_lib.ConfigError(f'config.model / config.loss: {e}') from e

  # State and training.

  def init_state(self, rng, total_steps):
    b = 2
    labels = jnp.zeros((b,), jnp.int32)
    params, model_state = networks.init_networks({
        'generator': (self.generator,
                      (jnp.zeros((b, self.config.model.latent_dim)), labels)),
        'discriminator': (self.discriminator, (
            jnp.zeros((b, *self.image_size, self.source.image_shape[-1])), labels)),
    }, rng)
    return TrainState.create(
        params, optim.make_optimizers(self.config, total_steps, required=OPTIMIZERS),
        model_state, ema=optim.ema_from_config(self.config))

  def _apply(self, name, params, model_state, *args, train):
    """(output, {collection: {name: updated}}) of one network."""
    return networks.apply(getattr(self, name), name, params, model_state, *args,
                          train=train)

  def loss_names(self, metrics):
    return [name for name in ('d_loss', 'g_loss') if name in metrics]

  def _d_loss(self, params, model_state, real, real_labels, z, fake_labels):
    fake, g_updates = self._apply('generator', params, model_state, z, fake_labels,
                                  train=True)
    fake = jax.lax.stop_gradient(fake)
    state = networks.merge(model_state, g_updates)
    real_logits, updates = self._apply('discriminator', params, state, real, real_labels,
                                       train=True)
    state = networks.merge(state, updates)
    fake_logits, updates = self._apply('discriminator', params, state, fake, fake_labels,
                                       train=True)
    state = networks.merge(state, updates)
    loss = gan_losses.discriminator_loss(real_logits, fake_logits, self.config.loss.kind)
    metrics = {'d_loss': loss, 'd_real': jnp.mean(real_logits),
               'd_fake': jnp.mean(fake_logits)}
    return loss, (metrics, state)

  def _g_loss(self, params, model_state, z, fake_labels):
    fake, g_updates = self._apply('generator', params, model_state, z, fake_labels,
                                  train=True)
    logits, _ = self._apply('discriminator', params, model_state, fake, fake_labels,
                            train=True)  # The discriminator's statistics are not kept.
    loss = gan_losses.generator_loss(logits, self.config.loss.kind)
    return loss, ({'g_loss': loss}, networks.merge(model_state, g_updates))

  def train_step(self, state, batch, rng):
    real = image_ops.to_signed_unit(batch['image'])
    real_labels = batch['label']
    b = real.shape[0]
    d_z, d_y, g_z, g_y = jax.random.split(rng, 4)
    latent = self.config.model.latent_dim
    z = jax.random.normal(d_z, (b, latent))
    fake_labels = jax.random.randint(d_y, (b,), 0, self.num_classes)
    state, d_metrics = state.minimize(self._d_loss, state.model_state, real, real_labels, z,
                                      fake_labels, optimizers='discriminator')
    z = jax.random.normal(g_z, (b, latent))
    fake_labels = jax.random.randint(g_y, (b,), 0, self.num_classes)
    state, g_metrics = state.minimize(self._g_loss, state.model_state, z, fake_labels,
                                      optimizers='generator')
    return state, {**d_metrics, **g_metrics}

  def train_data(self, *, start_batch, process_index, process_count):
    data = self.config.data
    return labelled_images.make_labelled_image_dataset(
        data.dataset, data.train_split, data_dir=data.get('data_dir'),
        batch_size=self.config.train.batch_size, training=True,
        image_size=self.image_size, hflip_prob=data.get('hflip_prob', 0.0),
        seed=self.config.seed, start_batch=start_batch, process_index=process_index,
        process_count=process_count)

  # Sampling.

  def generate(self, state, labels, z) -> jax.Array:
    """labels [B] int, z [B, latent_dim] -> [B, H, W, C] uint8 samples (eval mode;
    the EMA generator when eval.use_ema)."""
    params = state.with_params(state.ema_params) if (
        self.config.eval.get('use_ema', True) and state.ema_params) else state.params
    images, _ = self._apply('generator', params, state.model_state, z, labels, train=False)
    return image_ops.signed_unit_to_uint8(images)

  def predict_step(self, state, batch):
    return {'image': self.generate(state, batch['label'], batch['z'])}

  def _noise(self, n: int, seed_salt: int) -> np.ndarray:
    rng = np.random.default_rng([self.config.seed, seed_salt])
    return rng.standard_normal((n, self.config.model.latent_dim)).astype(np.float32)

  def prediction_batch(self, request):
    labels = request.get('labels')
    if not labels:
      raise base.PredictionRequestError(
          f'task {self.config.task!r} generates images of classes: pass --labels, e.g. '
          f'--labels=3,7 (classes 0..{self.num_classes - 1}: '
          f'{", ".join(self.source.class_names)})')
    bad = [label for label in labels if not 0 <= int(label) < self.num_classes]
    if bad:
      raise base.PredictionRequestError(
          f'--labels: {bad} outside 0..{self.num_classes - 1} (the classes of '
          f'{self.config.data.dataset}: {", ".join(self.source.class_names)})')
    columns = int(self.config.eval.picture_columns)
    label = np.repeat(np.asarray(labels, np.int32), columns)
    return {'label': label, 'z': self._noise(len(label), 1)}

  def draw_prediction(self, batch, predictions):
    return self._rows(predictions['image'], int(self.config.eval.picture_columns))

  def _rows(self, images: np.ndarray, columns: int) -> np.ndarray:
    """[N, H, W, C] uint8 -> one [H', W', 3] picture, `columns` images per row."""
    upscale = int(self.config.eval.get('draw_upscale', 2))
    images = np.repeat(np.repeat(images, upscale, axis=1), upscale, axis=2)
    if images.shape[-1] == 1:
      images = np.repeat(images, 3, axis=-1)
    return grid_lib.image_grid(images, columns=columns)

  # Evaluation.

  def evaluate(self, context):
    data = self.config.data
    hparams = dict(self.config.eval.judge.to_dict()) if 'judge' in self.config.eval else {}
    hparams['num_classes'] = self.num_classes
    real = {}
    for split in (data.train_split, data.eval_split):
      images, labels = labelled_images.load_arrays(
          data.dataset, split, data_dir=data.get('data_dir'), image_size=self.image_size)
      real[split] = (images.astype(np.float32) / 255.0, labels)
    train_x, train_y = real[data.train_split]
    test_x, test_y = real[data.eval_split]
    variables = judge.load_or_train_judge(judge_cache.judge_cache_path(
        self.config, split=data.train_split, image_size=self.image_size, hparams=hparams), train_x, train_y,
                                          **hparams)
    test_logits, test_features = judge.predict(variables, test_x, **hparams)
    _, train_features = judge.predict(variables, train_x, **hparams)

    per_class = int(self.config.eval.samples_per_class)
    labels = np.repeat(np.arange(self.num_classes, dtype=np.int32), per_class)
    z = jax.device_get(jax.random.normal(context.rng,
                                         (len(labels), self.config.model.latent_dim)))
    generate = jax.jit(self.generate, out_shardings=context.batch_sharding)
    batch = context.shard({'label': labels, 'z': np.asarray(z, np.float32)})
    samples = context.to_host(generate(context.state, batch['label'], batch['z']))
    fake_logits, fake_features = judge.predict(
        variables, samples.astype(np.float32) / 255.0, **hparams)
    metrics = {
        'cgan/judge_real_accuracy': judge.accuracy(test_logits, test_y),
        'cgan/conditioning_accuracy': judge.accuracy(fake_logits, labels),
        'cgan/frechet_distance': judge.frechet_distance(fake_features, test_features),
        'cgan/frechet_distance_floor': judge.frechet_distance(train_features, test_features),
    }
    columns = int(self.config.eval.picture_columns)
    shown = samples.reshape(self.num_classes, per_class, *samples.shape[1:])[:, :columns]
    picture = self._rows(shown.reshape(-1, *samples.shape[1:]), columns)
    return base.EvalResult(metrics, picture[None])


def create(config) -> ConditionalGanTask:
  return ConditionalGanTask(config)
