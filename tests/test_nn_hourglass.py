"""Tests for vision_jax.nn.hourglass (shapes, branch structure, parameter counts)."""
import math

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vision_jax.nn import hourglass

# 'rbg' keys: faster init compiles on CPU than threefry.
KEY = jax.random.key(0, impl='rbg')


def count(tree):
  return sum(math.prod(x.shape) for x in jax.tree.leaves(tree))


def shapes_of(model, x_shape, **kwargs):
  """Variable and output shapes without computing anything (jax.eval_shape)."""
  x = jax.ShapeDtypeStruct(x_shape, jnp.float32)
  variables = jax.eval_shape(model.init, KEY, x)
  return variables, jax.eval_shape(lambda v, x: model.apply(v, x, **kwargs), variables, x)


def flat_shapes(params):
  return {'/'.join(k): v.shape for k, v in flax.traverse_util.flatten_dict(params).items()}


@pytest.mark.parametrize('depth', [1, 2, 4])
def test_hourglass_keeps_shape_and_recurses(depth):
  variables, y = shapes_of(hourglass.Hourglass(depth=depth), (2, 16, 32, 8))
  assert y.shape == (2, 16, 32, 8)
  flat = flat_shapes(variables['params'])
  inner = '/'.join(['low2'] * (depth - 1))
  prefix = inner + '/' if inner else ''
  # The deepest level's low2 is a residual stack, not an hourglass.
  assert flat[f'{prefix}low2/0/conv2/kernel'] == (3, 3, 4, 4)
  assert f'{prefix}low2/low2/0/conv1/kernel' not in flat
  # Every level has a convolutional upper branch (no identity skip).
  assert flat[f'{prefix}up1/0/conv3/kernel'] == (1, 1, 4, 8)
  assert flat['up1/0/conv1/kernel'] == (1, 1, 8, 4)
  # Widths do not change: no skip convs anywhere.
  assert not any('skip' in k for k in flat)


@pytest.mark.parametrize('num_stacks,depth', [(1, 1), (2, 2), (3, 1)])
def test_stacked_hourglass_outputs_one_heatmap_per_stack(num_stacks, depth):
  model = hourglass.StackedHourglass(num_points=5, num_stacks=num_stacks, features=16,
                                     depth=depth, stem_widths=(8, 12))
  variables, outputs = shapes_of(model, (2, 32, 64, 3))
  assert isinstance(outputs, list) and len(outputs) == num_stacks
  for out in outputs:
    assert out.shape == (2, 8, 16, 5) and out.dtype == jnp.float32
  params = variables['params']
  assert sorted(k for k in params if k.startswith('merge_preds')) == [
      f'merge_preds{i}' for i in range(num_stacks - 1)]
  assert params['outs0']['kernel'].shape == (1, 1, 16, 5)
  if num_stacks > 1:
    assert params['merge_preds0']['kernel'].shape == (1, 1, 5, 16)
    assert params['merge_features0']['kernel'].shape == (1, 1, 16, 16)


def test_group_norm_and_bfloat16():
  model = hourglass.StackedHourglass(num_points=3, num_stacks=2, features=16, depth=2,
                                     stem_widths=(8, 16), norm='group', dtype='bfloat16')
  variables, outputs = shapes_of(model, (1, 16, 16, 3))
  assert 'batch_stats' not in variables
  assert [o.shape for o in outputs] == [(1, 4, 4, 3)] * 2
  assert all(o.dtype == jnp.float32 for o in outputs)
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(variables['params']))


def test_cornernet_variant_widths_residuals_basic_blocks_strided():
  model = hourglass.Hourglass(depth=2, widths=(8, 12, 16), num_residuals=(2, 2, 3),
                              block='basic', downsample='stride')
  variables, y = shapes_of(model, (1, 16, 16, 8))
  assert y.shape == (1, 16, 16, 8)
  flat = flat_shapes(variables['params'])
  assert flat['up1/1/conv2/kernel'] == (3, 3, 8, 8)
  # low1: the first block changes width and strides (projection skip), the rest keep it.
  assert flat['low1/0/conv1/kernel'] == (3, 3, 8, 12)
  assert flat['low1/0/skip/0/kernel'] == (1, 1, 8, 12)
  assert 'low1/1/skip/0/kernel' not in flat
  # low3: the last block changes width back (make_layer_revr).
  assert flat['low3/0/conv1/kernel'] == (3, 3, 12, 12)
  assert flat['low3/1/conv1/kernel'] == (3, 3, 12, 8)
  # The bottom has num_residuals[-1] blocks at widths[-1].
  assert flat['low2/low2/2/conv2/kernel'] == (3, 3, 16, 16)
  assert 'low2/low2/3/conv2/kernel' not in flat


def test_bad_configs_raise():
  with pytest.raises(ValueError, match='multiples of 4'):
    shapes_of(hourglass.Hourglass(depth=2), (1, 10, 16, 8))
  with pytest.raises(ValueError, match='widths'):
    shapes_of(hourglass.Hourglass(depth=2, widths=(8, 8)), (1, 16, 16, 8))
  with pytest.raises(ValueError, match='widths\\[0\\]'):
    shapes_of(hourglass.Hourglass(depth=1, widths=(4, 8)), (1, 16, 16, 8))
  with pytest.raises(ValueError, match='multiples of 16'):
    shapes_of(hourglass.StackedHourglass(num_points=2, num_stacks=1, features=8, depth=2,
                                         stem_widths=(8, 8)), (1, 40, 48, 3))


def test_branches_are_added():
  model = hourglass.Hourglass(depth=2)
  x = jax.random.normal(KEY, (1, 8, 12, 8))
  variables = jax.jit(model.init)(KEY, x)
  out, state = model.apply(variables, x, capture_intermediates=True)
  inter = state['intermediates']
  up1 = inter['up1']['__call__'][0]
  low3 = inter['low3']['__call__'][0]
  assert low3.shape == (1, 4, 6, 8)
  upsampled = jnp.repeat(jnp.repeat(low3, 2, axis=1), 2, axis=2)
  np.testing.assert_allclose(out, up1 + upsampled, rtol=1e-5, atol=1e-5)
  assert not np.allclose(up1, x, atol=1e-3)  # the upper branch has convolutions

  # Zeroing the lower branch's params makes each of its residuals an identity (zero
  # residual + identity skip) and the inner hourglass z -> z + up(pool(z)), so the
  # lower branch becomes up(p + up(pool(p))) with p = pool(x).
  params = flax.core.unfreeze(variables['params'])
  for name in ('low1', 'low2', 'low3'):
    params[name] = jax.tree.map(jnp.zeros_like, params[name])
  zeroed = model.apply({**variables, 'params': params}, x)
  assert not np.allclose(zeroed, out, atol=1e-3)
  pool = lambda z: jax.lax.reduce_window(z, -jnp.inf, jax.lax.max, (1, 2, 2, 1),
                                         (1, 2, 2, 1), 'VALID')
  up = lambda z: jnp.repeat(jnp.repeat(z, 2, axis=1), 2, axis=2)
  p = pool(x)
  want = up1 + up(p + up(pool(p)))
  np.testing.assert_allclose(zeroed, want, rtol=1e-5, atol=1e-5)


def _residual_params(cin, cout):
  """pytorch_stacked_hourglass Residual(cin, cout), counting only the used layers."""
  half = cout // 2
  n = 2 * cin + (cin * half + half)  # bn1, conv1
  n += 2 * half + (9 * half * half + half)  # bn2, conv2
  n += 2 * half + (half * cout + cout)  # bn3, conv3
  if cin != cout:
    n += cin * cout + cout  # skip_layer
  return n


def _reference_posenet_params(nstack, f, k, depth, stem=(64, 128)):
  """PoseNet(nstack, f, k) of the reference, parameter formula (no unused skip convs)."""
  c0, c1 = stem
  n = 7 * 7 * 3 * c0 + c0 + 2 * c0  # pre: Conv(3, 64, 7, 2, bn=True)
  n += _residual_params(c0, c1) + _residual_params(c1, c1) + _residual_params(c1, f)
  hourglass_params = (3 * depth + 1) * _residual_params(f, f)
  per_stack = hourglass_params + _residual_params(f, f) + (f * f + f + 2 * f) + (f * k + k)
  merges = (f * f + f) + (k * f + f)
  return n + nstack * per_stack + (nstack - 1) * merges


@pytest.mark.parametrize('nstack,f,k,depth,stem', [
    (2, 16, 5, 2, (8, 12)), (3, 32, 7, 1, (16, 16)), (8, 256, 16, 4, (64, 128))])
def test_parameter_count_matches_reference_formula(nstack, f, k, depth, stem):
  model = hourglass.StackedHourglass(num_points=k, num_stacks=nstack, features=f,
                                     depth=depth, stem_widths=stem)
  size = 4 * 2**depth
  variables, _ = shapes_of(model, (1, size, size, 3))
  assert count(variables['params']) == _reference_posenet_params(nstack, f, k, depth, stem)
  # Each batch norm keeps a running mean and var as large as its scale and bias.
  assert count(variables['batch_stats']) == sum(
      math.prod(v.shape) for p, v in flax.traverse_util.flatten_dict(
          variables['params']).items() if 'bn' in '/'.join(p))


def test_train_mode_updates_batch_stats_and_has_gradients():
  model = hourglass.StackedHourglass(num_points=2, num_stacks=2, features=8, depth=1,
                                     stem_widths=(8, 8))
  x = jax.random.uniform(KEY, (2, 8, 8, 3))
  variables = jax.jit(model.init)(KEY, x)

  def loss(params):
    outs, updates = model.apply({**variables, 'params': params}, x, train=True,
                                mutable=['batch_stats'])
    return sum(jnp.mean(o**2) for o in outs), updates

  (value, updates), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(
      variables['params'])
  assert np.isfinite(value)
  assert not np.allclose(updates['batch_stats']['stem_bn']['mean'],
                         variables['batch_stats']['stem_bn']['mean'])
  # The first stack's hourglass gets gradient from both stacks' outputs.
  assert np.abs(grads['hg0']['up1']['0']['conv3']['kernel']).sum() > 0
  assert np.abs(grads['merge_preds0']['kernel']).sum() > 0
