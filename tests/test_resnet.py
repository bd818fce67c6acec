"""Tests for vision_jax.nn.resnet and vision_jax.nn.norms."""
import math

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vision_jax.nn import norms
from vision_jax.nn import resnet

# 'rbg' keys: same tests, much faster init compiles on CPU than threefry.
KEY = jax.random.key(0, impl='rbg')


def count(tree):
  return sum(math.prod(x.shape) for x in jax.tree.leaves(tree))


def shapes_of(model, x_shape, **kwargs):
  """Output/variable shapes without computing anything (jax.eval_shape)."""
  x = jax.ShapeDtypeStruct(x_shape, jnp.float32)
  variables = jax.eval_shape(model.init, KEY, x)
  return variables, jax.eval_shape(lambda v, x: model.apply(v, x, **kwargs), variables, x)


@pytest.mark.parametrize('name', ['resnet18', 'resnet34', 'resnet50'])
@pytest.mark.parametrize('norm', ['batch', 'frozen_batch', 'group'])
def test_strides_and_channels(name, norm):
  model = resnet.get_resnet(name, width=8, norm=norm)
  _, feats = shapes_of(model, (2, 64, 96, 3))
  want = resnet.feature_channels(name, 8)
  assert set(feats) == set(resnet.FEATURE_STRIDES)
  for k, stride in resnet.FEATURE_STRIDES.items():
    assert feats[k].shape == (2, 64 // stride, 96 // stride, want[k])
  e = 4 if name == 'resnet50' else 1
  assert want == {'C2': 8 * e, 'C3': 16 * e, 'C4': 32 * e, 'C5': 64 * e}


@pytest.mark.parametrize('name,torchvision_count', [
    ('resnet18', 11_689_512), ('resnet34', 21_797_672), ('resnet50', 25_557_032)])
def test_parameter_count_matches_torchvision(name, torchvision_count):
  # torchvision's count minus the 1000-way fc layer; BN weights+biases are params,
  # running stats are not.
  model = resnet.get_resnet(name)
  shapes = jax.eval_shape(model.init, KEY, jax.ShapeDtypeStruct((1, 224, 224, 3),
                                                                jnp.float32))
  fc = resnet.feature_channels(name)['C5'] * 1000 + 1000
  assert count(shapes['params']) == torchvision_count - fc


def test_torchvision_layout():
  model = resnet.get_resnet('resnet50', width=8)
  params = shapes_of(model, (1, 32, 32, 3))[0]['params']
  flat = {'/'.join(k): v.shape for k, v in
          flax.traverse_util.flatten_dict(params).items()}
  assert flat['conv1/kernel'] == (7, 7, 3, 8)
  assert flat['bn1/scale'] == (8,)
  assert flat['layer1/0/conv3/kernel'] == (1, 1, 8, 32)
  assert flat['layer1/0/downsample/0/kernel'] == (1, 1, 8, 32)
  assert flat['layer1/0/downsample/1/bias'] == (32,)
  assert flat['layer2/0/conv2/kernel'] == (3, 3, 16, 16)  # v1.5: stride on the 3x3
  assert flat['layer3/5/bn3/scale'] == (128,)
  assert 'layer2/1/downsample/0/kernel' not in flat


def test_batch_norm_train_updates_stats_eval_does_not():
  model = resnet.ResNet(block='basic', stage_sizes=(1, 1, 1, 1), width=8, norm='batch')
  x = jax.random.uniform(KEY, (2, 32, 32, 3))
  variables = jax.jit(model.init)(KEY, x)
  # One compile per mode, each called on both batches.
  train = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=['batch_stats']))
  evaluate = jax.jit(lambda v, x: model.apply(v, x)['C5'])
  _, upd = train(variables, x)
  before = variables['batch_stats']['bn1']['mean']
  after = upd['batch_stats']['bn1']['mean']
  assert not np.allclose(before, after)
  # Eval mode is a pure function of the running stats: batch composition is irrelevant.
  a = evaluate(variables, x)
  b = evaluate(variables, x.at[1].set(0.3))
  np.testing.assert_allclose(a[0], b[0], atol=1e-5)
  # ... whereas in train mode the other example changes the statistics.
  c = train(variables, x)[0]['C5']
  d = train(variables, x.at[1].set(0.3))[0]['C5']
  assert not np.allclose(c[0], d[0], atol=1e-3)


def test_frozen_batch_norm_is_frozen():
  model = resnet.ResNet(block='bottleneck', stage_sizes=(1, 1, 1, 1), width=8,
                        norm='frozen_batch')
  x = jax.random.uniform(KEY, (2, 32, 32, 3))
  variables = jax.jit(model.init)(KEY, x)
  assert 'bn1' not in variables['params']  # nothing an optimizer could train
  assert set(variables['batch_stats']['bn1']) == {'scale', 'bias', 'mean', 'var'}
  # Non-trivial frozen statistics, so that they matter.
  ramp = lambda v: np.linspace(0.1, 1.0, v.size, dtype=np.float32)
  stats = jax.tree_util.tree_map_with_path(
      lambda path, v: v + ramp(v) if path[-1].key == 'bias' else v * (1 + ramp(v)),
      variables['batch_stats'])
  variables = {'params': variables['params'], 'batch_stats': stats}

  @jax.jit
  def train_apply(params):
    out, upd = model.apply({'params': params, 'batch_stats': stats}, x, train=True,
                           mutable=['batch_stats'])
    return out['C5'].sum(), upd

  _, upd = train_apply(variables['params'])
  jax.tree.map(np.testing.assert_array_equal, upd['batch_stats'], stats)
  # train=True and train=False are the same function, and the statistics are used.
  eval_apply = jax.jit(lambda s: model.apply({'params': variables['params'],
                                              'batch_stats': s}, x)['C5'].sum())
  np.testing.assert_allclose(train_apply(variables['params'])[0], eval_apply(stats),
                             rtol=1e-5)
  assert not np.allclose(eval_apply(stats), eval_apply(upd['batch_stats'] | {
      'bn1': dict(stats['bn1'], mean=stats['bn1']['mean'] + 1)}), rtol=1e-3)


def test_frozen_batch_norm_formula():
  layer = norms.FrozenBatchNorm()
  x = jax.random.normal(KEY, (2, 3, 3, 4))
  stats = {'scale': jnp.array([1.0, 2.0, 0.5, 1.0]), 'bias': jnp.array([0.0, 1.0, 0, -1]),
           'mean': jnp.array([0.5, 0.0, 1.0, 0.0]), 'var': jnp.array([1.0, 4.0, 0.25, 9.0])}
  y = layer.apply({'batch_stats': stats}, x)
  want = (x - stats['mean']) / jnp.sqrt(stats['var'] + 1e-5) * stats['scale'] + stats['bias']
  np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-6)


def test_group_norm_matches_reference_and_small_widths():
  x = jax.random.normal(KEY, (2, 4, 4, 24)) * 3 + 1
  layer = norms.GroupNorm()
  variables = layer.init(KEY, x)
  y = np.asarray(layer.apply(variables, x))
  g = math.gcd(32, 24)  # 8 groups of 3
  xr = np.asarray(x).reshape(2, 4, 4, g, 3)
  mean = xr.mean(axis=(1, 2, 4), keepdims=True)
  var = xr.var(axis=(1, 2, 4), keepdims=True)
  want = ((xr - mean) / np.sqrt(var + 1e-5)).reshape(x.shape)
  np.testing.assert_allclose(y, want, atol=1e-4)
  variables, _ = shapes_of(resnet.get_resnet('resnet18', width=8, norm='group'),
                          (1, 32, 32, 3))
  assert set(variables) == {'params'}


def test_bfloat16_compute_float32_params():
  model = resnet.get_resnet('resnet18', width=8, dtype='bfloat16')
  variables, feats = shapes_of(model, (1, 32, 32, 3))
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(variables))
  assert feats['C5'].dtype == jnp.bfloat16


def test_unknown_names_raise():
  with pytest.raises(ValueError, match='resnet18'):
    resnet.get_resnet('resnet19')
  with pytest.raises(ValueError, match='norm'):
    shapes_of(resnet.get_resnet('resnet18', norm='layer'), (1, 32, 32, 3))
