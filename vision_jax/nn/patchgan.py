"""PatchGAN discriminator (Isola et al. 2017; the reference's NLayerDiscriminator), NHWC,
and `receptive_field`, measured on the module itself.

  disc = PatchDiscriminator(n_layers=3)                     # the 70 x 70 PatchGAN
  logits = disc.apply(variables, images, train=False)       # [B, h, w, 1]
  receptive_field(disc)                                     # -> 70

Shapes
  x        [B, S, S', C] float: for pix2pix the channel concatenation of the input and the
           (real or generated) output image, for CycleGAN one image.
  logits   [B, h, w, 1] float32, one real/fake logit per overlapping patch:
           h = S / 2**n_layers - 2 (S divisible by 2**n_layers; 256 px -> 30 x 30 for
           n_layers=3). Feed them to `vision_jax.losses.gan`.

Layers (f = features):
  conv 4x4 stride 2 pad 1 -> f -> LeakyReLU(0.2)                       (no norm)
  for n = 1 .. n_layers-1: conv 4x4 stride 2 pad 1 -> f * min(2**n, 8) -> norm -> LReLU
  conv 4x4 stride 1 pad 1 -> f * min(2**n_layers, 8) -> norm -> LeakyReLU(0.2)
  conv 4x4 stride 1 pad 1 -> 1                                         (the logits)
Receptive field of one logit: 16, 34, 70, 142 pixels for n_layers = 1, 2, 3, 4
(r = 1 -> +3 -> +3 through the stride-1 convs, then r -> 2 (r - 1) + 4 per stride-2
conv).

Biases: the first and the last conv always have one; the others only when norm is not
'batch' (the reference gives them one for 'instance' only, i.e. it also drops them for
norm 'none', where nothing would absorb them: here they keep it). Initialisation as the
reference's init_weights('normal', 0.02): kernels N(0, 0.02), biases 0, batch norm scale
N(1, 0.02). Params float32; `dtype` is the compute dtype.
"""
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vision_jax.nn import conv as conv_lib
from vision_jax.nn import norms
from vision_jax.nn import unet

NORMS = ('batch', 'instance', 'none')


class PatchDiscriminator(nn.Module):
  """PatchGAN: x [B, S, S', C] -> logits [B, S/2**n_layers - 2, S'/2**n_layers - 2, 1].

  Attributes:
    features: width of the first conv (the reference's ndf).
    n_layers: number of stride-2 convs (3: the 70 x 70 PatchGAN).
    norm: 'batch' | 'instance' | 'none'.
    dtype: compute dtype (None: float32 / the inputs'); params stay float32.
  """
  features: int = 64
  n_layers: int = 3
  norm: str = 'batch'
  dtype: Any = None

  @nn.compact
  def __call__(self, x, *, train: bool):
    """x: [B, S, S', C] -> [B, h, w, 1] float32 logits (see the module docstring).

    Args:
      x: images, S and S' divisible by 2**n_layers.
      train: batch norm uses (and updates, mutable=['batch_stats']) batch statistics.
    Raises:
      ValueError: unknown norm, n_layers < 1, or a side not divisible by 2**n_layers.
    """
    if self.norm not in NORMS:
      raise ValueError(f'PatchDiscriminator: norm must be one of {NORMS}, not {self.norm!r}')
    if self.n_layers < 1:
      raise ValueError(f'PatchDiscriminator: n_layers must be >= 1, not {self.n_layers}')
    unet.check_divisible('PatchDiscriminator', x.shape, 2 ** self.n_layers,
                         f'n_layers (n_layers={self.n_layers})')
    norm = norms.make_norm(self.norm, train=train, dtype=self.dtype)
    use_bias = self.norm != 'batch'
    kw = dict(kernel_init=unet.KERNEL_INIT, dtype=self.dtype)
    h = conv_lib.Conv(self.features, 4, strides=2, use_bias=True, name='conv0', **kw)(x)
    h = nn.leaky_relu(h, 0.2)
    for n in range(1, self.n_layers + 1):
      width = self.features * min(2 ** n, 8)
      stride = 2 if n < self.n_layers else 1
      h = conv_lib.Conv(width, 4, strides=stride, use_bias=use_bias, name=f'conv{n}', **kw)(h)
      h = norm(name=f'norm{n}', scale_init=unet.norm_scale_init)(h)
      h = nn.leaky_relu(h, 0.2)
    h = conv_lib.Conv(1, 4, strides=1, use_bias=True, name='logits', **kw)(h)
    return h.astype(jnp.float32)


def _positive(leaf):
  """A positive constant array of `leaf`'s shape: 1 / prod(shape[:-1]) for kernels."""
  scale = 1.0 / max(1, int(np.prod(leaf.shape[:-1]))) if len(leaf.shape) >= 2 else 1.0
  return jnp.full(leaf.shape, scale, leaf.dtype)


def receptive_field(module: nn.Module, input_size: int | None = None,
                    channels: int = 3) -> int:
  """The receptive field (pixels, one side) of a central output of a convolutional module.

  Measured, not looked up: the module (with its norm replaced by 'none' when it has a
  `norm` attribute, so that no batch or instance statistic couples distant pixels; a
  per-pixel affine norm does not change the field) gets positive parameters (every
  kernel 1 / fan-in, every other variable 1; no random init, nothing to compile but the
  gradient), so that all paths add up with the same sign and nothing cancels;
  the gradient of the central logit w.r.t. a [1, s, s, channels] input is then non-zero
  exactly on the pixels that the logit sees, and the extent of that support is the field.

  Args:
    module: a flax module called as `module.apply(variables, x, train=False)` on NHWC
      x, returning [1, h, w, K] (e.g. `PatchDiscriminator`).
    input_size: the side s of the probe input. None: 64, 256, 1024 until the support
      lies strictly inside the input (not clipped by the border).
    channels: input channels of the probe.
  Returns:
    the side of the (square) support, e.g. 70 for PatchDiscriminator(n_layers=3).
  Raises:
    ValueError: the support touches the border of an explicit `input_size` (too small),
      or no size up to 1024 contains it.
  """
  probe = module.clone(norm='none') if hasattr(module, 'norm') else module.clone()
  sizes = (input_size,) if input_size else (64, 256, 1024)
  for s in sizes:
    x = jnp.zeros((1, s, s, channels), jnp.float32)
    try:
      shapes = jax.eval_shape(functools.partial(probe.init, train=False),
                              jax.random.PRNGKey(0), x)
    except (ValueError, TypeError):  # too small for this module (e.g. not divisible)
      if input_size:
        raise
      continue
    variables = jax.tree.map(_positive, shapes)

    def central(inputs, variables=variables):
      y = probe.apply(variables, inputs, train=False)
      return jnp.sum(y[0, y.shape[1] // 2, y.shape[2] // 2])

    grad = np.asarray(jax.jit(jax.grad(central))(x))[0]
    support = np.any(grad != 0, axis=-1)
    rows = np.flatnonzero(support.any(axis=1))
    cols = np.flatnonzero(support.any(axis=0))
    if rows.size == 0:
      raise ValueError('receptive_field: the central output does not depend on the input')
    inside = rows[0] > 0 and cols[0] > 0 and rows[-1] < s - 1 and cols[-1] < s - 1
    if inside:
      return int(max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1))
    if input_size:
      raise ValueError(f'receptive_field: input_size={input_size} is too small, the '
                       'receptive field reaches its border')
  raise ValueError('receptive_field: the receptive field exceeds 1024 pixels')
