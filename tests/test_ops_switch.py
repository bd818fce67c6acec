"""switch_loss: the selected branch's loss, aux and gradients, as plain lax.switch gives."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vision_jax.ops import switch


def _branch(params, operands, *, rows):
  """A loss on the first `rows` rows: different internal shapes per branch."""
  x, weights = operands
  h = jnp.tanh(x[:rows] @ params['w'] + params['b'])
  loss = jnp.sum(weights[:rows, None] * h**2) + 0.5 * jnp.sum(params['w'] ** 2)
  return loss, {'rows_used': jnp.float32(rows), 'mean_h': jnp.mean(h)}


def _setup():
  keys = jax.random.split(jax.random.key(0), 4)
  params = {'w': jax.random.normal(keys[0], (5, 3)), 'b': jax.random.normal(keys[1], (3,))}
  operands = (jax.random.normal(keys[2], (8, 5)), jax.random.uniform(keys[3], (8,)))
  branches = [functools.partial(_branch, rows=r) for r in (2, 4, 8)]
  return params, operands, branches


@pytest.mark.parametrize('index', [0, 1, 2])
def test_loss_aux_and_gradients_equal_lax_switch(index):
  params, operands, branches = _setup()

  def ours(params, scale):
    loss, aux = switch.switch_loss(jnp.int32(index), branches, params, operands)
    return scale * loss, aux

  def reference(params, scale):
    loss, aux = jax.lax.switch(jnp.int32(index), branches, params, operands)
    return scale * loss, aux

  # A cotangent other than 1 (scale) checks that the backward pass scales the gradients.
  (loss, aux), grads = jax.jit(jax.value_and_grad(ours, argnums=(0, 1), has_aux=True))(
      params, 3.0)
  (ref_loss, ref_aux), ref_grads = jax.value_and_grad(reference, argnums=(0, 1),
                                                      has_aux=True)(params, 3.0)
  np.testing.assert_allclose(loss, ref_loss, rtol=1e-6)
  for name in ref_aux:
    np.testing.assert_allclose(aux[name], ref_aux[name], rtol=1e-6)
  for got, want in zip(jax.tree.leaves(grads), jax.tree.leaves(ref_grads)):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  # The branches differ, so the selected one is really the one that ran.
  assert float(aux['rows_used']) == (2, 4, 8)[index]


def test_operands_get_no_gradient():
  params, operands, branches = _setup()

  def loss_of_operands(x):
    return switch.switch_loss(jnp.int32(1), branches, params, (x, operands[1]))[0]

  np.testing.assert_array_equal(jax.grad(loss_of_operands)(operands[0]), 0.0)
