"""Image-translation metrics (pix2pix, CycleGAN): distances to the targets, sharpness,
input dependence, and the FCN-score of a segmentation judge beside its real upper bound.

  metrics = translation_metrics(generated, targets, semantic, judge_variables,
                                num_classes=5, prefix='a2b/')
  # {'a2b/judge/pixel_accuracy': ..., 'a2b/judge_real/pixel_accuracy': ..., 'a2b/l1': ...}

Conventions
  images   [N, H, W, C] uint8 in [0, 255] (divided by 255) or float in [0, 1] (a tanh
           output x maps to (x + 1) / 2); every metric works on float32 in [0, 1], so
           data range 1.
  pairs    `generated[i]` is the model's output for the input whose real counterpart is
           `targets[i]` and whose semantic map is `semantic[i]`.

What each says
  l1               mean |generated - targets| over all pixels and channels; 0 is perfect.
  psnr             dB, dm_pix.psnr per image, averaged over images (inf for an exact copy).
  ssim             dm_pix.ssim per image (Gaussian window 11, sigma 1.5, k1 0.01, k2 0.03,
                   valid windows only, so H and W >= 11), averaged over images; 1 is perfect.
  sharpness_ratio  gradient energy of the outputs over that of the targets; an L1-only
                   model that paints the conditional mean is blurry, < 1; 1 is as sharp.
  input_dependence how much outputs differ between different inputs relative to how much
                   the targets do; ~0 for a collapsed model that ignores its input, 1 for
                   one that varies like the data.
  judge/...        FCN-scores (`segmentation_judge.segmentation_scores`) of the judge on the
                   generated images against the semantic maps.
  judge_real/...   the same judge on the real targets against the same maps: the upper bound.
"""
from typing import Any, Callable

import dm_pix
import jax
import numpy as np

from vision_jax.evaluation import segmentation_judge

_CHUNK = 256  # images per device call of the dm_pix metrics


def to_unit_float(images, name: str = 'images') -> np.ndarray:
  """[N, H, W, C] uint8 or float in [0, 1] -> float32 in [0, 1] (numpy).

  Raises ValueError for other ranks, dtypes or ranges (a float outside [0, 1] by more than
  1e-3 is most likely an unmapped tanh output in [-1, 1]); values within the tolerance are
  clipped.
  """
  x = np.asarray(images)
  if x.ndim != 4:
    raise ValueError(f'{name} must be [N, H, W, C], got shape {x.shape}')
  if x.dtype == np.uint8:
    return x.astype(np.float32) / 255.0
  if not np.issubdtype(x.dtype, np.floating):
    raise ValueError(f'{name} must be uint8 or float in [0, 1], got {x.dtype}')
  x = x.astype(np.float32)
  if x.size and (x.min() < -1e-3 or x.max() > 1 + 1e-3):
    raise ValueError(f'{name} must lie in [0, 1], got [{x.min()}, {x.max()}] (map a tanh '
                     'output x with (x + 1) / 2)')
  return np.clip(x, 0.0, 1.0)


def _pair(outputs, targets) -> tuple[np.ndarray, np.ndarray]:
  a, b = to_unit_float(outputs, 'outputs'), to_unit_float(targets, 'targets')
  if a.shape != b.shape:
    raise ValueError(f'outputs and targets must share a shape, got {a.shape} and {b.shape}')
  if not len(a):
    raise ValueError('no images')
  return a, b


def _per_image_mean(fn: Callable, a: np.ndarray, b: np.ndarray) -> float:
  """Mean over images of fn(a, b) -> [N], in chunks of _CHUNK (the last one padded)."""
  values = []
  for start in range(0, len(a), _CHUNK):
    ca, cb = a[start:start + _CHUNK], b[start:start + _CHUNK]
    n = len(ca)
    if len(a) > _CHUNK and n < _CHUNK:  # one compiled shape for all chunks
      pad = ((0, _CHUNK - n),) + ((0, 0),) * 3
      ca, cb = np.pad(ca, pad), np.pad(cb, pad)
    values.append(np.asarray(fn(ca, cb), np.float64)[:n])
  return float(np.mean(np.concatenate(values)))


@jax.jit
def _psnr(a, b):
  return dm_pix.psnr(a, b)


@jax.jit
def _ssim(a, b):
  return dm_pix.ssim(a, b, max_val=1.0)


def l1(outputs, targets) -> float:
  """Mean absolute error on [0, 1] over all pixels, channels and images.

  Args:
    outputs, targets: [N, H, W, C] uint8 or float in [0, 1], the same shape.
  Returns:
    a float in [0, 1]; 0 for identical images.
  """
  a, b = _pair(outputs, targets)
  return float(np.mean(np.abs(a.astype(np.float64) - b)))


def psnr(outputs, targets) -> float:
  """Peak signal-to-noise ratio in dB (data range 1), per image, averaged over images.

  psnr_i = -10 log10(mean((outputs_i - targets_i) ** 2)) (dm_pix.psnr), computed in
  float32; an image identical to its target contributes inf (and so the mean is inf).

  Args:
    outputs, targets: [N, H, W, C] uint8 or float in [0, 1], the same shape.
  Returns:
    a float, the mean over images.
  """
  a, b = _pair(outputs, targets)
  return _per_image_mean(_psnr, a, b)


def ssim(outputs, targets) -> float:
  """Structural similarity (dm_pix.ssim, data range 1), per image, averaged over images.

  Gaussian window 11 (sigma 1.5), k1 0.01, k2 0.03, averaged over valid window positions
  and channels (so H, W >= 11).

  Args:
    outputs, targets: [N, H, W, C] uint8 or float in [0, 1], the same shape.
  Returns:
    a float in [-1, 1]; 1 for identical images.
  """
  a, b = _pair(outputs, targets)
  if min(a.shape[1:3]) < 11:
    raise ValueError(f'ssim needs images of at least 11x11 (its window), got {a.shape}')
  return _per_image_mean(_ssim, a, b)


def gradient_energy(images) -> float:
  """Mean squared finite difference along x plus that along y (float64).

  E = mean((x[:, :, 1:] - x[:, :, :-1]) ** 2) + mean((x[:, 1:] - x[:, :-1]) ** 2), over
  images, positions and channels.

  Args:
    images: [N, H, W, C] uint8 or float in [0, 1], H and W >= 2.
  """
  x = to_unit_float(images).astype(np.float64)
  if x.shape[1] < 2 or x.shape[2] < 2 or not len(x):
    raise ValueError(f'gradient energy needs images of at least 2x2, got {x.shape}')
  return float(np.mean(np.diff(x, axis=2) ** 2) + np.mean(np.diff(x, axis=1) ** 2))


def sharpness_ratio(outputs, reals) -> float:
  """Gradient energy of the outputs over that of real images (`gradient_energy`).

  1 for outputs as sharp as the reals; < 1 for blurry outputs (an L1-only model), > 1 for
  noisier ones. NaN when the reals are flat (energy 0).

  Args:
    outputs: [N, H, W, C] uint8 or float in [0, 1].
    reals: [M, H', W', C'] uint8 or float in [0, 1] (need not pair with the outputs).
  """
  real_energy = gradient_energy(reals)
  if real_energy == 0:
    return float('nan')
  return gradient_energy(outputs) / real_energy


def derangement(n: int, seed: int = 0) -> np.ndarray:
  """A fixed permutation j of range(n) with j[i] != i for all i (n >= 2).

  The images visited in a random order (numpy PCG64 from `seed`) form one cycle: each
  is paired with the next one in that order, so a sorted dataset does not pair
  neighbours. [n] int64.
  """
  if n < 2:
    raise ValueError(f'a derangement needs at least 2 elements, got {n}')
  order = np.random.default_rng(seed).permutation(n)
  j = np.empty(n, np.int64)
  j[order] = np.roll(order, -1)
  return j


def input_dependence(outputs, targets) -> float:
  """How much outputs vary across different inputs, relative to the real targets.

  With the fixed pairing j = derangement(N):
    D(x) = mean over i of mean |x_i - x_j(i)| (pixels, channels; [0, 1] range)
    input_dependence = D(outputs) / D(targets)
  1 for outputs that differ from one another as much as the targets do (the targets
  themselves give exactly 1), 0 for a collapsed model whose output ignores its input.
  NaN when all targets are identical.

  Args:
    outputs: [N, H, W, C] uint8 or float in [0, 1], outputs[i] for input i.
    targets: [N, H, W, C] uint8 or float in [0, 1], the real targets of the same inputs
      (N >= 2).
  """
  a, b = _pair(outputs, targets)
  j = derangement(len(a))
  spread = lambda x: float(np.mean(np.abs(x.astype(np.float64) - x[j])))
  target_spread = spread(b)
  if target_spread == 0:
    return float('nan')
  return spread(a) / target_spread


TRANSLATION_KEYS = (
    'judge/pixel_accuracy', 'judge/class_accuracy', 'judge/class_iou',
    'judge_real/pixel_accuracy', 'judge_real/class_accuracy', 'judge_real/class_iou',
    'l1', 'psnr', 'ssim', 'sharpness_ratio', 'input_dependence')


def translation_metrics(generated, targets, semantic, judge_variables, *,
                        num_classes: int, prefix: str = '',
                        **judge_hparams: Any) -> dict[str, float]:
  """All translation metrics of one direction, under stable key names.

  Args:
    generated: [N, H, W, C] uint8 or float in [0, 1], the model's outputs.
    targets: [N, H, W, C] uint8 or float in [0, 1], the real images of the same inputs.
    semantic: [N, H, W] int in [0, num_classes), the semantic maps of the same inputs.
    judge_variables: a segmentation judge trained on real images of the targets' domain
      (`segmentation_judge.load_or_train_segmentation_judge`).
    num_classes: the judge's number of classes.
    prefix: prepended to every key ('a2b/', 'b2a/' for CycleGAN's two directions).
    **judge_hparams: the judge's other hyperparameters (widths matters; training ones are
      ignored), as given to its training.
  Returns:
    {prefix + key: python float} for exactly the keys of TRANSLATION_KEYS:
    judge/{pixel_accuracy, class_accuracy, class_iou} of the judge on `generated` and
    judge_real/... on `targets`, both against `semantic`; l1, psnr, ssim of generated vs
    targets; sharpness_ratio(generated, targets); input_dependence(generated, targets).
  """
  fake, real = _pair(generated, targets)
  s = np.asarray(semantic)
  if s.shape != fake.shape[:3]:
    raise ValueError(f'semantic maps must be {list(fake.shape[:3])}, got {s.shape}')
  out = {}
  for name, images in (('judge', fake), ('judge_real', real)):
    predicted = segmentation_judge.predict_segmentation(
        judge_variables, images, num_classes=num_classes, **judge_hparams)
    scores = segmentation_judge.segmentation_scores(predicted, s, num_classes)
    out.update({f'{name}/{key}': value for key, value in scores.items()})
  out.update({
      'l1': l1(fake, real),
      'psnr': psnr(fake, real),
      'ssim': ssim(fake, real),
      'sharpness_ratio': sharpness_ratio(fake, real),
      'input_dependence': input_dependence(fake, real),
  })
  assert set(out) == set(TRANSLATION_KEYS), sorted(out)
  return {prefix + key: out[key] for key in TRANSLATION_KEYS}
