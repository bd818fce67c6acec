"""Draw detections on images: boxes with class names and scores."""
import colorsys

import numpy as np
from PIL import Image, ImageDraw


def palette(n: int) -> list[tuple[int, int, int]]:
  """n well-separated RGB colours."""
  return [tuple(int(255 * c) for c in colorsys.hsv_to_rgb(i / max(n, 1), 0.9, 1.0))
          for i in range(n)]


def to_uint8(image: np.ndarray) -> np.ndarray:
  """[H, W, 3] float in [0, 1] (or uint8) -> uint8."""
  image = np.asarray(image)
  if image.dtype == np.uint8:
    return image
  return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def draw_boxes(image: np.ndarray, boxes: np.ndarray, classes: np.ndarray,
               scores: np.ndarray | None = None, *, class_names=None,
               valid: np.ndarray | None = None, upscale: int = 1) -> np.ndarray:
  """Draws labelled boxes.

  Args:
    image: [H, W, 3] float in [0, 1] or uint8.
    boxes: [D, 4] (x1, y1, x2, y2) in image pixels.
    classes: [D] int, 0-based.
    scores: [D] or None.
    class_names: names indexed by class id.
    valid: [D] bool; False entries are skipped.
    upscale: integer factor applied to the picture first so that labels stay readable.
  Returns:
    [H*upscale, W*upscale, 3] uint8.
  """
  picture = Image.fromarray(to_uint8(image))
  if upscale > 1:
    picture = picture.resize((picture.width * upscale, picture.height * upscale),
                             Image.NEAREST)
  draw = ImageDraw.Draw(picture)
  num_classes = len(class_names) if class_names is not None else int(np.max(classes, initial=0)) + 1
  colours = palette(num_classes)
  for i in range(len(boxes)):
    if valid is not None and not valid[i]:
      continue
    cls = int(classes[i])
    colour = colours[cls % len(colours)]
    x1, y1, x2, y2 = (float(v) * upscale for v in boxes[i])
    draw.rectangle([x1, y1, x2, y2], outline=colour, width=max(1, upscale))
    label = class_names[cls] if class_names is not None else str(cls)
    if scores is not None:
      label = f'{label} {float(scores[i]):.2f}'
    text_y = max(0.0, y1 - 11)
    draw.rectangle([x1, text_y, x1 + 6 * len(label) + 2, text_y + 11], fill=colour)
    draw.text((x1 + 1, text_y), label, fill=(0, 0, 0))
  return np.asarray(picture)
