"""Small tasks that exercise the generic trainer without any model family."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from vision_jax.tasks import base
from vision_jax.train import optim
from vision_jax.train.state import TrainState


def toy_config(**train) -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.task = 'toy'
  config.seed = 0
  config.train = ml_collections.ConfigDict(dict(
      steps=6, batch_size=8, log_every=2, checkpoint_every=2, keep_checkpoints=5,
      eval_every=0))
  config.train.update(train)
  config.optimizers = ml_collections.ConfigDict({'model': dict(
      name='adam', learning_rate=0.05, warmup_steps=2, schedule='cosine')})
  config.lock()
  return config


def toy_gan_config(**train) -> ml_collections.ConfigDict:
  config = toy_config(**train)
  config.unlock()
  config.optimizers = ml_collections.ConfigDict({
      'generator': dict(name='adam', learning_rate=1e-2, b1=0.5, params='generator/.*'),
      'discriminator': dict(name='adam', learning_rate=1e-2, b1=0.5,
                            params='discriminator/.*')})
  config.ema = ml_collections.ConfigDict(dict(decay=0.9, params='generator/.*'))
  config.lock()
  return config


def batch_stream(seed, start_batch, batch_size, fail_at_batch=None, nan_at_batch=None):
  """Deterministic per batch index: batch i depends only on (seed, i)."""
  index = start_batch
  while True:
    if index == fail_at_batch:
      raise KeyboardInterrupt(f'simulated kill at batch {index}')
    rng = np.random.default_rng([seed, index])
    x = rng.normal(size=(batch_size, 4)).astype(np.float32)
    y = (x @ np.arange(1, 5, dtype=np.float32)[:, None] + 0.5).astype(np.float32)
    if index == nan_at_batch:
      y[:] = np.nan
    yield {'x': x, 'y': y}
    index += 1


class _Net(nn.Module):
  @nn.compact
  def __call__(self, x, train: bool):
    x = nn.Dense(8)(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
    x = nn.Dropout(0.1, deterministic=not train)(nn.relu(x))
    return nn.Dense(1)(x)


class ToyRegressionTask(base.Task):
  """Regression with BatchNorm and dropout: uses model_state, rng and sharded batches."""

  def __init__(self, config, fail_at_batch=None, nan_at_batch=None):
    super().__init__(config)
    self.net = _Net()
    self.fail_at_batch, self.nan_at_batch = fail_at_batch, nan_at_batch

  def init_state(self, rng, total_steps):
    variables = self.net.init(rng, jnp.zeros((1, 4)), train=False)
    return TrainState.create(variables['params'],
                             optim.make_optimizers(self.config, total_steps),
                             {'batch_stats': variables['batch_stats']})

  def loss(self, params, model_state, batch, rng):
    pred, updates = self.net.apply({'params': params, **model_state}, batch['x'],
                                   train=True, rngs={'dropout': rng}, mutable=['batch_stats'])
    loss = jnp.mean((pred - batch['y'])**2)
    return loss, ({'loss': loss}, updates)

  def train_step(self, state, batch, rng):
    return state.minimize(self.loss, state.model_state, batch, rng)

  def train_data(self, *, start_batch, process_index, process_count):
    return batch_stream(self.config.seed, start_batch, self.config.train.batch_size,
                        self.fail_at_batch, self.nan_at_batch)

  def predict_step(self, state, batch):
    return {'y': self.net.apply(state.variables, batch['x'], train=False)}

  def evaluate(self, context):
    """A task-owned evaluation: mean squared error on one held-out batch."""
    batch = next(batch_stream(self.config.seed + 1, 0, self.config.train.batch_size))
    predictions = context.to_host(context.predict(context.state, context.shard(batch)))
    mse = float(np.mean((predictions['y'] - batch['y'])**2))
    return base.EvalResult({'toy/mse': mse})


class ToyGanTask(base.Task):
  """A 1-D GAN: the generator maps noise to samples of N(3, 0.5).

  Both networks live in one parameter tree with one named optimizer each; the step
  updates the discriminator, then the generator, and keeps an EMA of the generator.
  """

  def __init__(self, config):
    super().__init__(config)
    self.gen = nn.Sequential([nn.Dense(16), nn.relu, nn.Dense(1)])
    self.disc = nn.Sequential([nn.Dense(16), nn.relu, nn.Dense(1)])

  def init_state(self, rng, total_steps):
    g_key, d_key = jax.random.split(rng)
    params = {'generator': self.gen.init(g_key, jnp.zeros((1, 2)))['params'],
              'discriminator': self.disc.init(d_key, jnp.zeros((1, 1)))['params']}
    return TrainState.create(
        params, optim.make_optimizers(self.config, total_steps,
                                      required=('generator', 'discriminator')),
        ema=optim.ema_from_config(self.config))

  def loss_names(self, metrics):
    return ['d_loss', 'g_loss']

  def d_loss(self, params, noise, real):
    fake = self.gen.apply({'params': params['generator']}, noise)
    real_logits = self.disc.apply({'params': params['discriminator']}, real)
    fake_logits = self.disc.apply({'params': params['discriminator']}, fake)
    loss = (optax.sigmoid_binary_cross_entropy(real_logits, 1.0).mean()
            + optax.sigmoid_binary_cross_entropy(fake_logits, 0.0).mean())
    return loss, ({'d_loss': loss}, {})

  def g_loss(self, params, noise):
    fake = self.gen.apply({'params': params['generator']}, noise)
    logits = self.disc.apply({'params': params['discriminator']}, fake)
    loss = optax.sigmoid_binary_cross_entropy(logits, 1.0).mean()
    return loss, ({'g_loss': loss}, {})

  def train_step(self, state, batch, rng):
    noise = jax.random.normal(rng, (batch['real'].shape[0], 2))
    state, d_metrics = state.minimize(self.d_loss, noise, batch['real'],
                                      optimizers='discriminator')
    state, g_metrics = state.minimize(self.g_loss, noise, optimizers='generator')
    return state, {**d_metrics, **g_metrics}

  def train_data(self, *, start_batch, process_index, process_count):
    index = start_batch
    while True:
      rng = np.random.default_rng([self.config.seed, index])
      yield {'real': (3.0 + 0.5 * rng.normal(size=(self.config.train.batch_size, 1))
                      ).astype(np.float32)}
      index += 1
