"""One user image file: reading it, and letterboxing it as evaluation does (numpy only,
no TensorFlow: prediction from a file needs none). The families turn it into their own
batch of one."""
from typing import Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError


class ImageReadError(ValueError):
  """A file that is missing or is not an image."""


def read_image(path: str) -> np.ndarray:
  """Reads an image file as [H, W, 3] uint8 RGB."""
  try:
    with Image.open(path) as image:
      return np.asarray(image.convert('RGB'))
  except FileNotFoundError as e:
    raise ImageReadError(f'image file {path!r} does not exist') from e
  except (UnidentifiedImageError, OSError) as e:
    raise ImageReadError(
        f'{path!r} is not an image file that can be read (PNG, JPEG, BMP, ...): {e}') from e


def _resize_bilinear(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
  """[h, w, C] -> [size, C] float32: TF's bilinear resize with half-pixel centres and no
  antialiasing (`tf.image.resize(..., 'bilinear')`), in its float32 arithmetic."""
  out = image.astype(np.float32)
  for axis in (1, 0):  # Along x first, as TF's kernel: top, bottom, then between them.
    n_in, n_out = image.shape[axis], size[axis]
    scale = np.float32(n_in) / np.float32(n_out)
    where = (np.arange(n_out, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5)
    floor = np.floor(where)
    lower = np.maximum(floor, 0).astype(np.int64)
    upper = np.minimum(np.ceil(where), n_in - 1).astype(np.int64)
    lerp = (where - floor).reshape([-1] + [1] * (out.ndim - axis - 1))
    low, high = np.take(out, lower, axis=axis), np.take(out, upper, axis=axis)
    out = low + (high - low) * lerp
  return out


def letterbox(image: np.ndarray, image_size: Sequence[int]) -> dict:
  """One user image -> a batch of one, resized and padded exactly as evaluation does
  (`detection_transforms.preprocess` without training: aspect kept, zero padding at the
  bottom/right).

  Args:
    image: [h, w, 3] uint8 RGB.
    image_size: (H, W) model input size.
  Returns:
    numpy {'image': [1, H, W, 3] uint8, 'scale': [1] float32 (input pixels per original
    pixel), 'orig_size': [1, 2] int32 (h, w), 'image_id': [1] int64,
    'example_valid': [1] bool}.
  """
  image = np.asarray(image)
  if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
    raise ValueError(f'expected an [H, W, 3] uint8 RGB image, got {image.dtype} '
                     f'{image.shape}')
  out_h, out_w = (int(s) for s in image_size)
  h, w = image.shape[:2]
  scale = np.minimum(np.float32(out_h) / np.float32(h), np.float32(out_w) / np.float32(w))
  new_h = max(1, int(np.round(np.float32(h) * scale)))
  new_w = max(1, int(np.round(np.float32(w) * scale)))
  resized = _resize_bilinear(image, (new_h, new_w))[:out_h, :out_w]
  padded = np.zeros((out_h, out_w, 3), np.uint8)
  padded[:resized.shape[0], :resized.shape[1]] = np.clip(np.round(resized), 0, 255)
  return {'image': padded[None], 'scale': np.asarray([scale], np.float32),
          'orig_size': np.asarray([[h, w]], np.int32), 'image_id': np.zeros([1], np.int64),
          'example_valid': np.ones([1], bool)}
