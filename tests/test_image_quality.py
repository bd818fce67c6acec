"""PSNR / SSIM on Y against skimage (float64) on real photos with degraded copies."""
import jax
import numpy as np
import pytest
from skimage import data as skdata
from skimage import metrics
from skimage import transform

from vision_jax.evaluation import image_quality as iq

CROP = 4
Y_WEIGHTS = np.array([65.481, 128.553, 24.966])


def _y(rgb):
  """MATLAB rgb2ycbcr luma on 0..255, float64, [..., 3] in [0, 1] -> [...]."""
  return 16.0 + rgb.astype(np.float64) @ Y_WEIGHTS


@pytest.fixture(scope='module')
def photos():
  """Real photo crops [3, 96, 128, 3] float32 in [0, 1], a bicubic x4 down-up copy and a
  noisy copy."""
  crops = [skdata.astronaut()[40:136, 180:308], skdata.chelsea()[60:156, 150:278],
           skdata.coffee()[100:196, 200:328]]
  hr = np.stack(crops).astype(np.float32) / 255
  down_up = [transform.resize(transform.resize(x, (24, 32), order=3, anti_aliasing=True),
                              x.shape, order=3) for x in hr]
  blurry = np.clip(np.stack(down_up), 0, 1).astype(np.float32)
  rng = np.random.default_rng(0)
  noisy = np.clip(hr + rng.normal(0, 0.03, hr.shape), 0, 1).astype(np.float32)
  return hr, blurry, noisy


def _reference(a, b, crop, y_channel=True):
  """skimage's PSNR and SSIM per image, float64, after the crop."""
  psnrs, ssims = [], []
  for x, y in zip(a, b):
    x, y = x[crop:x.shape[0] - crop, crop:x.shape[1] - crop], y[crop:y.shape[0] - crop,
                                                                crop:y.shape[1] - crop]
    if y_channel:
      x, y, peak, axis = _y(x), _y(y), 255, None
    else:
      x, y, peak, axis = x.astype(np.float64), y.astype(np.float64), 1, -1
    psnrs.append(metrics.peak_signal_noise_ratio(x, y, data_range=peak))
    ssims.append(metrics.structural_similarity(
        x, y, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
        data_range=peak, channel_axis=axis))
  return np.array(psnrs), np.array(ssims)


@pytest.mark.parametrize('crop', [CROP, 0])
def test_y_channel_matches_skimage(photos, crop):
  hr, blurry, noisy = photos
  for degraded in (blurry, noisy):
    want_psnr, want_ssim = _reference(degraded, hr, crop)
    got_psnr = np.asarray(iq.psnr(degraded, hr, crop_border=crop))
    got_ssim = np.asarray(iq.ssim(degraded, hr, crop_border=crop))
    assert got_psnr.shape == got_ssim.shape == (3,)
    np.testing.assert_allclose(got_psnr, want_psnr, rtol=0, atol=1e-4)
    np.testing.assert_allclose(got_ssim, want_ssim, rtol=0, atol=1e-5)
  # The degradations are real: blurry and noisy copies score well below a copy.
  assert np.all(want_psnr < 40) and np.all(want_ssim < 0.98)


def test_rgb_matches_skimage_at_data_range_one(photos):
  hr, blurry, _ = photos
  want_psnr, want_ssim = _reference(blurry, hr, CROP, y_channel=False)
  np.testing.assert_allclose(iq.psnr(blurry, hr, y_channel=False), want_psnr, atol=1e-4)
  np.testing.assert_allclose(iq.ssim(blurry, hr, y_channel=False), want_ssim, atol=1e-5)


def test_uint8_with_data_range_255(photos):
  hr, blurry, _ = photos
  hr8, blurry8 = (np.round(x * 255).astype(np.uint8) for x in (hr, blurry))
  want = iq.psnr(blurry8.astype(np.float32) / 255, hr8.astype(np.float32) / 255)
  np.testing.assert_allclose(iq.psnr(blurry8, hr8, data_range=255.0), want, rtol=1e-6)


def test_identical_images(photos):
  hr = photos[0]
  assert np.all(np.isposinf(np.asarray(iq.psnr(hr, hr))))
  np.testing.assert_allclose(iq.ssim(hr, hr), 1.0, atol=1e-6)
  np.testing.assert_allclose(iq.ssim(hr, hr, y_channel=False), 1.0, atol=1e-6)


def test_y_channel_range_and_jit():
  white, black = np.ones((1, 1, 3), np.float32), np.zeros((1, 1, 3), np.float32)
  np.testing.assert_allclose(iq.rgb_to_y(white)[..., 0], 235.0, rtol=1e-6)
  np.testing.assert_allclose(iq.rgb_to_y(black)[..., 0], 16.0)
  a = np.random.default_rng(1).uniform(size=(2, 20, 20, 3)).astype(np.float32)
  b = np.clip(a + 0.01, 0, 1)
  inside = jax.jit(lambda x, y: (iq.psnr(x, y, crop_border=2), iq.ssim(x, y, crop_border=2)))
  for got, fn in zip(inside(a, b), (iq.psnr, iq.ssim)):
    np.testing.assert_allclose(got, fn(a, b, crop_border=2), rtol=1e-6)


def test_errors_name_the_shapes():
  a = np.zeros((2, 32, 32, 3), np.float32)
  with pytest.raises(ValueError, match=r'\(2, 32, 32, 3\) and \(2, 32, 30, 3\)'):
    iq.psnr(a, a[:, :, :30])
  with pytest.raises(ValueError, match=r'\(32, 32, 3\)'):
    iq.ssim(a[0], a[0])
  with pytest.raises(ValueError, match='RGB'):
    iq.psnr(a[..., :1], a[..., :1])
  with pytest.raises(ValueError, match='crop_border=16.*0x0'):
    iq.psnr(a, a, crop_border=16)
  with pytest.raises(ValueError, match='crop_border=11.*10x10.*11x11'):
    iq.ssim(a, a, crop_border=11)
