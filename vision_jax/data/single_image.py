"""Reading one user image file (the families turn it into their own batch of one)."""
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
