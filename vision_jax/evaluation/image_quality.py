"""PSNR and SSIM as the super-resolution literature reports them: on the Y channel, borders
cropped.

  scores = psnr(sr, hr, crop_border=scale)   # [N] dB
  scores = ssim(sr, hr, crop_border=scale)   # [N]

The protocol of EDSR / RCAN's MATLAB scripts and BasicSR's `calculate_psnr` /
`calculate_ssim` with `test_y_channel=True`:

  images   a, b: [N, H, W, 3] RGB (NHWC) in [0, data_range] (float in [0, 1] by default;
           uint8 with data_range=255 works too); computed in float32.
  crop     `crop_border` pixels are dropped on each side (BasicSR passes the SR scale);
           0 keeps the whole image.
  Y        MATLAB's rgb2ycbcr luma on a 0..255 scale, not rounded (as BasicSR's float path):
           Y = 16 + 65.481 R + 128.553 G + 24.966 B for R, G, B in [0, 1], so Y lies in
           [16, 235] and its peak value for PSNR and SSIM is L = 255.
  RGB      y_channel=False scores the channels as they are, at data range 1 (after the
           division by data_range): PSNR on the MSE over all channels, SSIM the mean of the
           per-channel SSIMs (BasicSR's RGB path on [0, 255], which gives the same numbers).
           Then any number of channels C is accepted.
  PSNR     10 log10(L^2 / MSE) per image; +inf for an image identical to its reference
           (as BasicSR and skimage), so a mean over a dataset with an exact copy is inf.
  SSIM     Wang et al. (2004): 11x11 Gaussian window of sigma 1.5, K1 = 0.01, K2 = 0.03,
           population (not sample) covariances, statistics at 'valid' window positions
           only, SSIM map averaged per image; equal to MATLAB's ssim_index, to BasicSR's
           `_ssim` and to skimage's structural_similarity(gaussian_weights=True, sigma=1.5,
           use_sample_covariance=False). The map itself is `dm_pix.ssim`'s, the SSIM that
           `evaluation.translation` reports too (float32, HIGHEST-precision separable
           filtering; within ~2e-6 of skimage's float64 on real photos). After cropping,
           H and W must be at least 11.

Both functions are jitted (the keyword arguments are static) and return [N] float32.
"""
import functools

import dm_pix
import jax
import jax.numpy as jnp

# MATLAB rgb2ycbcr (ITU-R BT.601) luma weights for RGB in [0, 1], output on 0..255.
_Y_WEIGHTS = (65.481, 128.553, 24.966)
_Y_OFFSET = 16.0
_Y_PEAK = 255.0
_SSIM_WINDOW = 11


def _prepare(a, b, crop_border: int, data_range: float, y_channel: bool, min_size: int,
             name: str):
  """Checks shapes, crops, scales to [0, 1] float32: two [N, h, w, C] arrays."""
  a, b = jnp.asarray(a), jnp.asarray(b)
  if a.ndim != 4 or b.ndim != 4 or a.shape != b.shape:
    raise ValueError(f'{name}: a and b must be [N, H, W, C] arrays of one shape, got '
                     f'{a.shape} and {b.shape}')
  if y_channel and a.shape[-1] != 3:
    raise ValueError(f'{name}: y_channel=True needs RGB images [N, H, W, 3], got {a.shape}')
  if crop_border < 0:
    raise ValueError(f'{name}: crop_border must be >= 0, got {crop_border}')
  h, w = a.shape[1] - 2 * crop_border, a.shape[2] - 2 * crop_border
  if min(h, w) < min_size:
    raise ValueError(f'{name}: images of {a.shape[1]}x{a.shape[2]} cropped by '
                     f'crop_border={crop_border} on each side leave {h}x{w}, need at least '
                     f'{min_size}x{min_size}')
  if data_range <= 0:
    raise ValueError(f'{name}: data_range must be > 0, got {data_range}')
  dtype = jnp.promote_types(a.dtype, jnp.float32)
  crop = lambda x: x[:, crop_border:crop_border + h, crop_border:crop_border + w]
  return (crop(a).astype(dtype) / data_range, crop(b).astype(dtype) / data_range)


def _luma(rgb, offset: float = _Y_OFFSET):
  """[..., 3] RGB in [0, 1] -> [..., 1] MATLAB Y on 0..255."""
  weights = jnp.asarray(_Y_WEIGHTS, rgb.dtype)
  y = jnp.einsum('...c,c->...', rgb, weights, precision=jax.lax.Precision.HIGHEST)
  return (y + offset)[..., None]


def rgb_to_y(images):
  """MATLAB rgb2ycbcr's luma, not rounded: [..., 3] RGB in [0, 1] -> [..., 1] in [16, 235]."""
  x = jnp.asarray(images)
  return _luma(x.astype(jnp.promote_types(x.dtype, jnp.float32)))


@functools.partial(jax.jit, static_argnames=('y_channel', 'crop_border', 'data_range'))
def psnr(a, b, *, y_channel: bool = True, crop_border: int = 4, data_range: float = 1.0):
  """Peak signal-to-noise ratio per image, in dB (the SR protocol, module docstring).

  Args:
    a, b: [N, H, W, 3] RGB in [0, data_range] (any C when y_channel=False), one shape.
    y_channel: score MATLAB's Y (peak 255) rather than the channels (peak 1).
    crop_border: pixels dropped on each side first; H, W > 2 * crop_border.
    data_range: the inputs' value range (1 for float [0, 1], 255 for uint8).
  Returns:
    [N] float32; +inf where a and b are identical (after cropping).
  Raises:
    ValueError: not 4-D, shapes differ, not RGB with y_channel, or nothing left after
      cropping (the messages name the shapes).
  """
  a, b = _prepare(a, b, crop_border, data_range, y_channel, 1, 'psnr')
  diff = a - b
  peak = 1.0
  if y_channel:
    # The luma of the difference (offset 0): the 16 cancels, and float32 keeps the small
    # differences of good reconstructions exactly instead of subtracting two values ~200.
    diff, peak = _luma(diff, offset=0.0), _Y_PEAK
  mse = jnp.mean(jnp.square(diff), axis=(1, 2, 3))
  return 10.0 * jnp.log10(peak ** 2 / mse)


@functools.partial(jax.jit, static_argnames=('y_channel', 'crop_border', 'data_range'))
def ssim(a, b, *, y_channel: bool = True, crop_border: int = 4, data_range: float = 1.0):
  """Structural similarity per image (Wang et al. 2004; the SR protocol, module docstring).

  Args:
    a, b: [N, H, W, 3] RGB in [0, data_range] (any C when y_channel=False), one shape.
    y_channel: score MATLAB's Y with L = 255; False: the mean over channels with L = 1.
    crop_border: pixels dropped on each side first; H, W >= 2 * crop_border + 11.
    data_range: the inputs' value range (1 for float [0, 1], 255 for uint8).
  Returns:
    [N] float32 in [-1, 1]; 1 where a and b are identical.
  Raises:
    ValueError: not 4-D, shapes differ, not RGB with y_channel, or less than the 11x11
      window left after cropping (the messages name the shapes).
  """
  a, b = _prepare(a, b, crop_border, data_range, y_channel, _SSIM_WINDOW, 'ssim')
  peak = 1.0
  if y_channel:
    a, b, peak = _luma(a), _luma(b), _Y_PEAK
  return dm_pix.ssim(a, b, max_val=peak, filter_size=_SSIM_WINDOW, filter_sigma=1.5,
                     k1=0.01, k2=0.03)
