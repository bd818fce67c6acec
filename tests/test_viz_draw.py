"""Drawing masks, boxes and keypoints: what changes, where, and what does not."""
import numpy as np
import pytest

from vision_jax.viz import draw


def _image(h=32, w=40, value=0.2):
  return np.full([h, w, 3], value, np.float32)


def test_class_colours_do_not_depend_on_the_number_of_classes():
  assert draw.palette(3) == draw.palette(10)[:3]
  assert len(set(draw.palette(12))) == 12


def test_masks_tint_inside_only_with_the_class_colour():
  image = _image()
  masks = np.zeros([2, 32, 40], np.float32)
  masks[0, 4:10, 5:15] = 1.0
  masks[1, 20:30, 20:30] = 1.0  # invalid: not drawn
  out = draw.draw_masks(image, masks, np.array([3, 1]), np.array([True, False]), alpha=0.5)
  assert out.shape == image.shape and out.dtype == np.float32
  colour = np.asarray(draw.class_colour(3), np.float32) / 255.0
  np.testing.assert_allclose(out[6, 7], 0.5 * 0.2 + 0.5 * colour, atol=1e-6)
  outside = np.ones([32, 40], bool)
  outside[4:10, 5:15] = False
  np.testing.assert_array_equal(out[outside], image[outside])


def test_masks_accept_bool_uint8_and_upscale():
  image = (_image(8, 8) * 255).astype(np.uint8)
  masks = np.zeros([1, 8, 8], bool)
  masks[0, 2, 3] = True
  out = draw.draw_masks(image, masks, np.array([0]), None, alpha=1.0, upscale=2)
  assert out.shape == (16, 16, 3)
  np.testing.assert_allclose(out[4:6, 6:8], np.broadcast_to(
      np.asarray(draw.class_colour(0)) / 255.0, (2, 2, 3)), atol=1e-6)
  assert np.allclose(out[0, 0], 51 / 255.0)
  with pytest.raises(ValueError, match='do not match'):
    draw.draw_masks(image, np.zeros([1, 4, 4]), np.array([0]))


def test_keypoint_dots_land_on_their_coordinates():
  image = _image()
  keypoints = np.array([[[10.5, 20.5, 2.0], [30.0, 5.0, 2.0], [3.0, 3.0, 0.0]]], np.float32)
  out = draw.draw_keypoints(image, keypoints, np.array([True]))
  assert out.shape == (32, 40, 3) and out.dtype == np.uint8
  assert tuple(out[20, 10]) == draw.class_colour(0)
  assert tuple(out[5, 30]) == draw.class_colour(1)
  background = tuple(draw.to_uint8(image)[0, 0])
  assert tuple(out[3, 3]) == background  # score 0 <= threshold: not drawn
  assert tuple(out[31, 0]) == background
  # With upscale the dot moves with the picture.
  big = draw.draw_keypoints(image, keypoints, None, upscale=3)
  assert big.shape == (96, 120, 3)
  assert tuple(big[61, 31]) == draw.class_colour(0)


def test_skeleton_lines_join_drawn_keypoints_and_invalid_draw_nothing():
  image = _image()
  keypoints = np.array([[[5.5, 10.5, 1.0], [35.5, 10.5, 1.0]]], np.float32)
  out = draw.draw_keypoints(image, keypoints, [True], skeleton=((0, 1),))
  assert tuple(out[10, 20]) == draw.class_colour(0)  # on the line, away from both dots
  no_line = draw.draw_keypoints(image, keypoints, [True])
  assert tuple(no_line[10, 20]) == tuple(draw.to_uint8(image)[10, 20])
  nothing = draw.draw_keypoints(image, keypoints, [False], skeleton=((0, 1),))
  np.testing.assert_array_equal(nothing, draw.to_uint8(image))
  high = draw.draw_keypoints(image, keypoints, [True], skeleton=((0, 1),), score_threshold=1.0)
  np.testing.assert_array_equal(high, draw.to_uint8(image))


def test_masks_boxes_keypoints_compose():
  image = _image()
  masks = np.zeros([1, 32, 40], np.uint8)
  masks[0, 8:16, 8:16] = 1
  classes = np.array([2])
  valid = np.array([True])
  tinted = draw.draw_masks(image, masks, classes, valid)
  picture = draw.draw_boxes(tinted, np.array([[8.0, 8.0, 16.0, 16.0]]), classes,
                            np.array([0.9]), valid=valid, upscale=3)
  picture = draw.draw_keypoints(picture, np.array([[[12.5, 12.5, 1.0]]]) * [3, 3, 1], valid)
  assert picture.shape == (96, 120, 3) and picture.dtype == np.uint8
  assert tuple(picture[37, 37]) == draw.class_colour(0)  # keypoint on top
  assert tuple(picture[33, 30]) == tuple(draw.to_uint8(tinted)[11, 10])  # tinted mask kept
  assert tuple(picture[24, 40]) == draw.class_colour(2)  # box outline: same colour as mask
  assert tuple(picture[90, 5]) == tuple(draw.to_uint8(image)[30, 1])  # background
  nothing = draw.draw_boxes(draw.draw_masks(image, masks, classes, [False]),
                            np.array([[8.0, 8.0, 16.0, 16.0]]), classes, valid=[False])
  np.testing.assert_array_equal(nothing, draw.to_uint8(image))


def test_the_best_scoring_label_is_on_top_where_boxes_coincide():
  box = np.array([[8.0, 20.0, 30.0, 30.0]] * 2)
  for scores in ([0.9, 0.4], [0.4, 0.9]):
    picture = draw.draw_boxes(_image(), box, np.array([0, 1]), np.array(scores))
    best = int(np.argmax(scores))
    assert tuple(picture[9, 8]) == draw.class_colour(best)  # the label's background
    assert tuple(picture[25, 8]) == draw.class_colour(best)  # the box's edge
