"""A `lax.switch` over loss branches that is cheap to differentiate.

  loss, aux = switch_loss(index, branches, params, operands)

Under reverse-mode autodiff, `lax.switch` hands every branch's residuals (the
activations its backward pass reads) out of the forward switch, and fills those of the
branches not taken with zeros. With branches of very different sizes (the R-CNN mask
head compiled for 8 .. 128 RoI slots) that zero filling costs more than the small branch
that runs. Here each branch computes its loss and its gradient together
(`jax.value_and_grad`), so only the gradients, the same shapes in every branch, leave
the switch; the backward pass scales them by the loss's cotangent.
"""
from typing import Any, Callable, Sequence

import jax


def switch_loss(index: jax.Array, branches: Sequence[Callable], params: Any,
                operands: Any) -> tuple[jax.Array, Any]:
  """`lax.switch(index, branches, params, operands)` with gradients taken inside the branch.

  Args:
    index: int32 scalar, clamped into range as `lax.switch` does.
    branches: callables `(params, operands) -> (scalar loss, aux)`, one per index; they
      may differ in their internal shapes but return the same structure.
    params: pytree the loss is differentiated with respect to (arrays of any float dtype).
    operands: pytree passed through without gradient (a stop_gradient boundary).

  Returns:
    (loss, aux) of the selected branch. Differentiating `loss` gives the branch's
    gradient w.r.t. `params`; `aux` (e.g. metrics) carries no gradient.
  """
  branches = tuple(branches)
  graded = tuple(jax.value_and_grad(branch, has_aux=True) for branch in branches)

  @jax.custom_vjp
  def run(index, params, operands):
    return jax.lax.switch(index, branches, params, operands)

  def run_fwd(index, params, operands):
    (loss, aux), grads = jax.lax.switch(index, graded, params, operands)
    return (loss, aux), grads

  def run_bwd(grads, cotangent):
    loss_cotangent, _ = cotangent
    scaled = jax.tree.map(lambda g: (g * loss_cotangent).astype(g.dtype), grads)
    return None, scaled, None

  run.defvjp(run_fwd, run_bwd)
  return run(index, params, jax.lax.stop_gradient(operands))
