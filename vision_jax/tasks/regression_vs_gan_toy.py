"""The course's grey-image example as a task: an MSE regressor and a conditional GAN,
trained side by side on targets that are, at random, all white or all black.

Data (`vision_jax.data.bimodal_targets`): a condition c and a coin with
P(white | c) = `data.white_probabilities[c]`. Both the regressor and the generator are
`ConditionalMlp(c, z)` with fresh noise z per example; the regressor minimises the mean
squared error to the target image, the generator plays against a conditional
discriminator (`loss.kind`). Three named optimizers: regressor, generator,
discriminator. Reported losses: mse_loss, d_loss, g_loss.

Evaluation (`evaluation.bimodal.mode_scores`) draws `eval.samples_per_condition`
outputs per condition from both models with the same noise and reports, under
`regression/` and `gan/`: mode_fraction (outputs within `eval.tolerance` mean absolute
difference of all-black or all-white), mean_intensity, and white_fraction_error
(|fraction nearer white - P(white | c)| averaged over conditions); `data/mean_intensity`
is the targets' mean. The picture: one row per condition, regressor outputs left, GAN
outputs right. `launch.predict --labels=0,2` draws the same rows for chosen conditions.
"""
import jax
import jax.numpy as jnp
import numpy as np

from vision_jax.data import bimodal_targets
from vision_jax.evaluation import bimodal
from vision_jax.losses import gan as gan_losses
from vision_jax.models import regression_vs_gan as models
from vision_jax.tasks import base
from vision_jax.tasks import networks
from vision_jax.train import config as config_lib
from vision_jax.train import optim
from vision_jax.train.state import TrainState
from vision_jax.viz import grid as grid_lib

OPTIMIZERS = ('regressor', 'generator', 'discriminator')


class RegressionVsGanTask(base.Task):

  def __init__(self, config):
    super().__init__(config)
    self.white_probabilities = tuple(float(p) for p in config.data.white_probabilities)
    m = config.model
    k = len(self.white_probabilities)
    self.latent_dim = int(m.latent_dim)
    self.image_size = int(m.image_size)
    mlp = dict(num_conditions=k, hidden=int(m.hidden), layers=int(m.layers))
    self.regressor = models.ConditionalMlp(image_size=self.image_size, **mlp)
    self.generator = models.ConditionalMlp(image_size=self.image_size, **mlp)
    self.discriminator = models.ConditionalCritic(minibatch_std=bool(m.minibatch_std), **mlp)
    try:
      gan_losses.generator_loss(jnp.zeros(1), config.loss.kind)
      next(bimodal_targets.bimodal_batches(self.white_probabilities, batch_size=1, seed=0))
    except ValueError as e:
      raise config_lib.ConfigError(f'config.loss / config.data: {e}') from e

  def init_state(self, rng, total_steps):
    c = jnp.zeros((2,), jnp.int32)
    z = jnp.zeros((2, self.latent_dim))
    image = jnp.zeros((2, self.image_size, self.image_size, 1))
    params, model_state = networks.init_networks({
        'regressor': (self.regressor, (c, z)),
        'generator': (self.generator, (c, z)),
        'discriminator': (self.discriminator, (image, c)),
    }, rng)
    return TrainState.create(
        params, optim.make_optimizers(self.config, total_steps, required=OPTIMIZERS),
        model_state)

  def loss_names(self, metrics):
    return [name for name in ('mse_loss', 'd_loss', 'g_loss') if name in metrics]

  def _output(self, name, params, condition, z):
    return getattr(self, name).apply({'params': params[name]}, condition, z)

  def _targets(self, white):
    return jnp.broadcast_to(white.astype(jnp.float32)[:, None, None, None],
                            (white.shape[0], self.image_size, self.image_size, 1))

  def train_step(self, state, batch, rng):
    condition, target = batch['condition'], self._targets(batch['white'])
    kind = self.config.loss.kind
    r_z, d_z, g_z = (jax.random.normal(k, (condition.shape[0], self.latent_dim))
                     for k in jax.random.split(rng, 3))

    def mse_loss(params):
      loss = jnp.mean((self._output('regressor', params, condition, r_z) - target) ** 2)
      return loss, ({'mse_loss': loss}, {})

    def d_loss(params):
      fake = jax.lax.stop_gradient(self._output('generator', params, condition, d_z))
      critic = lambda x: self.discriminator.apply({'params': params['discriminator']}, x,
                                                  condition)
      loss = gan_losses.discriminator_loss(critic(target), critic(fake), kind)
      return loss, ({'d_loss': loss}, {})

    def g_loss(params):
      fake = self._output('generator', params, condition, g_z)
      logits = self.discriminator.apply({'params': params['discriminator']}, fake, condition)
      loss = gan_losses.generator_loss(logits, kind)
      return loss, ({'g_loss': loss}, {})

    state, r_metrics = state.minimize(mse_loss, optimizers='regressor')
    state, d_metrics = state.minimize(d_loss, optimizers='discriminator')
    state, g_metrics = state.minimize(g_loss, optimizers='generator')
    return state, {**r_metrics, **d_metrics, **g_metrics}

  def train_data(self, *, start_batch, process_index, process_count):
    return bimodal_targets.bimodal_batches(
        self.white_probabilities, batch_size=self.config.train.batch_size,
        seed=self.config.seed, start_batch=start_batch, process_index=process_index,
        process_count=process_count)

  # Sampling and evaluation.

  def predict_step(self, state, batch):
    """{'condition' [B], 'z' [B, latent]} -> both models' outputs [B, H, W, 1] in [0, 1]."""
    return {name: self._output(name, state.params, batch['condition'], batch['z'])
            for name in ('regressor', 'generator')}

  def _requests(self, conditions, per_condition: int, rng) -> dict:
    condition = np.repeat(np.asarray(conditions, np.int32), per_condition)
    z = np.asarray(jax.random.normal(rng, (len(condition), self.latent_dim)), np.float32)
    return {'condition': condition, 'z': z}

  def _rows(self, outputs: dict, per_condition: int) -> np.ndarray:
    """One row per condition: `eval.picture_columns` regressor then GAN outputs."""
    columns = int(self.config.eval.picture_columns)
    upscale = int(self.config.eval.draw_upscale)
    halves = []
    for name in ('regressor', 'generator'):
      x = np.asarray(outputs[name]).reshape(-1, per_condition, *outputs[name].shape[1:])
      halves.append(x[:, :columns])
    rows = np.concatenate(halves, axis=1).reshape(-1, *outputs['regressor'].shape[1:])
    images = np.round(np.clip(rows, 0.0, 1.0) * 255.0).astype(np.uint8)
    images = np.repeat(np.repeat(np.repeat(images, upscale, 1), upscale, 2), 3, -1)
    return grid_lib.image_grid(images, columns=2 * columns)

  def evaluate(self, context):
    per_condition = int(self.config.eval.samples_per_condition)
    k = len(self.white_probabilities)
    batch = self._requests(range(k), per_condition, context.rng)
    outputs = context.to_host(context.predict(context.state, context.shard(batch)))
    metrics = {'data/mean_intensity': float(np.mean(self.white_probabilities))}
    for prefix, name in (('regression', 'regressor'), ('gan', 'generator')):
      scores = bimodal.mode_scores(outputs[name], batch['condition'],
                                   self.white_probabilities,
                                   tolerance=float(self.config.eval.tolerance))
      metrics.update({f'{prefix}/{key}': value for key, value in scores.items()})
    return base.EvalResult(metrics, self._rows(outputs, per_condition)[None])

  def prediction_batch(self, request):
    labels = request.get('labels')
    k = len(self.white_probabilities)
    if not labels or any(not 0 <= int(c) < k for c in labels):
      raise base.PredictionRequestError(
          f'task {self.config.task!r} draws outputs for conditions: pass --labels with '
          f'values in 0..{k - 1}, e.g. --labels=0,{k - 1}')
    return self._requests([int(c) for c in labels], int(self.config.eval.picture_columns),
                          jax.random.key(self.config.seed))

  def draw_prediction(self, batch, predictions):
    return self._rows(predictions, int(self.config.eval.picture_columns))


def create(config) -> RegressionVsGanTask:
  return RegressionVsGanTask(config)
