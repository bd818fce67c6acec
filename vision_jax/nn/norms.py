"""Normalization layers selectable by name, for NHWC feature maps.

`make_norm(kind, ...)` returns a module factory, so a block writes
`norm(name='bn1')(x)` whatever the kind:

  'batch'         flax BatchNorm over (B, H, W); batch statistics when `train`,
                  running averages otherwise (momentum 0.9 = torch's 0.1, eps 1e-5).
  'frozen_batch'  `FrozenBatchNorm`: y = (x - mean) / sqrt(var + eps) * scale + bias
                  with all four tensors fixed (as detectron2's FrozenBatchNorm2d);
                  never updated, whatever `train` says.
  'group'         GroupNorm with `num_groups` = gcd(32, channels) (so small widths work).
  'instance'      flax InstanceNorm: each image's each channel normalized over (H, W),
                  eps 1e-5, biased variance, NO affine parameters and no running
                  statistics (torch's InstanceNorm2d(affine=False,
                  track_running_stats=False), pix2pix / CycleGAN's 'instance'); the same
                  computation whatever `train` says, and no variables at all.
  'instance_affine'  the same normalization followed by a learned per-channel affine
                  y * scale + bias (torch's InstanceNorm2d(affine=True), as Johnson's
                  transform net in pytorch/examples' fast_neural_style).
  'none'          identity.

Variables (float32): 'batch' has params {scale, bias} and batch_stats {mean, var};
'frozen_batch' keeps {scale, bias, mean, var} all in the 'batch_stats' collection, so
no optimizer touches them and converted torch weights (weight, bias, running_mean,
running_var) drop straight in; 'group' and 'instance_affine' have params {scale, bias};
'instance' and 'none' have no variables.
"""
import functools
import math
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

NORM_KINDS = ('batch', 'frozen_batch', 'group', 'instance', 'instance_affine', 'none')


class FrozenBatchNorm(nn.Module):
  """Batch norm with fixed statistics and affine parameters (detectron2 style).

  Attributes:
    epsilon: added to the variance.
    dtype: compute dtype of the output (None: the input's).
    scale_init: initializer of the fixed scale (ones by default).
  """
  epsilon: float = 1e-5
  dtype: Any = None
  scale_init: Callable[..., Any] = nn.initializers.ones

  @nn.compact
  def __call__(self, x):
    """x: [..., C] -> same shape; no variable is ever modified."""
    c = x.shape[-1]
    scale = self.variable('batch_stats', 'scale',
                          lambda: self.scale_init(None, (c,), jnp.float32))
    bias = self.variable('batch_stats', 'bias', lambda: jnp.zeros((c,), jnp.float32))
    mean = self.variable('batch_stats', 'mean', lambda: jnp.zeros((c,), jnp.float32))
    var = self.variable('batch_stats', 'var', lambda: jnp.ones((c,), jnp.float32))
    mult = scale.value * jnp.reciprocal(jnp.sqrt(var.value + self.epsilon))
    add = bias.value - mean.value * mult
    dtype = self.dtype or x.dtype
    return (x * mult.astype(dtype) + add.astype(dtype)).astype(dtype)


class _Identity(nn.Module):

  @nn.compact
  def __call__(self, x):
    return x


class GroupNorm(nn.Module):
  """GroupNorm over (H, W, C/G) of NHWC maps; G = gcd(`max_groups`, C), so any width works.

  Statistics are computed in float32. Params: {scale, bias} [C] float32 (torch's
  weight, bias).
  """
  max_groups: int = 32
  epsilon: float = 1e-5
  dtype: Any = None
  scale_init: Callable[..., Any] = nn.initializers.ones

  @nn.compact
  def __call__(self, x):
    """x: [B, ..., C] -> same shape."""
    c = x.shape[-1]
    groups = math.gcd(self.max_groups, c)
    scale = self.param('scale', self.scale_init, (c,), jnp.float32)
    bias = self.param('bias', nn.initializers.zeros, (c,), jnp.float32)
    dtype = self.dtype or x.dtype
    xg = x.astype(jnp.float32).reshape(x.shape[:-1] + (groups, c // groups))
    axes = tuple(range(1, xg.ndim - 2)) + (xg.ndim - 1,)
    mean = jnp.mean(xg, axis=axes, keepdims=True)
    var = jnp.mean(jnp.square(xg - mean), axis=axes, keepdims=True)
    y = ((xg - mean) * jax.lax.rsqrt(var + self.epsilon)).reshape(x.shape)
    return (y * scale + bias).astype(dtype)


def make_norm(kind: str, *, train: bool = False, dtype: Any = None
             ) -> Callable[..., nn.Module]:
  """A factory of normalization modules, called as `factory(name=..., [scale_init=...])`.

  Args:
    kind: one of NORM_KINDS.
    train: 'batch' only: normalize with batch statistics and update the running ones
      (apply with mutable=['batch_stats']); otherwise use the running averages.
    dtype: compute dtype (parameters stay float32).
  """
  if kind == 'batch':
    return functools.partial(nn.BatchNorm, use_running_average=not train, momentum=0.9,
                             epsilon=1e-5, dtype=dtype)
  if kind == 'frozen_batch':
    return functools.partial(FrozenBatchNorm, epsilon=1e-5, dtype=dtype)
  if kind == 'group':
    return functools.partial(GroupNorm, dtype=dtype)
  if kind == 'instance':
    # scale_init is accepted (and unused) so that callers can pass it for every kind.
    return functools.partial(nn.InstanceNorm, use_scale=False, use_bias=False, epsilon=1e-5,
                             use_fast_variance=False, dtype=dtype)
  if kind == 'instance_affine':
    return functools.partial(nn.InstanceNorm, use_scale=True, use_bias=True, epsilon=1e-5,
                             use_fast_variance=False, dtype=dtype)
  if kind == 'none':
    return lambda name=None, scale_init=None: _Identity(name=name)
  raise ValueError(f'norm must be one of {NORM_KINDS}, not {kind!r}')
