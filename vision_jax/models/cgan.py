"""A DCGAN-style class-conditional GAN (Radford et al. 2016; Mirza & Osindero 2014;
projection discriminator: Miyato & Koyama 2018), NHWC.

  gen = Generator(num_classes=10, channels=1)               # 32 x 32 x 1 by default
  disc = Discriminator(num_classes=10, conditioning='projection')
  g_vars = gen.init(key, z, labels)                         # z [B, latent_dim], labels [B]
  images, upd = gen.apply(g_vars, z, labels, train=True, mutable=['batch_stats'])
  logits, upd = disc.apply(d_vars, images, labels, train=True, mutable=['batch_stats'])

Conventions
  z        [B, latent_dim] float, the latent code (N(0, I) is the usual prior).
  labels   [B] int, class ids in [0, num_classes).
  images   [B, S, S, channels] in [-1, 1] (S = image_size): the generator's tanh output,
           and what the discriminator expects for real images too (uint8 x / 127.5 - 1).
  logits   [B] float32, the discriminator's raw score (real > fake); feed them to
           `vision_jax.losses.gan`.
Outputs are float32 whatever the compute `dtype` (float32 or bfloat16); params and
batch statistics are float32. `train=True` normalizes with batch statistics and updates
the running ones (apply with mutable=['batch_stats']); `train=False` uses the running
averages. With norm='none' neither module has 'batch_stats'.

Generator (widths = (256, 128, 64), S = 32):
  [z, embed(label)] -> Dense -> [S/8, S/8, 256] -> BN -> ReLU
  -> up x2 -> 128 -> BN -> ReLU -> up x2 -> 64 -> BN -> ReLU -> up x2 -> channels -> tanh.
  One x2 upsampling per width, so S must be a multiple of 2 ** len(widths).
  'deconv' upsampling is a 4x4 stride-2 transposed conv (`nn.upsample.ConvTranspose4x4`,
  DCGAN's); 'nearest' is a nearest x2 resize then a 3x3 conv (no checkerboard).

Discriminator (widths = (64, 128, 256)):
  x -> [conv 4x4 / 2 -> LeakyReLU(0.2)] (no norm on the first layer)
    -> [conv 4x4 / 2 -> norm -> LeakyReLU(0.2)] per further width
    -> phi(x) = the flattened [S / 2**n, S / 2**n, widths[-1]] map, [B, F]
  conditioning
    'concat'      one-hot label maps, [B, S, S, num_classes], concatenated to the input
                  channels; logit = psi(phi(x)) with psi a Dense(1).
    'projection'  logit = psi(phi(x)) + <embed(y), phi(x)>, embed: [num_classes, F]
                  (Miyato & Koyama 2018, eq. 3); the label enters only there.
"""
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from vision_jax.nn import norms
from vision_jax.nn import upsample as upsample_lib

CONDITIONINGS = ('concat', 'projection')
UPSAMPLE_MODES = ('deconv', 'nearest')


def _check_size(image_size: int, widths: Sequence[int]) -> int:
  """The side of the smallest map, image_size / 2**len(widths)."""
  factor = 2 ** len(widths)
  if image_size % factor or image_size < factor:
    raise ValueError(f'image_size must be a positive multiple of 2**len(widths) = {factor} '
                     f'(one x2 stage per width {tuple(widths)}), not {image_size}')
  return image_size // factor


class Generator(nn.Module):
  """Class-conditional DCGAN generator: (z, label) -> image in [-1, 1].

  Attributes:
    num_classes: number of labels.
    latent_dim: size of z.
    embed_dim: size of the learned label embedding concatenated to z.
    widths: channels of the S/2**n map and of each upsampling stage but the last (which
      outputs `channels`); one x2 stage per width.
    image_size: S, a multiple of 2 ** len(widths) (8 by default).
    channels: output channels (1 grey, 3 RGB).
    upsample: 'deconv' or 'nearest' (see the module docstring).
    norm: a `vision_jax.nn.norms` kind after every layer but the last ('batch').
    dtype: compute dtype; params float32, output float32.
  """
  num_classes: int = 10
  latent_dim: int = 64
  embed_dim: int = 32
  widths: Sequence[int] = (256, 128, 64)
  image_size: int = 32
  channels: int = 1
  upsample: str = 'deconv'
  norm: str = 'batch'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, z, labels, *, train: bool = False):
    """z: [B, latent_dim] float, labels: [B] int -> [B, S, S, channels] float32 in [-1, 1]."""
    if self.upsample not in UPSAMPLE_MODES:
      raise ValueError(f'upsample must be one of {UPSAMPLE_MODES}, not {self.upsample!r}')
    if z.ndim != 2 or z.shape[-1] != self.latent_dim:
      raise ValueError(f'z must be [B, {self.latent_dim}], got {z.shape}')
    side = _check_size(self.image_size, self.widths)
    dtype = jnp.dtype(self.dtype)
    norm = norms.make_norm(self.norm, train=train, dtype=dtype)
    embed = nn.Embed(self.num_classes, self.embed_dim, dtype=dtype, name='label_embed')
    h = jnp.concatenate([z.astype(dtype), embed(labels)], axis=-1)
    h = nn.Dense(side * side * self.widths[0], use_bias=self.norm == 'none', dtype=dtype,
                 name='project')(h)
    h = h.reshape(z.shape[0], side, side, self.widths[0])
    h = nn.relu(norm(name='project_norm')(h))
    outs = list(self.widths[1:]) + [self.channels]
    for i, ch in enumerate(outs):
      last = i == len(outs) - 1
      use_bias = last or self.norm == 'none'
      if self.upsample == 'deconv':
        h = upsample_lib.ConvTranspose4x4(ch, use_bias=use_bias, dtype=dtype,
                                          name=f'up{i}')(h)
      else:
        b, hh, ww, c = h.shape
        h = jax.image.resize(h, (b, 2 * hh, 2 * ww, c), method='nearest')
        h = nn.Conv(ch, (3, 3), padding=((1, 1), (1, 1)), use_bias=use_bias, dtype=dtype,
                    name=f'up{i}')(h)
      if not last:
        h = nn.relu(norm(name=f'up{i}_norm')(h))
    return jnp.tanh(h.astype(jnp.float32))


class Discriminator(nn.Module):
  """Class-conditional DCGAN discriminator: (image in [-1, 1], label) -> logit.

  Attributes:
    num_classes: number of labels.
    widths: channels of the strided 4x4 convs (each halves the side).
    image_size: S, checked against the input; a multiple of 2 ** len(widths).
    channels: input channels.
    conditioning: 'concat' or 'projection' (see the module docstring).
    norm: a `vision_jax.nn.norms` kind after every conv but the first ('batch', DCGAN;
      'none' is common with 'projection').
    dtype: compute dtype; params float32; the logit head runs in float32.
  """
  num_classes: int = 10
  widths: Sequence[int] = (64, 128, 256)
  image_size: int = 32
  channels: int = 1
  conditioning: str = 'projection'
  norm: str = 'batch'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images, labels, *, train: bool = False):
    """images: [B, S, S, channels] in [-1, 1], labels: [B] int -> logits [B] float32."""
    if self.conditioning not in CONDITIONINGS:
      raise ValueError(f'conditioning must be one of {CONDITIONINGS}, '
                       f'not {self.conditioning!r}')
    expected = (self.image_size, self.image_size, self.channels)
    if images.ndim != 4 or images.shape[1:] != expected:
      raise ValueError(f'images must be [B, {", ".join(map(str, expected))}], '
                       f'got {images.shape}')
    _check_size(self.image_size, self.widths)
    dtype = jnp.dtype(self.dtype)
    norm = norms.make_norm(self.norm, train=train, dtype=dtype)
    x = images.astype(dtype)
    b, h, w, _ = x.shape
    if self.conditioning == 'concat':
      maps = jax.nn.one_hot(labels, self.num_classes, dtype=dtype)[:, None, None, :]
      x = jnp.concatenate([x, jnp.broadcast_to(maps, (b, h, w, self.num_classes))], -1)
    for i, ch in enumerate(self.widths):
      first = i == 0
      x = nn.Conv(ch, (4, 4), strides=(2, 2), padding=((1, 1), (1, 1)),
                  use_bias=first or self.norm == 'none', dtype=dtype, name=f'conv{i}')(x)
      if not first:
        x = norm(name=f'norm{i}')(x)
      x = nn.leaky_relu(x, 0.2)
    phi = x.reshape(b, -1).astype(jnp.float32)
    logits = nn.Dense(1, dtype=jnp.float32, name='logit')(phi)[:, 0]
    if self.conditioning == 'projection':
      embed = nn.Embed(self.num_classes, phi.shape[-1], dtype=jnp.float32,
                       embedding_init=nn.initializers.xavier_uniform(),
                       name='label_embed')
      logits = logits + jnp.sum(embed(labels) * phi, axis=-1)
    return logits
