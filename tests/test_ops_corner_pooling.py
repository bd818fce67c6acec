"""Corner / center pooling: parity with the torch.cummax / amax fixtures (forward and
gradients), the tie rule of the gradient, numpy references for center and cascade
pooling, jit and vmap."""
import functools
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vision_jax import ops

FIXTURES = pathlib.Path(__file__).parent / 'fixtures' / 'torchvision_round2.npz'
TOL = dict(rtol=1e-6, atol=1e-6)


@functools.lru_cache(maxsize=None)
def _fixtures():
  with np.load(FIXTURES) as data:
    return {k: data[k] for k in data.files if k.startswith(('corner_pool/', 'center_pool/'))}


def _cases(op):
  return sorted({k.split('/')[1] for k in _fixtures() if k.startswith(op + '/')})


def _nhwc(a):
  return np.asarray(a).transpose(0, 2, 3, 1)


@functools.partial(jax.jit, static_argnums=0)
def _value_and_vjp(fn, x, cotangent):
  out, vjp = jax.vjp(fn, x)
  return out, vjp(cotangent)[0]


def _check_fixture(fn, prefix):
  data = _fixtures()
  x = _nhwc(data[prefix + 'x_nchw'])
  cotangent = _nhwc(data[prefix + 'cotangent_nchw']).astype(np.float32)
  out, grad = _value_and_vjp(fn, jnp.asarray(x), jnp.asarray(cotangent))
  np.testing.assert_allclose(np.asarray(out), _nhwc(data[prefix + 'expected_nchw']), **TOL)
  np.testing.assert_allclose(np.asarray(grad), _nhwc(data[prefix + 'grad_x']), **TOL)


def test_fixture_has_all_cases():
  assert len(_cases('corner_pool')) == 16 and len(_cases('center_pool')) == 2


@pytest.mark.parametrize('case', [f'{i:02d}' for i in range(16)])
def test_corner_pool_matches_fixture(case):
  prefix = f'corner_pool/{case}/'
  direction = str(_fixtures()[prefix + 'direction'])
  _check_fixture(functools.partial(ops.corner_pool, direction=direction), prefix)


@pytest.mark.parametrize('case', ['00', '01'])
def test_center_pool_matches_fixture(case):
  _check_fixture(ops.center_pool, f'center_pool/{case}/')


def _np_corner_pool(x, direction):
  axis, reverse = {'top': (1, True), 'bottom': (1, False), 'left': (2, True),
                   'right': (2, False)}[direction]
  if reverse:
    return np.flip(np.maximum.accumulate(np.flip(x, axis), axis=axis), axis)
  return np.maximum.accumulate(x, axis=axis)


def test_directions_are_cornernets():
  x = np.arange(12, dtype=np.float32).reshape(1, 3, 4, 1)  # grows down and right
  for direction in ('top', 'bottom', 'left', 'right'):
    np.testing.assert_array_equal(ops.corner_pool(x, direction), _np_corner_pool(x, direction))
  # 'top' looks down: every row sees the bottom row's values.
  np.testing.assert_array_equal(ops.corner_pool(x, 'top')[0, :, :, 0],
                                np.tile(x[0, 2, :, 0], (3, 1)))
  np.testing.assert_array_equal(ops.corner_pool(x, 'left')[0, :, :, 0],
                                np.tile(x[0, :, 3:, 0], (1, 4)))


@pytest.mark.parametrize('direction,want', [
    ('top', [0, 0, 3, 1, 1]),  # scan from the bottom: the lower 3 (row 2) is met first
    ('bottom', [1, 4, 0, 0, 0]),  # scan from the top: the upper 3 (row 1)
])
def test_tied_gradient_goes_whole_to_the_first_met_maximum(direction, want):
  x = np.array([1, 3, 3, 2, 0], np.float32)
  col = x.reshape(1, 5, 1, 1)
  grad = jax.jit(jax.grad(lambda v: jnp.sum(ops.corner_pool(v, direction))))(col)
  np.testing.assert_array_equal(np.asarray(grad).ravel(), want)
  # Same along W, and forward-mode gives the transposed answer.
  row = x.reshape(1, 1, 5, 1)
  horizontal = {'top': 'left', 'bottom': 'right'}[direction]
  grad_w = jax.grad(lambda v: jnp.sum(ops.corner_pool(v, horizontal)))(row)
  np.testing.assert_array_equal(np.asarray(grad_w).ravel(), want)
  basis = np.eye(5, dtype=np.float32)[2].reshape(col.shape)
  _, tangent = jax.jvp(lambda v: ops.corner_pool(v, direction), (col,), (basis,))
  assert float(jnp.sum(tangent)) == want[2]


def test_all_tied_and_repeatable():
  x = jnp.zeros((2, 6, 5, 3))
  first_met = {'top': (slice(None), -1), 'right': (slice(None), slice(None), 0)}
  for direction, axis_end in first_met.items():
    grads = [np.asarray(jax.grad(lambda v: jnp.sum(ops.corner_pool(v, direction) * 1.5))(x))
             for _ in range(2)]
    np.testing.assert_array_equal(grads[0], grads[1])
    # Everything flows to the first element of the scan.
    assert grads[0].sum() == pytest.approx(1.5 * x.size)
    assert np.all(grads[0][axis_end] > 0) and np.count_nonzero(grads[0]) == grads[0][axis_end].size


def test_center_pool_two_maps_numpy_reference():
  rng = np.random.default_rng(0)
  x = rng.standard_normal((2, 5, 7, 3)).astype(np.float32)
  y = rng.standard_normal((2, 5, 7, 3)).astype(np.float32)
  want = x.max(axis=1, keepdims=True) + y.max(axis=2, keepdims=True)
  np.testing.assert_allclose(jax.jit(ops.center_pool)(x, y), want, rtol=0, atol=0)
  # The reference's composition: Bottom(Top(x)) + Right(Left(y)).
  composed = (ops.corner_pool(ops.corner_pool(x, 'top'), 'bottom')
              + ops.corner_pool(ops.corner_pool(y, 'left'), 'right'))
  np.testing.assert_array_equal(ops.center_pool(x, y), composed)
  np.testing.assert_array_equal(ops.center_pool(x), ops.center_pool(x, x))


@pytest.mark.parametrize('direction,cross', [('top', 'left'), ('left', 'top'),
                                             ('bottom', 'right'), ('right', 'bottom')])
def test_cascade_corner_pool_numpy_reference(direction, cross):
  rng = np.random.default_rng(1)
  x = rng.standard_normal((2, 6, 8, 4)).astype(np.float32)
  look = rng.standard_normal((2, 6, 8, 4)).astype(np.float32)
  want = _np_corner_pool(x + _np_corner_pool(look, cross), direction)
  got = jax.jit(ops.cascade_corner_pool, static_argnums=2)(x, look, direction)
  np.testing.assert_allclose(got, want, rtol=0, atol=0)
  # `mix` sits between the sum and the outer pool (the reference's 3x3 conv).
  mixed = ops.cascade_corner_pool(x, look, direction, mix=lambda v: 2.0 * v[..., :2] - 1.0)
  want = _np_corner_pool(2.0 * (x + _np_corner_pool(look, cross))[..., :2] - 1.0, direction)
  np.testing.assert_allclose(mixed, want, rtol=1e-6, atol=1e-6)


def test_jit_vmap_and_errors():
  x = np.random.default_rng(2).standard_normal((3, 2, 4, 5, 2)).astype(np.float32)
  pooled = jax.jit(jax.vmap(functools.partial(ops.corner_pool, direction='left')))(x)
  np.testing.assert_array_equal(pooled, np.stack([_np_corner_pool(v, 'left') for v in x]))
  with pytest.raises(ValueError, match='direction'):
    ops.corner_pool(x[0], 'up')
  with pytest.raises(ValueError, match='N, H, W, C'):
    ops.corner_pool(x[0, 0], 'top')
