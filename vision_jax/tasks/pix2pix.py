"""pix2pix (Isola et al. 2017): paired image-to-image translation with a conditional GAN
and an L1 term, as a trainer task.

Networks (`config.model`): a U-Net generator (`nn.unet.UNetGenerator`, dropout kept on
at test time as the paper's noise, `eval.dropout`) and a PatchGAN discriminator
(`nn.patchgan.PatchDiscriminator`) that sees the input and an output stacked on the
channels (conditional). One named Adam optimizer each (`config.optimizers.generator` /
`.discriminator`).

A train step, with x the input, y the target and G(x) computed once:
  D: 0.5 (crit(D(x, y), real) + crit(D(x, G(x)), fake))        (the reference halves it)
  G: loss.gan_weight crit(D(x, G(x)), real) + loss.l1_weight |G(x) - y|_1
crit = `loss.kind` (vanilla BCE with logits | lsgan | hinge, `losses.gan`). The paper's
L1-only and GAN-only rows set gan_weight or l1_weight to 0 (D still trains, unused by G
when gan_weight is 0). Reported: d_loss, g_loss, g_gan, g_l1.

Evaluation is the task's own (`vision_jax.tasks.translation_eval`): every validation
pair is translated and scored by an FCN-score judge (a segmenter trained on real target
images, cached) against the input's semantic map, beside the judge's score on the real
targets, and by L1, PSNR, SSIM, a sharpness ratio and an input-dependence score.

Images are uint8 in the pipeline and [-1, 1] inside the networks.
"""
import jax
import jax.numpy as jnp

from vision_jax.data import image_pairs
from vision_jax.losses import gan as gan_losses
from vision_jax.nn import patchgan
from vision_jax.nn import unet
from vision_jax.ops import image as image_ops
from vision_jax.tasks import base
from vision_jax.tasks import networks
from vision_jax.tasks import translation_eval
from vision_jax.train import config as config_lib
from vision_jax.train import optim
from vision_jax.train.state import TrainState

OPTIMIZERS = ('generator', 'discriminator')


class Pix2PixTask(base.Task):

  def __init__(self, config):
    super().__init__(config)
    data = config.data
    self.source = image_pairs.get_paired_image_source(data.dataset, data.get('data_dir'))
    self.image_size = tuple(int(s) for s in data.image_size)
    m = config.model
    dtype = jnp.dtype(m.dtype)
    try:
      self.generator = unet.UNetGenerator(
          out_channels=3, features=m.generator_features, depth=m.generator_depth,
          max_features=m.generator_max_features, norm=m.norm, dropout=m.dropout,
          dtype=dtype)
      self.discriminator = patchgan.PatchDiscriminator(
          features=m.discriminator_features, n_layers=m.discriminator_layers, norm=m.norm,
          dtype=dtype)
      unet.check_divisible('UNetGenerator', (1, *self.image_size, 3), 2 ** m.generator_depth,
                           f'model.generator_depth (={m.generator_depth})')
      gan_losses.gan_criterion(jnp.zeros(1), True, config.loss.kind)
    except ValueError as e:
      raise config_lib.ConfigError(f'config.data.image_size / model / loss: {e}') from e

  # State and training.

  def init_state(self, rng, total_steps):
    x = jnp.zeros((2, *self.image_size, 3))
    params, model_state = networks.init_networks({
        'generator': (self.generator, (x,)),
        'discriminator': (self.discriminator, (jnp.concatenate([x, x], -1),)),
    }, rng)
    return TrainState.create(
        params, optim.make_optimizers(self.config, total_steps, required=OPTIMIZERS),
        model_state)

  def _generate(self, params, model_state, x, rng, *, train):
    return networks.apply(self.generator, 'generator', params, model_state, x, train=train,
                          rngs={'dropout': rng}, dropout=True if not train else None)

  def _discriminate(self, params, model_state, x, y, *, train):
    return networks.apply(self.discriminator, 'discriminator', params, model_state,
                          jnp.concatenate([x, y], -1), train=train)

  def _d_loss(self, params, model_state, x, y, fake):
    kind = self.config.loss.kind
    real_logits, updates = self._discriminate(params, model_state, x, y, train=True)
    state = networks.merge(model_state, updates)
    fake_logits, updates = self._discriminate(params, state, x, fake, train=True)
    loss = gan_losses.halved_discriminator_loss(real_logits, fake_logits, kind)
    return loss, ({'d_loss': loss}, networks.merge(state, updates))

  def _g_loss(self, params, model_state, x, y, rng):
    loss_config = self.config.loss
    fake, g_updates = self._generate(params, model_state, x, rng, train=True)
    logits, _ = self._discriminate(params, model_state, x, fake, train=True)
    g_gan = gan_losses.translation_generator_loss(logits, loss_config.kind)
    g_l1 = gan_losses.l1_loss(fake, y)
    loss = loss_config.gan_weight * g_gan + loss_config.l1_weight * g_l1
    return loss, ({'g_loss': loss, 'g_gan': g_gan, 'g_l1': g_l1},
                  networks.merge(model_state, g_updates))

  def train_step(self, state, batch, rng):
    x = image_ops.to_signed_unit(batch['input'])
    y = image_ops.to_signed_unit(batch['target'])
    fake, _ = self._generate(state.params, state.model_state, x, rng, train=True)
    # D first, on this step's G(x); then G against the updated D, with the same dropout
    # noise (the same G(x)); _g_loss repeats the forward pass to differentiate it.
    state, d_metrics = state.minimize(self._d_loss, state.model_state, x, y,
                                      jax.lax.stop_gradient(fake),
                                      optimizers='discriminator')
    state, g_metrics = state.minimize(self._g_loss, state.model_state, x, y, rng,
                                      optimizers='generator')
    return state, {**d_metrics, **g_metrics}

  def loss_names(self, metrics):
    return [name for name in ('d_loss', 'g_loss') if name in metrics]

  def train_data(self, *, start_batch, process_index, process_count):
    data = self.config.data
    return image_pairs.make_paired_image_dataset(
        data.dataset, data.train_split, data_dir=data.get('data_dir'),
        batch_size=self.config.train.batch_size, training=True, image_size=self.image_size,
        hflip_prob=data.get('hflip_prob', 0.0), seed=self.config.seed,
        start_batch=start_batch, process_index=process_index, process_count=process_count)

  # Translation.

  def translate(self, state, inputs, rng) -> jax.Array:
    """inputs [B, H, W, 3] uint8 -> G's outputs [B, H, W, 3] uint8 (eval-mode norms;
    dropout on as noise when eval.dropout, from `rng`)."""
    x = image_ops.to_signed_unit(inputs)
    if self.config.eval.get('dropout', True):
      out, _ = self._generate(state.params, state.model_state, x, rng, train=False)
    else:
      out, _ = networks.apply(self.generator, 'generator', state.params, state.model_state,
                              x, train=False, dropout=False)
    return image_ops.signed_unit_to_uint8(out)

  def predict_step(self, state, batch):
    """batch {'input': [B, H, W, 3] uint8} -> {'image': [B, H, W, 3] uint8}; the dropout
    noise comes from config.seed, so a prediction repeats."""
    return {'image': self.translate(state, batch['input'],
                                    jax.random.PRNGKey(self.config.seed))}

  def prediction_batch(self, request):
    image = base.request_rgb_image(request, self.config.task, (
        'translates an image: pass --image (an input of '
        f'{self.config.data.dataset}, e.g. a coloured label map)'))
    resized = translation_eval.fit_image(image, self.image_size,
                                         nearest=self.source.input_is_label_map)
    return {'input': resized[None]}

  def draw_prediction(self, batch, predictions):
    return translation_eval.picture_rows(
        [batch['input'], predictions['image']], int(self.config.eval.get('draw_upscale', 2)))

  # Evaluation.

  def evaluate(self, context):
    data = self.config.data
    pairs = image_pairs.load_paired_arrays(data.dataset, data.eval_split,
                                           data_dir=data.get('data_dir'),
                                           image_size=self.image_size)
    judge = translation_eval.judges_for(
        self.config, ('target',), paired=True, image_size=self.image_size,
        num_classes=self.source.num_semantic_classes)['target']
    translate = jax.jit(lambda state, x, key: self.translate(state, x, key))
    outputs = translation_eval.map_batches(
        lambda x, key: translate(context.state, x, key), pairs['input'], context.rng,
        int(self.config.eval.batch_size))
    metrics = translation_eval.score(outputs, pairs['target'], pairs.get('semantic'), judge)
    shown = int(self.config.eval.get('num_pictures', 8))
    picture = translation_eval.picture_rows(
        [pairs['input'][:shown], outputs[:shown], pairs['target'][:shown]],
        int(self.config.eval.get('draw_upscale', 2)))
    return base.EvalResult(metrics, picture[None])


def create(config) -> Pix2PixTask:
  return Pix2PixTask(config)
