"""Draw detections on images: instance masks, boxes with class names and scores, keypoints.

The three compose on one picture, in this order (as the Mask R-CNN task does):

  image = draw_masks(image, masks, classes, valid)              # [H, W, 3] float
  picture = draw_boxes(image, boxes, classes, scores, valid=valid, upscale=3)  # uint8
  picture = draw_keypoints(picture, keypoints * [3, 3, 1], valid, skeleton=skeleton)

Coordinates are continuous image pixels: pixel (row i, column j) covers [j, j+1) x [i, i+1),
so a point (x, y) lies in pixel (floor(y), floor(x)); `upscale` multiplies them. A class
has one colour everywhere (`class_colour`), whatever the number of classes, so masks and
boxes of one class match even when drawn by calls that know different class lists.
"""
import colorsys

import numpy as np
from PIL import Image, ImageDraw

_GOLDEN = 0.618033988749895


def class_colour(index: int) -> tuple[int, int, int]:
  """A stable RGB colour for a class (or keypoint) id: hues step by the golden ratio."""
  r, g, b = colorsys.hsv_to_rgb((int(index) * _GOLDEN) % 1.0, 0.9, 1.0)
  return int(255 * r), int(255 * g), int(255 * b)


def palette(n: int) -> list[tuple[int, int, int]]:
  """n well-separated RGB colours: class_colour(0..n-1)."""
  return [class_colour(i) for i in range(n)]


def to_uint8(image: np.ndarray) -> np.ndarray:
  """[H, W, 3] float in [0, 1] (or uint8) -> uint8."""
  image = np.asarray(image)
  if image.dtype == np.uint8:
    return image
  return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def to_float(image: np.ndarray) -> np.ndarray:
  """[H, W, 3] uint8 (or float in [0, 1]) -> float32 in [0, 1]."""
  image = np.asarray(image)
  if image.dtype == np.uint8:
    return image.astype(np.float32) / 255.0
  return np.clip(image.astype(np.float32), 0.0, 1.0)


def _upscaled(image: np.ndarray, upscale: int) -> Image.Image:
  picture = Image.fromarray(to_uint8(image))
  if upscale > 1:
    picture = picture.resize((picture.width * upscale, picture.height * upscale),
                             Image.NEAREST)
  return picture


def _shown(valid, n: int) -> np.ndarray:
  return np.ones([n], bool) if valid is None else np.asarray(valid, bool).reshape([n])


def draw_masks(image: np.ndarray, masks: np.ndarray, classes: np.ndarray,
               valid: np.ndarray | None = None, alpha: float = 0.5, *,
               upscale: int = 1) -> np.ndarray:
  """Tints each instance's mask with its class colour.

  Args:
    image: [H, W, 3] float in [0, 1] or uint8.
    masks: [D, H, W] float or bool (or uint8 0/1); values > 0.5 are foreground.
    classes: [D] int, 0-based (the colour, as in draw_boxes).
    valid: [D] bool; False entries are skipped. None: all drawn.
    alpha: opacity of the tint: a foreground pixel becomes (1-alpha)*pixel + alpha*colour.
      Overlapping masks are blended in order, later ones on top.
    upscale: integer factor applied to image and masks first (nearest neighbour).
  Returns:
    [H*upscale, W*upscale, 3] float32 in [0, 1]; background pixels are unchanged.
  """
  out = to_float(image).copy()
  masks = np.asarray(masks)
  if masks.shape[1:] != out.shape[:2]:
    raise ValueError(f'masks {masks.shape} do not match image {out.shape}: want [D, H, W]')
  if upscale > 1:
    out = out.repeat(upscale, axis=0).repeat(upscale, axis=1)
  shown = _shown(valid, len(masks))
  for i in np.flatnonzero(shown):
    foreground = masks[i] > 0.5
    if upscale > 1:
      foreground = foreground.repeat(upscale, axis=0).repeat(upscale, axis=1)
    colour = np.asarray(class_colour(int(classes[i])), np.float32) / 255.0
    out[foreground] = (1.0 - alpha) * out[foreground] + alpha * colour
  return out


def draw_panoptic(image: np.ndarray, panoptic: np.ndarray, segment_classes: np.ndarray,
                  segment_valid: np.ndarray, *, num_stuff: int, num_things: int,
                  alpha: float = 0.6, stuff_alpha: float = 0.35) -> np.ndarray:
  """Tints every panoptic segment: a colour per instance segment (its slot), stuff
  segments in their class colour, muted (greyed and more transparent); void is left.

  Args:
    image: [H, W, 3] float in [0, 1] or uint8.
    panoptic: [H, W] int segment index (stuff first: 0..num_stuff-1, then instance
      slots), -1 void.
    segment_classes: [N] semantic class of each segment (things 0..num_things-1).
    segment_valid: [N] bool.
    num_stuff, num_things: S and K.
    alpha, stuff_alpha: tint opacities of instances and of stuff.

  Returns:
    [H, W, 3] float32 in [0, 1].
  """
  out = to_float(image).copy()
  panoptic = np.asarray(panoptic)
  if panoptic.shape != out.shape[:2]:
    raise ValueError(f'panoptic map {panoptic.shape} does not match image {out.shape}')
  for index in np.flatnonzero(np.asarray(segment_valid)):
    region = panoptic == index
    if index < num_stuff:
      colour = np.asarray(class_colour(int(segment_classes[index])), np.float32) / 255.0
      colour = 0.5 * colour + 0.5 * colour.mean()  # muted
      a = stuff_alpha
    else:
      colour = np.asarray(class_colour(num_things + num_stuff + int(index)),
                          np.float32) / 255.0
      a = alpha
    out[region] = (1.0 - a) * out[region] + a * colour
  return out


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
    [H*upscale, W*upscale, 3] uint8. With scores, the lowest is drawn first, so where
    boxes coincide (CenterNet's per-class peaks at one place) the best label is on top.
  """
  picture = _upscaled(image, upscale)
  draw = ImageDraw.Draw(picture)
  shown = np.flatnonzero(_shown(valid, len(boxes)))
  if scores is not None:
    shown = shown[np.argsort(np.asarray(scores, np.float32)[shown], kind='stable')]
  for i in shown:
    cls = int(classes[i])
    colour = class_colour(cls)
    x1, y1, x2, y2 = (float(v) * upscale for v in boxes[i])
    draw.rectangle([x1, y1, x2, y2], outline=colour, width=max(1, upscale))
    label = class_names[cls] if class_names is not None else str(cls)
    if scores is not None:
      label = f'{label} {float(scores[i]):.2f}'
    text_y = max(0.0, y1 - 11)
    draw.rectangle([x1, text_y, x1 + 6 * len(label) + 2, text_y + 11], fill=colour)
    draw.text((x1 + 1, text_y), label, fill=(0, 0, 0))
  return np.asarray(picture)


def draw_keypoints(image: np.ndarray, keypoints: np.ndarray, valid: np.ndarray | None = None,
                   skeleton=(), score_threshold: float = 0.0, *, radius: int = 2,
                   upscale: int = 1) -> np.ndarray:
  """Draws each instance's keypoints as dots joined by skeleton lines.

  Args:
    image: [H, W, 3] float in [0, 1] or uint8 (e.g. draw_boxes' picture).
    keypoints: [D, K, 3] (x, y, score) in image pixels. A keypoint is drawn when its
      score > score_threshold: with COCO visibility (0 unlabelled, 1 occluded, 2 visible)
      the default 0 draws the labelled ones; with predicted heatmap logits (our keypoint
      head's third value) Detectron's pictures use 2.
    valid: [D] bool; False instances draw nothing. None: all drawn.
    skeleton: pairs (a, b) of 0-based keypoint indices; a line joins a and b when both
      are drawn, in keypoint a's colour.
    score_threshold: see keypoints.
    radius: dot radius in output pixels (times upscale).
    upscale: integer factor applied to the picture (and the coordinates) first.
  Returns:
    [H*upscale, W*upscale, 3] uint8. Keypoint k is a dot of class_colour(k) with a black
    outline, centred on pixel (floor(y*upscale), floor(x*upscale)).
  """
  picture = _upscaled(image, upscale)
  draw = ImageDraw.Draw(picture)
  keypoints = np.asarray(keypoints, np.float32).reshape([-1, *np.shape(keypoints)[-2:]])
  num_keypoints = keypoints.shape[1]
  r = max(1, radius * upscale)
  for i in np.flatnonzero(_shown(valid, len(keypoints))):
    # PIL puts integer coordinates on pixel centres: continuous x lies at PIL x - 0.5.
    xy = keypoints[i, :, :2] * upscale - 0.5
    drawn = (keypoints[i, :, 2] > score_threshold) & np.all(np.isfinite(xy), axis=-1)
    for a, b in skeleton:
      if 0 <= a < num_keypoints and 0 <= b < num_keypoints and drawn[a] and drawn[b]:
        draw.line([tuple(xy[a]), tuple(xy[b])], fill=class_colour(a), width=max(1, upscale))
    for k in np.flatnonzero(drawn):
      x, y = np.floor(xy[k] + 0.5)  # the pixel holding the point
      draw.ellipse([x - r, y - r, x + r, y + r], fill=class_colour(k), outline=(0, 0, 0))
  return np.asarray(picture)
