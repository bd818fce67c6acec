"""Small tasks that exercise the generic trainer without any model family."""
import flax.linen as nn
import flax.struct
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
  config.optimizer = ml_collections.ConfigDict(dict(
      name='adam', learning_rate=0.05, warmup_steps=2, schedule='cosine'))
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
    tx = optim.make_optimizer(self.config.optimizer, total_steps)
    return TrainState.create(variables['params'], tx, {'batch_stats': variables['batch_stats']})

  def loss(self, params, state, batch, rng):
    pred, updates = self.net.apply({'params': params, **state.model_state}, batch['x'],
                                   train=True, rngs={'dropout': rng}, mutable=['batch_stats'])
    return jnp.mean((pred - batch['y'])**2), updates

  def train_step(self, state, batch, rng):
    (loss, updates), grads = jax.value_and_grad(self.loss, has_aux=True)(
        state.params, state, batch, rng)
    return state.apply_gradients(grads, model_state=updates), {'loss': loss}

  def train_data(self, *, start_batch, process_index, process_count):
    return batch_stream(self.config.seed, start_batch, self.config.train.batch_size,
                        self.fail_at_batch, self.nan_at_batch)


class GanState(flax.struct.PyTreeNode):
  """Two models, two optimizers, one step counter."""
  step: jax.Array
  generator: TrainState
  discriminator: TrainState


class ToyGanTask(base.Task):
  """A 1-D GAN: the generator maps noise to samples of N(3, 0.5)."""

  def __init__(self, config):
    super().__init__(config)
    self.gen = nn.Sequential([nn.Dense(16), nn.relu, nn.Dense(1)])
    self.disc = nn.Sequential([nn.Dense(16), nn.relu, nn.Dense(1)])

  def init_state(self, rng, total_steps):
    g_key, d_key = jax.random.split(rng)
    g = TrainState.create(self.gen.init(g_key, jnp.zeros((1, 2)))['params'],
                          optax.adam(1e-2, b1=0.5))
    d = TrainState.create(self.disc.init(d_key, jnp.zeros((1, 1)))['params'],
                          optax.adam(1e-2, b1=0.5))
    return GanState(step=jnp.zeros((), jnp.int32), generator=g, discriminator=d)

  def train_step(self, state, batch, rng):
    noise = jax.random.normal(rng, (batch['real'].shape[0], 2))

    def d_loss(d_params):
      fake = self.gen.apply({'params': state.generator.params}, noise)
      real_logits = self.disc.apply({'params': d_params}, batch['real'])
      fake_logits = self.disc.apply({'params': d_params}, fake)
      return (optax.sigmoid_binary_cross_entropy(real_logits, 1.0).mean()
              + optax.sigmoid_binary_cross_entropy(fake_logits, 0.0).mean())

    def g_loss(g_params, d_params):
      fake = self.gen.apply({'params': g_params}, noise)
      return optax.sigmoid_binary_cross_entropy(
          self.disc.apply({'params': d_params}, fake), 1.0).mean()

    dl, d_grads = jax.value_and_grad(d_loss)(state.discriminator.params)
    disc = state.discriminator.apply_gradients(d_grads)
    gl, g_grads = jax.value_and_grad(g_loss)(state.generator.params, disc.params)
    gen = state.generator.apply_gradients(g_grads)
    return (GanState(step=state.step + 1, generator=gen, discriminator=disc),
            {'loss': dl + gl, 'd_loss': dl, 'g_loss': gl})

  def train_data(self, *, start_batch, process_index, process_count):
    index = start_batch
    while True:
      rng = np.random.default_rng([self.config.seed, index])
      yield {'real': (3.0 + 0.5 * rng.normal(size=(self.config.train.batch_size, 1))
                      ).astype(np.float32)}
      index += 1
