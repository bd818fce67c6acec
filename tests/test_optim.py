"""Named optimizers: selections, weight-decay masks, schedules, EMA, bad configs."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from vision_jax.train import config as config_lib
from vision_jax.train import optim
from vision_jax.train.state import TrainState


def _config(optimizers, ema=None):
  config = ml_collections.ConfigDict()
  config.task = 'toy'
  config.optimizers = ml_collections.ConfigDict(optimizers)
  if ema is not None:
    config.ema = ml_collections.ConfigDict(ema)
  return config


def _params():
  return {'backbone': {'conv': {'kernel': jnp.ones((3, 3, 2, 4)), 'bias': jnp.ones((4,))},
                       'norm': {'scale': jnp.ones((4,)), 'bias': jnp.ones((4,))}},
          'head': {'kernel': jnp.ones((4, 2)), 'bias': jnp.ones((2,))}}


def test_weight_decay_skips_norms_and_biases_by_default():
  # With zero gradients, SGD's update is -lr * weight_decay * param where decay applies.
  tx = optim.make_transformation(dict(name='sgd', learning_rate=1.0, momentum=0.0,
                                      weight_decay=0.1), 10)
  params = _params()
  updates, _ = tx.update(jax.tree.map(jnp.zeros_like, params), tx.init(params), params)
  assert float(jnp.abs(updates['backbone']['conv']['kernel']).max()) > 0
  assert float(jnp.abs(updates['head']['kernel']).max()) > 0
  for leaf in (updates['backbone']['conv']['bias'], updates['backbone']['norm']['scale'],
               updates['backbone']['norm']['bias'], updates['head']['bias']):
    assert float(jnp.abs(leaf).max()) == 0.0
  tx_all = optim.make_transformation(dict(name='sgd', learning_rate=1.0, momentum=0.0,
                                          weight_decay=0.1, decay_params='all'), 10)
  updates, _ = tx_all.update(jax.tree.map(jnp.zeros_like, params), tx_all.init(params),
                             params)
  assert float(jnp.abs(updates['head']['bias']).max()) > 0


def test_two_optimizers_with_their_own_rates_update_their_own_parameters():
  config = _config({
      'backbone': dict(name='sgd', learning_rate=0.0, momentum=0.0, params='backbone/.*'),
      'head': dict(name='sgd', learning_rate=1.0, momentum=0.0, schedule='constant',
                   params='head/.*')})
  state = TrainState.create(_params(), optim.make_optimizers(config, 10))
  grads = jax.tree.map(jnp.ones_like, state.params)
  new = state.apply_gradients(grads)
  np.testing.assert_array_equal(new.params['backbone']['conv']['kernel'], 1.0)
  np.testing.assert_array_equal(new.params['head']['kernel'], 0.0)
  assert set(new.opt_states) == {'backbone', 'head'}


def test_selections_must_cover_every_parameter_once():
  overlapping = _config({'a': dict(name='adam', learning_rate=1e-3),
                         'b': dict(name='adam', learning_rate=1e-3, params='head/.*')})
  with pytest.raises(config_lib.ConfigError, match=r'several optimizers.*head/kernel'):
    TrainState.create(_params(), optim.make_optimizers(overlapping, 10))
  partial = _config({'a': dict(name='adam', learning_rate=1e-3, params='head/.*')})
  with pytest.raises(config_lib.ConfigError, match=r'no optimizer.*backbone/conv/kernel'):
    TrainState.create(_params(), optim.make_optimizers(partial, 10))


def test_bad_optimizer_configs_name_the_key():
  with pytest.raises(config_lib.ConfigError, match=r"optimizers.model.name='adamx'"):
    optim.make_optimizers(_config({'model': dict(name='adamx', learning_rate=1e-3)}), 10)
  with pytest.raises(config_lib.ConfigError, match=r"optimizers.model has unknown fields "
                     r"\['learning_rat'\]"):
    optim.make_optimizers(_config({'model': dict(name='adam', learning_rat=1e-3)}), 10)
  with pytest.raises(config_lib.ConfigError, match=r"needs exactly \['discriminator', "
                     r"'generator'\]; missing \['discriminator'\]; unknown \['disc'\]"):
    optim.make_optimizers(
        _config({'generator': dict(name='adam', learning_rate=1e-3),
                 'disc': dict(name='adam', learning_rate=1e-3)}), 10,
        required=('generator', 'discriminator'))
  legacy = ml_collections.ConfigDict({'optimizer': {'name': 'adam', 'learning_rate': 1e-3}})
  with pytest.raises(config_lib.ConfigError, match='config.optimizers.model'):
    optim.make_optimizers(legacy, 10)


def test_step_schedule_from_fractions_of_the_run():
  entry = dict(name='sgd', learning_rate=1.0, schedule='step',
               decay_fractions=(0.5, 0.75), decay_factor=0.1)
  schedule = optim.make_schedule(entry, 100)
  assert [float(schedule(s)) for s in (0, 49, 50, 74, 75, 99)] == pytest.approx(
      [1.0, 1.0, 0.1, 0.1, 0.01, 0.01])


def test_ema_follows_its_parameters():
  config = _config({'model': dict(name='sgd', learning_rate=1.0, momentum=0.0,
                                  schedule='constant')}, ema=dict(decay=0.5, params='head/.*'))
  state = TrainState.create(_params(), optim.make_optimizers(config, 10),
                            ema=optim.ema_from_config(config))
  assert set(state.ema_params) == {'head'}
  new = state.apply_gradients(jax.tree.map(jnp.ones_like, state.params))
  # params 1 -> 0; ema = 0.5 * 1 + 0.5 * 0.
  np.testing.assert_allclose(new.ema_params['head']['kernel'], 0.5)
  ema_vars = new.ema_variables['params']
  np.testing.assert_allclose(ema_vars['head']['kernel'], 0.5)
  np.testing.assert_allclose(ema_vars['backbone']['conv']['kernel'], 0.0)
  with pytest.raises(config_lib.ConfigError, match='selects no parameter'):
    TrainState.create(_params(), optim.make_optimizers(config, 10),
                      ema=optim.EmaSpec(0.9, 'nothing/.*'))


def test_a_plain_optax_transformation_still_makes_a_state():
  state = TrainState.create(_params(), optax.sgd(1.0))
  new = state.apply_gradients(jax.tree.map(jnp.ones_like, state.params))
  np.testing.assert_array_equal(new.params['head']['bias'], 0.0)
