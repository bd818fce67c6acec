"""Image grids and PNG files."""
import os

import numpy as np
from PIL import Image


def image_grid(images: np.ndarray, columns: int | None = None, pad: int = 2) -> np.ndarray:
  """[N, H, W, 3] uint8 -> one [rows*(H+pad)-pad, cols*(W+pad)-pad, 3] uint8 picture."""
  images = np.asarray(images)
  n, h, w, c = images.shape
  columns = columns or int(np.ceil(np.sqrt(n)))
  rows = int(np.ceil(n / columns))
  out = np.full((rows * (h + pad) - pad, columns * (w + pad) - pad, c), 255, np.uint8)
  for i, image in enumerate(images):
    r, col = divmod(i, columns)
    out[r * (h + pad):r * (h + pad) + h, col * (w + pad):col * (w + pad) + w] = image
  return out


def save_png(path: str, image: np.ndarray) -> None:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  Image.fromarray(np.asarray(image, np.uint8)).save(path)
