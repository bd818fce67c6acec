"""Mask R-CNN and Keypoint R-CNN through the train launcher (train, evaluate) and
launch.predict's work in-process (tests/launcher.predict)."""
import json

import numpy as np
from PIL import Image
import pytest

from tests import launcher


def _launch(module, config, *args, data_dir):
  return launcher.launch(module, launcher.experiment(config, 'tiny'), *args,
                         data_dir=data_dir)


# AP50 on the tiny validation split after the tiny config's 150 steps (seed 0, 2-core
# CPU): box 0.15 and mask 0.15 measured; an untrained model scores 0.00.
MIN_TRAINED_AP50 = 0.04
# Keypoint R-CNN's box AP50 after 150 steps swung from 0.09 to 0.026 on a rounding-level
# change (an equivalent bilinear upsample), so its test trains for 300 steps: box/AP50
# 0.15, keypoints/AP50 0.057 measured.
KEYPOINT_STEPS = 300


@pytest.mark.slow(seconds=77)
def test_mask_rcnn_trains_evaluates_and_predicts(tmp_path):
  data_dir, workdir = tmp_path / 'tfds', tmp_path / 'work'
  code, log = _launch('train', 'mask_rcnn_shapes.py', f'--workdir={workdir}',
                      data_dir=data_dir)
  assert code == 0, log[-3000:]
  results = json.loads((workdir / 'eval_results.json').read_text())
  assert results['step'] == 150
  for key in ('box/AP50', 'mask/AP50'):  # learning happened
    assert results[key] >= MIN_TRAINED_AP50, (key, results)
  detections = json.loads((workdir / 'coco_detections.json').read_text())
  assert detections and all('segmentation' in d for d in detections)
  assert (workdir / 'predictions.png').exists()

  image = tmp_path / 'in.png'
  Image.fromarray(np.full((96, 128, 3), 90, np.uint8)).save(image)
  launcher.predict(launcher.experiment('mask_rcnn_shapes.py', 'tiny'), workdir,
                   tmp_path / 'out.png', image=image, data_dir=data_dir)
  assert Image.open(tmp_path / 'out.png').size == (128 * 3, 96 * 3)


# Extended tier (CI time): the keypoint head, loss, decoding and COCO keypoint scoring are
# unit-tested, and its export in tests/test_export_families.py.
@pytest.mark.extended
@pytest.mark.slow(seconds=112)
def test_keypoint_rcnn_trains_and_evaluates_keypoints(tmp_path):
  workdir = tmp_path / 'work'
  code, log = _launch('train', 'keypoint_rcnn_shapes.py', f'--workdir={workdir}',
                      f'--config.train.steps={KEYPOINT_STEPS}',
                      f'--config.train.checkpoint_every={KEYPOINT_STEPS}',
                      data_dir=tmp_path / 'tfds')
  assert code == 0, log[-3000:]
  results = json.loads((workdir / 'eval_results.json').read_text())
  assert 'mask/AP' not in results and 0.0 <= results['keypoints/AP50'] <= 1.0
  # Learning happened (the keypoints barely start to score in this budget; the full
  # config reaches keypoints/AP 0.67).
  assert results['box/AP50'] >= MIN_TRAINED_AP50, results
  assert results['keypoints/AP50'] > 0.0, results
  detections = json.loads((workdir / 'coco_detections.json').read_text())
  assert any(len(d.get('keypoints', ())) == 4 * 3 for d in detections)


def _write_coco_folder(root, split, num_images, first_id):
  """A COCO-format split of gray images with 1-2 filled rectangles (polygons)."""
  rng = np.random.default_rng(first_id)
  (root / split).mkdir(parents=True)
  (root / 'annotations').mkdir(exist_ok=True)
  images, annotations = [], []
  for i in range(num_images):
    image = np.full((96, 128, 3), 60, np.uint8)
    image_id = first_id + i
    for j in range(1 + i % 2):
      x, y = int(rng.integers(4, 70)), int(rng.integers(4, 40))
      w, h = int(rng.integers(20, 50)), int(rng.integers(20, 50))
      category = (7, 9)[j]
      image[y:y + h, x:x + w] = (220, 40, 40) if category == 7 else (40, 40, 220)
      annotations.append({
          'id': len(annotations) + first_id * 10, 'image_id': image_id,
          'category_id': category, 'bbox': [x, y, w, h], 'area': w * h, 'iscrowd': 0,
          'segmentation': [[x, y, x + w, y, x + w, y + h, x, y + h]]})
    name = f'{image_id:06d}.png'
    Image.fromarray(image).save(root / split / name)
    images.append({'id': image_id, 'file_name': name, 'height': 96, 'width': 128})
  categories = [{'id': 7, 'name': 'red'}, {'id': 9, 'name': 'blue'}]
  (root / 'annotations' / f'instances_{split}.json').write_text(json.dumps(
      {'images': images, 'annotations': annotations, 'categories': categories}))


@pytest.mark.extended  # the folder's reading and scoring: tests/test_data_coco_format.py
@pytest.mark.slow(seconds=58)
def test_mask_rcnn_trains_on_a_local_coco_format_folder(tmp_path):
  """Scored against the folder's own json: every annotation, original resolution."""
  root, workdir = tmp_path / 'my_coco', tmp_path / 'work'
  _write_coco_folder(root, 'train', 16, 1)
  _write_coco_folder(root, 'val', 4, 100)
  overrides = [
      f'--config.data.coco_root={root}', '--config.data.train_split=train',
      '--config.data.eval_split=val', '--config.data.image_size=(128, 128)',
      '--config.data.max_instances=4', '--config.model.backbone=resnet18',
      '--config.model.width=8', '--config.model.norm=batch', '--config.model.fpn_channels=16',
      '--config.model.rpn_pre_nms_top_n_train=64', '--config.model.rpn_post_nms_top_n_train=32',
      '--config.model.rpn_pre_nms_top_n_test=64', '--config.model.rpn_post_nms_top_n_test=32',
      '--config.model.roi_batch_size_per_image=32', '--config.model.box_fc_dim=32',
      '--config.model.mask_conv_dim=16', '--config.train.steps=20',
      '--config.train.batch_size=4', '--config.train.checkpoint_every=20',
      '--config.optimizers.model.name=adamw', '--config.optimizers.model.schedule=cosine',
      '--config.optimizers.model.warmup_steps=10',
      '--config.optimizers.model.learning_rate=0.003', '--config.eval.batch_size=2']
  code, log = launcher.launch('train', launcher.experiment('mask_rcnn_coco.py'),
                              f'--workdir={workdir}', *overrides, data_dir=tmp_path / 'tfds')
  assert code == 0, log[-3000:]
  results = json.loads((workdir / 'eval_results.json').read_text())
  # The plumbing, not learning (test_mask_rcnn_trains_evaluates_and_predicts checks that):
  # 20 steps, then pycocotools against the folder's own json.
  assert results['step'] == 20
  assert -1.0 <= results['box/AP50'] <= 1.0 and -1.0 <= results['mask/AP50'] <= 1.0
  truth = json.loads((workdir / 'coco_ground_truth.json').read_text())
  assert sorted(c['id'] for c in truth['categories']) == [7, 9]
  assert sorted(i['id'] for i in truth['images']) == [100, 101, 102, 103]
  val = json.loads((root / 'annotations' / 'instances_val.json').read_text())
  assert truth['annotations'] == val['annotations']  # the json itself, not the batches


def test_coco_config_without_a_folder_names_the_key_to_set(tmp_path):
  code, log = launcher.launch('train', launcher.experiment('mask_rcnn_coco.py'),
                              f'--workdir={tmp_path / "w"}')
  assert code == 2 and 'data.coco_root' in log and 'Traceback' not in log


@pytest.mark.extended  # the switch over slot buckets is unit-tested (tests/test_ops_switch.py)
@pytest.mark.slow(seconds=53)
def test_head_losses_on_the_smallest_slot_bucket_equal_all_slots(tmp_path, monkeypatch):
  import jax  # pylint: disable=g-import-not-at-top
  from vision_jax.losses import rcnn  # pylint: disable=g-import-not-at-top
  from vision_jax.ops import backend  # pylint: disable=g-import-not-at-top
  from vision_jax.tasks import base  # pylint: disable=g-import-not-at-top
  from vision_jax.train import config as config_lib  # pylint: disable=g-import-not-at-top
  config = config_lib.load_config(
      launcher.experiment('mask_rcnn_shapes.py', 'tiny'),
      [f'data.data_dir={tmp_path}', 'model.roi_batch_size_per_image=128'])
  task = base.create_task(config)
  assert rcnn.positive_slot_buckets(task.model_config) == (8, 16, 32)
  # One jit of the init, from an 'rbg' key: op-by-op init and threefry's bit generator
  # compile slowly on XLA:CPU (22 of this test's 58 s; now 5). Other weights give other
  # proposals: the check below that few of them are positive holds for these.
  state = task.init_state_once(jax.random.key(0, impl='rbg'), 10)
  batch = next(task.train_data(start_batch=0, process_index=0, process_count=1))

  def losses_and_grads():  # traced afresh on each call
    grad_fn = jax.grad(task.losses, has_aux=True)
    return backend.run_once(lambda: grad_fn(state.params, state.model_state, batch,
                                            jax.random.key(1)))

  grads, (bucketed, _) = losses_and_grads()
  assert 0 < float(bucketed['positive_rois']) <= 8  # few positives: a small branch runs
  monkeypatch.setattr(rcnn, 'positive_slot_buckets', lambda config: (32,))
  all_grads, (everything, _) = losses_and_grads()
  for name in ('mask_loss', 'loss'):
    np.testing.assert_allclose(bucketed[name], everything[name], rtol=1e-5, err_msg=name)
  # Gradients too: the mask head's (taken inside the switch branch) and the backbone's
  # (reached through the pyramid), as with every slot in one plain computation.
  flat, all_flat = (jax.tree_util.tree_flatten_with_path(g)[0] for g in (grads, all_grads))
  assert any('mask_predictor' in jax.tree_util.keystr(path) for path, _ in flat)
  for (path, got), (_, want) in zip(flat, all_flat):
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=1e-6 * float(np.abs(want).max()),
                               err_msg=jax.tree_util.keystr(path))
