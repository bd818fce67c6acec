"""CornerNet and keypoint-triplet CenterNet: network shapes, targets, loss, corner-pair
decoding on constructed heatmaps, and the triplet check on a constructed case."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vision_jax.losses import cornernet as cornernet_losses
from vision_jax.models import cornernet
from vision_jax.ops import heatmaps

KEY = jax.random.key(0, impl='rbg')
TINY = dict(num_classes=3, num_stacks=2, depth=2, widths=(8, 8, 16), num_residuals=1,
            stem_width=8, cnv_dim=8, pool_dim=4, head_dim=8)


@pytest.mark.parametrize('centers', [False, True])
def test_network_outputs_every_stack_at_stride_4(centers):
  model = cornernet.CornerNet(cornernet.CornerNetConfig(centers=centers, **TINY))
  x = jax.ShapeDtypeStruct((2, 64, 96, 3), jnp.uint8)
  variables = jax.eval_shape(model.init, KEY, x)
  stacks = jax.eval_shape(lambda v, x: model.apply(v, x), variables, x)
  assert len(stacks) == 2
  kinds = ('tl', 'br', 'ct') if centers else ('tl', 'br')
  want = {f'{k}_heat': (2, 16, 24, 3) for k in kinds}
  want.update({f'{k}_offset': (2, 16, 24, 2) for k in kinds})
  want.update({'tl_embed': (2, 16, 24, 1), 'br_embed': (2, 16, 24, 1)})
  for out in stacks:
    assert {k: v.shape for k, v in out.items()} == want
    assert all(v.dtype == jnp.float32 for v in out.values())
  params = variables['params']
  assert ('look_conv1' in params['tl_pool0']) == centers  # cascade corner pooling
  assert ('ct_pool1' in params) == centers
  assert 'inter_res0' in params and 'inter_res1' not in params  # glue between stacks


def test_network_refuses_sizes_its_hourglass_cannot_halve():
  model = cornernet.CornerNet(cornernet.CornerNetConfig(**TINY))
  with pytest.raises(ValueError, match='multiples of 16'):
    jax.eval_shape(model.init, KEY, jax.ShapeDtypeStruct((1, 40, 64, 3), jnp.uint8))


def test_config_rejects_unknown_choices():
  with pytest.raises(ValueError, match='radius_rule'):
    cornernet.CornerNetConfig(radius_rule='gauss')
  with pytest.raises(ValueError, match='widths needs depth \\+ 1'):
    cornernet.CornerNetConfig(depth=3, widths=(8, 8))
  with pytest.raises(ValueError, match="unknown CornerNet model keys \\['stacks'\\]"):
    cornernet.from_config_dict({'stacks': 2}, num_classes=3)


def test_targets_put_corners_and_centers_in_their_cells_with_offsets():
  boxes = np.array([[[9, 5, 41, 30], [0, 0, 0, 0], [70, 70, 90, 90]]], np.float32)
  classes = np.array([[2, 0, 1]], np.int32)
  valid = np.array([[True, False, True]])  # the last box lies outside the 64 x 64 image
  t = cornernet_losses.cornernet_targets(boxes, classes, valid, output_size=(16, 16),
                                         stride=4, num_classes=3, centers=True)
  np.testing.assert_array_equal(t['mask'], [[True, False, False]])
  # tl (2.25, 1.25), br (10.25, 7.5), center (6.25, 4.375) in output units.
  for kind, (x, y), offset in (('tl', (2, 1), (0.25, 0.25)), ('br', (10, 7), (0.25, 0.5)),
                               ('ct', (6, 4), (0.25, 0.375))):
    heat = np.asarray(t[f'{kind}_heat'])
    assert heat[0, y, x, 2] == 1.0 and heat[..., :2].max() == 0.0
    assert np.count_nonzero(heat == 1.0) == 1
    assert int(t[f'{kind}_index'][0, 0]) == y * 16 + x
    np.testing.assert_allclose(t[f'{kind}_offset'][0, 0], offset, atol=1e-6)
    assert int(t[f'{kind}_index'][0, 1]) == 0 and not np.any(t[f'{kind}_offset'][0, 1:])
  # One radius for all three keypoints, from the box in output cells (h 7, w 8, ceil'ed).
  r = int(np.floor(heatmaps.cornernet_gaussian_radius(7.0, 8.0, 0.3)))
  assert r >= 1
  sigma = (2 * r + 1) / 6
  np.testing.assert_allclose(t['tl_heat'][0, 1, 3, 2], np.exp(-1 / (2 * sigma**2)), rtol=1e-6)
  assert t['tl_heat'][0, 1, 2 + r + 1, 2] == 0.0  # truncated past the radius


def _stack(rng, shape=(2, 32, 32)):
  b, h, w = shape
  return {'tl_heat': rng.normal(size=(b, h, w, 3)).astype(np.float32),
          'br_heat': rng.normal(size=(b, h, w, 3)).astype(np.float32),
          'tl_embed': rng.normal(size=(b, h, w, 1)).astype(np.float32),
          'br_embed': rng.normal(size=(b, h, w, 1)).astype(np.float32),
          'tl_offset': rng.uniform(size=(b, h, w, 2)).astype(np.float32),
          'br_offset': rng.uniform(size=(b, h, w, 2)).astype(np.float32)}


def test_loss_averages_the_stacks_and_needs_center_targets_for_the_center_head():
  rng = np.random.default_rng(0)
  boxes = np.array([[[8, 8, 60, 40], [70, 20, 120, 100]], [[0, 0, 30, 30], [0, 0, 0, 0]]],
                   np.float32)
  classes = np.array([[0, 2], [1, 0]], np.int32)
  valid = np.array([[True, True], [True, False]])
  t = cornernet_losses.cornernet_targets(boxes, classes, valid, output_size=(32, 32),
                                         stride=4, num_classes=3)
  a, b = _stack(rng), _stack(rng)
  loss_a, terms_a = cornernet_losses.cornernet_loss([a], t)
  loss_b, _ = cornernet_losses.cornernet_loss([b], t)
  loss_ab, terms_ab = cornernet_losses.cornernet_loss([a, b], t)
  assert float(loss_ab) == pytest.approx((float(loss_a) + float(loss_b)) / 2, rel=1e-5)
  want = (terms_a['heatmap_loss'] + 0.1 * terms_a['pull_loss'] + 0.1 * terms_a['push_loss']
          + terms_a['offset_loss'])
  assert float(loss_a) == pytest.approx(float(want), rel=1e-6)
  # The offset term: smooth-L1 at the corner cells / (objects + 1e-4).
  want = sum(np.where(np.abs(d) < 1, 0.5 * d * d, np.abs(d) - 0.5).sum()
             for kind in ('tl', 'br')
             for d in [np.asarray(heatmaps.gather_features(a[f'{kind}_offset'],
                                                           t[f'{kind}_index']))
                       [np.asarray(t['mask'])] - np.asarray(t[f'{kind}_offset'])
                       [np.asarray(t['mask'])]])
  assert float(terms_a['offset_loss']) == pytest.approx(want / (3 + 1e-4), rel=1e-5)
  with_center = dict(a, ct_heat=a['tl_heat'], ct_offset=a['tl_offset'])
  with pytest.raises(ValueError, match='centers=True'):
    cornernet_losses.cornernet_loss([with_center], t)


def _constructed_outputs():
  """8 x 8 maps (stride 4, a 32 x 32 canvas), 2 classes. Every pixel is background
  (logit -10, embedding 10, far from all real corners) except:
    object A, class 0: tl in cell (x 1, y 1) with offset (0.5, 0.25), br in cell (5, 6),
      embeddings 0.1 / 0.3 -> box (6, 5, 20, 24);
    object B, class 1: tl in cell (2, 0), br in cell (7, 3) with offset (0.5, 0.5),
      embeddings 3.0 / 3.2 -> box (8, 0, 30, 14);
    a class-0 br in cell (7, 7), embedding 2.0 (too far from A's tl: rejected);
    a class-1 tl in cell (7, 7), embedding 3.1 (above B's br: rejected).
  """
  out = {'tl_heat': np.full((1, 8, 8, 2), -10.0, np.float32),
         'br_heat': np.full((1, 8, 8, 2), -10.0, np.float32),
         'tl_embed': np.full((1, 8, 8, 1), 10.0, np.float32),
         'br_embed': np.full((1, 8, 8, 1), 10.0, np.float32),
         'tl_offset': np.zeros((1, 8, 8, 2), np.float32),
         'br_offset': np.zeros((1, 8, 8, 2), np.float32)}

  def put(kind, x, y, cls, logit, embed, offset=(0.0, 0.0)):
    out[f'{kind}_heat'][0, y, x, cls] = logit
    out[f'{kind}_embed'][0, y, x, 0] = embed
    out[f'{kind}_offset'][0, y, x] = offset

  put('tl', 1, 1, 0, 2.0, 0.1, (0.5, 0.25))
  put('br', 5, 6, 0, 1.0, 0.3)
  put('tl', 2, 0, 1, 3.0, 3.0)
  put('br', 7, 3, 1, 3.0, 3.2, (0.5, 0.5))
  put('br', 7, 7, 0, 4.0, 2.0)
  put('tl', 7, 7, 1, 4.0, 3.1)
  return out


def test_decode_pairs_corners_by_class_embedding_and_geometry():
  cfg = cornernet.CornerNetConfig(num_classes=2, top_k=10, num_pairs=50, max_detections=5)
  dets = jax.tree.map(np.asarray, cornernet.decode(cfg, _constructed_outputs()))
  s = lambda v: 1 / (1 + np.exp(-v))
  assert dets['valid'].tolist() == [[True, True, False, False, False]]
  np.testing.assert_allclose(dets['boxes'][0, :2], [[8, 0, 30, 14], [6, 5, 20, 24]],
                             atol=1e-5)
  np.testing.assert_allclose(dets['scores'][0, :2], [s(3.0), (s(2.0) + s(1.0)) / 2],
                             rtol=1e-6)
  assert dets['classes'][0, :2].tolist() == [1, 0]
  assert not np.any(dets['scores'][0, 2:])


def test_pairs_below_the_embedding_threshold_are_kept():
  out = _constructed_outputs()
  # The stray class-0 br now agrees with A's tl: a second, larger class-0 box appears.
  out['br_embed'][0, 7, 7, 0] = 0.5
  cfg = cornernet.CornerNetConfig(num_classes=2, top_k=10, num_pairs=50, max_detections=5)
  dets = jax.tree.map(np.asarray, cornernet.decode(cfg, out))
  boxes = dets['boxes'][0][dets['valid'][0]]
  assert any(np.allclose(b, [6, 5, 28, 28], atol=1e-5) for b in boxes)


def test_central_region_is_the_middle_third_of_small_boxes_and_fifth_of_large():
  region = cornernet.central_region(np.array([[0, 0, 30, 60], [0, 0, 200, 200]], np.float32))
  np.testing.assert_allclose(region, [[10, 20, 20, 40], [80, 80, 120, 120]], rtol=1e-6)


def test_triplet_check_keeps_boxes_with_a_same_class_center_in_their_central_region():
  boxes = np.array([[[0, 0, 30, 30],     # class 0: only the center at (15, 15) is inside
                     [0, 0, 30, 30],     # class 1: its only center is far away: dropped
                     [0, 0, 200, 200],   # large: middle fifth (80, 120) holds no center
                     [0, 0, 140, 140],   # 19600 px^2: middle third (46.7, 93.3) holds (70, 70)
                     [0, 0, 30, 30],     # an invalid pair stays invalid
                     [10, 0, 40, 30],    # (20, 30) x (10, 20): (22, 15) inside, the best
                     [0, 0, 45, 30]]],   # (15, 30) x (10, 20): (15, 15) on the edge: not in
                   np.float32)
  pairs = {'boxes': boxes, 'scores': np.full((1, 7), 0.8, np.float32),
           'classes': np.array([[0, 1, 0, 0, 0, 0, 0]], np.int32),
           'valid': np.array([[True, True, True, True, False, True, True]])}
  centers = {'x': np.array([[22, 70, 15, 100]], np.float32),
             'y': np.array([[15, 70, 15, 100]], np.float32),
             'scores': np.array([[0.9, 0.7, 0.6, 0.5]], np.float32),
             'classes': np.array([[0, 0, 0, 1]], np.int32)}
  got = jax.tree.map(np.asarray, cornernet.triplet_check(pairs, centers))
  assert got['valid'].tolist() == [[True, False, False, True, False, True, True]]
  rescored = lambda c: (2 * 0.8 + c) / 3
  np.testing.assert_allclose(got['scores'][0],
                             [rescored(0.6), -1, -1, rescored(0.7), -1, rescored(0.9),
                              rescored(0.9)], rtol=1e-6)


def test_triplet_decode_drops_pairs_without_a_center():
  out = _constructed_outputs()
  # Center logits fall away from cell (7, 7) (a single background peak per class, at
  # (28, 28), inside no central region), with one real class-0 center at (12, 12),
  # inside A's middle third (10.7, 15.3) x (11.3, 17.7); B's holds none.
  y, x = np.mgrid[:8, :8]
  background = -10.0 - 0.1 * ((7 - x) + (7 - y))
  out['ct_heat'] = np.repeat(background[None, :, :, None], 2, axis=-1).astype(np.float32)
  out['ct_offset'] = np.zeros((1, 8, 8, 2), np.float32)
  out['ct_heat'][0, 3, 3, 0] = 2.0
  cfg = cornernet.CornerNetConfig(num_classes=2, centers=True, top_k=10, num_pairs=50,
                                  max_detections=5)
  dets = jax.tree.map(np.asarray, cornernet.decode(cfg, out))
  s = lambda v: 1 / (1 + np.exp(-v))
  assert dets['valid'].tolist() == [[True, False, False, False, False]]
  np.testing.assert_allclose(dets['boxes'][0, 0], [6, 5, 20, 24], atol=1e-5)
  assert dets['classes'][0, 0] == 0
  assert dets['scores'][0, 0] == pytest.approx((s(2.0) + s(1.0) + s(2.0)) / 3, rel=1e-6)
