"""RetinaFace: point coding, SSH, the model, targets and losses, detection, the face
evaluator, config errors, and learning end to end (tiny)."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests import launcher
from vision_jax.evaluation import faces
from vision_jax.losses import retinaface as retinaface_losses
from vision_jax.models import retinaface
from vision_jax.nn import ssh
from vision_jax.ops import boxes as box_ops
from vision_jax.tasks import base as tasks_base
from vision_jax.train import config as config_lib

EXPERIMENT = 'retinaface_faces.py'
SMALL = dict(backbone='resnet18', width=8, fpn_channels=16, in_levels=('C2', 'C3', 'C4'),
             anchor_sizes=((10.0, 16.0), (24.0, 40.0), (64.0, 100.0)),
             detections_per_image=10, pre_nms_top_k=100)

# 'rbg' keys: same tests, much faster init compiles on CPU than threefry.
KEY = jax.random.key(0, impl='rbg')


def test_point_coding_round_trip_and_reference_formula():
  anchors = jnp.array([[10.0, 20.0, 30.0, 60.0], [0.0, 0.0, 8.0, 8.0]])
  points = jnp.array([[[25.0, 45.0], [12.0, 21.0]], [[4.0, 4.0], [9.0, -1.0]]])
  codes = box_ops.encode_points(points, anchors)
  # (x - cx) / (0.1 w): anchor 0 has centre (20, 40), size (20, 40).
  np.testing.assert_allclose(codes[0, 0], [(25 - 20) / 2.0, (45 - 40) / 4.0], rtol=1e-6)
  np.testing.assert_allclose(box_ops.decode_points(codes, anchors), points, atol=1e-5)


def test_ssh_concatenates_three_context_branches():
  module = ssh.SSH(features=16)
  x = jnp.ones((2, 8, 8, 5))
  variables = module.init(KEY, x)
  y = module.apply(variables, x)
  assert y.shape == (2, 8, 8, 16) and (y >= 0).all()
  params = variables['params']
  assert params['conv3x3']['kernel'].shape == (3, 3, 5, 8)
  assert params['conv7x7_2']['kernel'].shape == (3, 3, 4, 4)  # fed by conv5x5_1
  with pytest.raises(ValueError, match='multiple of 4'):
    ssh.SSH(features=10).init(jax.random.key(0), x)


@pytest.mark.parametrize('landmarks, mesh', [(5, 68), (0, 0)])
def test_model_outputs_one_row_per_anchor(landmarks, mesh):
  cfg = retinaface.RetinaFaceConfig(num_landmarks=landmarks, num_mesh_points=mesh, **SMALL)
  model = retinaface.RetinaFace(cfg)
  images = jnp.zeros((2, 64, 64, 3), jnp.uint8)
  variables = model.init(KEY, images)
  outputs = model.apply(variables, images)
  n = (16 * 16 + 8 * 8 + 4 * 4) * 2
  assert retinaface.anchors(cfg, (64, 64)).shape == (n, 4)
  assert outputs['class_logits'].shape == (2, n, 2)
  assert outputs['box_deltas'].shape == (2, n, 4)
  assert outputs['landmarks'].shape == (2, n, landmarks, 2)
  assert outputs['mesh'].shape == (2, n, mesh, 2)
  assert 'backbone' in variables['params']  # torchvision ImageNet init fills it


def _scene():
  """One image with two labelled faces and one unlabelled one (L = 2, M = 3)."""
  boxes = np.array([[[8, 8, 40, 48], [70, 60, 100, 100], [30, 70, 50, 94]]], np.float32)
  rng = np.random.default_rng(0)
  points = np.zeros((1, 3, 5, 3), np.float32)
  for g in range(2):
    x1, y1, x2, y2 = boxes[0, g]
    points[0, g, :, 0] = rng.uniform(x1, x2, 5)
    points[0, g, :, 1] = rng.uniform(y1, y2, 5)
    points[0, g, :, 2] = 2
  return {'boxes': boxes, 'classes': np.zeros((1, 3), np.int32),
          'valid': np.ones((1, 3), bool), 'is_crowd': np.zeros((1, 3), bool),
          'keypoints': points}


def _perfect_outputs(cfg, anchors, batch):
  """Network outputs whose every positive anchor codes its face exactly."""
  targets = retinaface_losses.single_shot.match_anchors(
      anchors, batch['boxes'][0], batch['classes'][0], batch['valid'][0],
      batch['is_crowd'][0], positive_iou=cfg.positive_iou, negative_iou=cfg.negative_iou,
      box_weights=cfg.box_weights)
  matched = batch['keypoints'][0][targets.gt_index]  # [N, 5, 3]
  codes = box_ops.encode_points(matched[..., :2], anchors)
  positive = targets.labels > 0
  logits = jnp.where(positive[:, None], jnp.array([-8.0, 8.0]), jnp.array([8.0, -8.0]))
  return {'class_logits': logits[None], 'box_deltas': targets.box_targets[None],
          'landmarks': codes[None, :, :2], 'mesh': codes[None, :, 2:]}, targets


def test_losses_vanish_on_perfect_outputs_and_skip_unlabelled_faces():
  cfg = retinaface.RetinaFaceConfig(num_landmarks=2, num_mesh_points=3, **SMALL)
  anchors = retinaface.anchors(cfg, (128, 128))
  batch = _scene()
  outputs, targets = _perfect_outputs(cfg, anchors, batch)
  losses, stats = retinaface_losses.retinaface_losses(cfg, anchors, outputs, batch)
  assert stats['positives'] >= 3
  for name in ('box', 'points', 'mesh'):
    assert float(losses[name]) < 1e-6, (name, losses)
  assert float(losses['class']) < 1e-3
  # The unlabelled face's anchors are positives without point targets.
  labelled = np.asarray(targets.labels > 0) & (np.asarray(targets.gt_index) < 2)
  assert stats['labelled_positives'] == labelled.sum() < stats['positives']
  # Moving the unlabelled face's predicted points changes nothing; a labelled one's does.
  on_unlabelled = np.asarray((targets.labels > 0) & (targets.gt_index == 2))
  moved = dict(outputs, landmarks=outputs['landmarks'] + 5.0 * on_unlabelled[None, :, None, None])
  assert float(retinaface_losses.retinaface_losses(cfg, anchors, moved, batch)[0]['points']) < 1e-6
  moved = dict(outputs, landmarks=outputs['landmarks'] + 5.0)
  assert float(retinaface_losses.retinaface_losses(cfg, anchors, moved, batch)[0]['points']) > 1


def test_points_beta_sets_the_smooth_l1_transition_of_the_point_codes():
  cfg = retinaface.RetinaFaceConfig(num_landmarks=2, num_mesh_points=3, **SMALL)
  anchors = retinaface.anchors(cfg, (128, 128))
  batch = _scene()
  outputs, _ = _perfect_outputs(cfg, anchors, batch)
  shifted = dict(outputs, landmarks=outputs['landmarks'] + 0.2, mesh=outputs['mesh'] + 0.2)

  def points_loss(beta):
    losses, _ = retinaface_losses.retinaface_losses(cfg, anchors, shifted, batch,
                                                    points_beta=beta)
    return float(losses['points']), float(losses['mesh'])

  # Every labelled point's code is 0.2 off in x and y: per point 2 x 0.5 x 0.2^2 / beta in
  # the quadratic part (beta 1), 2 x 0.2 as plain L1 (beta 0); / N_pts, times 2 points.
  quadratic, l1 = points_loss(1.0), points_loss(0.0)
  np.testing.assert_allclose(quadratic[0], 2 * 2 * 0.5 * 0.04, rtol=1e-4)
  np.testing.assert_allclose(l1[0], 2 * 2 * 0.2, rtol=1e-4)
  np.testing.assert_allclose(l1[1], 3 * 2 * 0.2, rtol=1e-4)
  assert points_loss(0.1)[0] == pytest.approx(l1[0] - 2 * 2 * 0.05, rel=1e-4)


@pytest.mark.parametrize('point_vote_iou', [0.0, 0.5])
def test_detect_decodes_boxes_and_points_of_perfect_outputs(point_vote_iou):
  cfg = retinaface.RetinaFaceConfig(num_landmarks=2, num_mesh_points=3,
                                    point_vote_iou=point_vote_iou, **SMALL)
  anchors = retinaface.anchors(cfg, (128, 128))
  batch = _scene()
  outputs, _ = _perfect_outputs(cfg, anchors, batch)
  found = jax.jit(lambda o: retinaface.detect(cfg, o, (128, 128)))(outputs)
  valid = np.asarray(found['valid'][0])
  assert valid.sum() == 3  # NMS leaves one detection per face
  for g in range(3):
    d = int(np.argmin(np.abs(np.asarray(found['boxes'][0]) - batch['boxes'][0, g]).sum(-1)))
    np.testing.assert_allclose(found['boxes'][0, d], batch['boxes'][0, g], atol=1e-3)
    if g < 2:
      np.testing.assert_allclose(found['landmarks'][0, d], batch['keypoints'][0, g, :2, :2],
                                 atol=1e-3)
      np.testing.assert_allclose(found['mesh'][0, d], batch['keypoints'][0, g, 2:, :2],
                                 atol=1e-3)


def test_face_evaluator_bins_and_landmark_nme():
  heights = np.array([10.0, 24.0, 60.0])  # hard, medium, easy in a 128 px image
  boxes = np.array([[[4, 4, 12, 14], [30, 30, 49.2, 54], [60, 60, 108, 120]]], np.float32)
  points = np.zeros((1, 3, 5, 3), np.float32)
  for g in range(3):
    x1, y1, x2, y2 = boxes[0, g]
    points[0, g, :, :2] = [[x1 + 0.3 * (x2 - x1), y1 + 0.4 * (y2 - y1)],
                           [x1 + 0.7 * (x2 - x1), y1 + 0.4 * (y2 - y1)],
                           [(x1 + x2) / 2, (y1 + y2) / 2], [x1 + 0.35 * (x2 - x1), y2 - 2],
                           [x1 + 0.65 * (x2 - x1), y2 - 2]]
    points[0, g, :, 2] = 2
  batch = {'image_id': np.array([7]), 'scale': np.ones(1, np.float32),
           'orig_size': np.array([[128, 128]]), 'example_valid': np.ones(1, bool),
           'boxes': boxes, 'classes': np.zeros((1, 3), np.int32), 'valid': np.ones((1, 3), bool),
           'is_crowd': np.zeros((1, 3), bool), 'areas': np.ones((1, 3), np.float32),
           'keypoints': points}
  # Detections: the easy and medium faces exactly (medium's points off by 10% of its
  # inter-ocular distance); the hard one missed.
  shifted = points[0, 1, :, :2] + [0.1 * (points[0, 1, 1, 0] - points[0, 1, 0, 0]), 0]
  predictions = {'boxes': boxes[:, [2, 1]], 'scores': np.array([[0.9, 0.8]]),
                 'classes': np.zeros((1, 2), np.int32), 'valid': np.ones((1, 2), bool),
                 'landmarks': np.stack([points[0, 2, :, :2], shifted])[None]}
  evaluator = faces.FaceEvaluator(num_landmarks=5, num_mesh_points=0)
  evaluator.add(batch, predictions)
  metrics = evaluator.evaluate()
  assert metrics['box/AP50_easy'] == pytest.approx(1.0)
  assert metrics['box/AP50_medium'] == pytest.approx(1.0)
  assert metrics['box/AP50_hard'] == pytest.approx(0.0)
  assert 0.6 < metrics['box/AP50'] < 0.7  # 2 of 3 faces, both at the top of the ranking
  assert metrics['landmarks5/NME'] == pytest.approx(0.05, rel=1e-4)  # (0 + 0.1) / 2
  # By the face box's sqrt(w h): the medium face's points are off by 0.04 w.
  w, h = boxes[0, 1, 2:] - boxes[0, 1, :2]
  assert metrics['landmarks5/box_size/NME'] == pytest.approx(0.04 * w / np.sqrt(w * h) / 2,
                                                             rel=1e-4)
  assert metrics['landmarks5/matched_fraction'] == pytest.approx(2 / 3)
  # Per size bin: easy exact, medium off by 0.1, hard not matched (no face scored).
  assert metrics['landmarks5/easy/NME'] == pytest.approx(0.0, abs=1e-6)
  assert metrics['landmarks5/medium/NME'] == pytest.approx(0.1, rel=1e-4)
  assert metrics['landmarks5/hard/num_faces'] == 0
  np.testing.assert_array_equal(faces.size_bins(heights, 128, 0.1, 0.25), [2, 1, 0])


def _config(variant='tiny', *overrides):
  return config_lib.load_config(launcher.experiment(EXPERIMENT, variant), list(overrides))


def test_landmark_config_on_a_dataset_without_matching_keypoints_is_named(tmp_path):
  config = _config('tiny', f'data.data_dir={tmp_path}', 'data.dataset=synthetic_shapes/tiny')
  with pytest.raises(config_lib.ConfigError, match=r'5 landmarks \+ 68 mesh points = 73 '
                                                   r'keypoints .* synthetic_shapes/tiny has'):
    tasks_base.create_task(config)


def test_negative_points_beta_is_named(tmp_path):
  config = _config('tiny', f'data.data_dir={tmp_path}', 'loss.points_beta=-1.0')
  with pytest.raises(config_lib.ConfigError, match='points_beta=-1.0'):
    tasks_base.create_task(config)


def test_variants():
  assert _config('box_only').model.num_landmarks == 0
  assert _config('small_data,box_only').data.train_split == 'train[:10%]'
  with pytest.raises(ValueError, match='tokens'):
    _config('mobilenet')


@pytest.mark.slow(seconds=72)
def test_learns_end_to_end(tmp_path):
  """Learning happened: tiny training finds faces (an untrained model scores 0)."""
  workdir = tmp_path / 'work'
  code, log = launcher.launch('train', launcher.experiment(EXPERIMENT, 'tiny'),
                              f'--workdir={workdir}', data_dir=tmp_path / 'tfds')
  assert code == 0, log[-3000:]
  results = json.loads((workdir / 'eval_results.json').read_text())
  assert results['box/AP50'] >= 0.1, results
  for key in ('box/AP50_easy', 'box/AP50_medium', 'box/AP50_hard', 'landmarks5/NME',
              'mesh/NME'):
    assert key in results
  assert (workdir / 'predictions.png').exists()
