"""One user image -> a batch of one following the detection batch contract."""
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


def image_batch(image: np.ndarray, image_size: tuple[int, int]) -> dict:
  """Resizes (aspect kept) and pads bottom/right to image_size, as the eval pipeline does.

  Args:
    image: [h, w, 3] uint8 RGB.
    image_size: (H, W) model input size.
  Returns:
    {'image': [1, H, W, 3] float32 in [0, 1], 'scale': [1], 'orig_size': [1, 2] int32,
     'image_id': [1] int64, 'example_valid': [1] bool}.
  """
  if image.ndim != 3 or image.shape[-1] != 3:
    raise ImageReadError(f'expected an [H, W, 3] RGB image, got shape {image.shape}')
  h, w = image.shape[:2]
  out_h, out_w = image_size
  scale = min(out_h / h, out_w / w)
  new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
  resized = np.asarray(Image.fromarray(image).resize((new_w, new_h), Image.BILINEAR))
  padded = np.zeros((out_h, out_w, 3), np.float32)
  padded[:new_h, :new_w] = resized.astype(np.float32) / 255.0
  return {'image': padded[None], 'scale': np.array([scale], np.float32),
          'orig_size': np.array([[h, w]], np.int32), 'image_id': np.zeros((1,), np.int64),
          'example_valid': np.ones((1,), bool)}
