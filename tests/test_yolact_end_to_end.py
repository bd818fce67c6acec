"""YOLACT and YolactEdge through the train launcher (train, evaluate), then predict
(tests/launcher.predict, in-process) and export; and the bad inputs of the video family."""
import json

import jax
import numpy as np
from PIL import Image
import pytest

from tests import launcher
from vision_jax.data import single_image
from vision_jax.tasks import base
from vision_jax.train import config as config_lib
from vision_jax.train import export
from vision_jax.train import loop

YOLACT = launcher.experiment('yolact_shapes.py', 'tiny')
EDGE = launcher.experiment('yolact_edge_shapes_video.py', 'tiny')
# AP50 on the tiny validation splits after the tiny configs' steps (seed 0, 2-core CPU):
# YOLACT (400 steps) box 0.095 / mask 0.111, YolactEdge (150 steps) box 0.07 / mask 0.04
# at k = 5; untrained models score 0.00. Learning must clear this.
MIN_TRAINED_AP50 = 0.02


def _close(actual: dict, expected: dict, keys=('boxes', 'scores')):
  """Exported functions fold the parameters in as constants, which may round differently."""
  for key in keys:
    np.testing.assert_allclose(np.asarray(actual[key]), np.asarray(expected[key]), atol=2e-3,
                               err_msg=key)
  np.testing.assert_array_equal(actual['valid'], expected['valid'])
  differ = np.mean(np.asarray(actual['masks']) != np.asarray(expected['masks']))
  assert differ < 1e-3, differ


@pytest.mark.slow(seconds=47)
def test_yolact_trains_evaluates_predicts_and_exports(tmp_path):
  data_dir, workdir = tmp_path / 'tfds', tmp_path / 'work'
  code, log = launcher.launch('train', YOLACT, f'--workdir={workdir}', data_dir=data_dir)
  assert code == 0, log[-3000:]
  results = json.loads((workdir / 'eval_results.json').read_text())
  assert results['step'] == 400
  for key in ('box/AP50', 'mask/AP50'):  # learning happened
    assert results[key] >= MIN_TRAINED_AP50, (key, results)
  detections = json.loads((workdir / 'coco_detections.json').read_text())
  assert detections and all('segmentation' in d for d in detections)

  image_path = tmp_path / 'in.png'
  Image.fromarray(np.random.default_rng(0).integers(0, 256, (96, 128, 3), np.uint8)).save(
      image_path)
  # launch.predict's work (tests/launcher.predict), drawn at 3x.
  expected = launcher.predict(YOLACT, workdir, tmp_path / 'out.png', image=image_path,
                              data_dir=data_dir)
  assert Image.open(tmp_path / 'out.png').size == (128 * 3, 96 * 3)

  # The exported predict function gives launch.predict's detections and masks.
  config = config_lib.load_config(YOLACT, [f'data.data_dir={data_dir}'])
  manifest = export.export_workdir(config, str(workdir), str(tmp_path / 'exported'))
  assert sorted(manifest['functions']) == ['predict']
  batch = base.create_task(config).prediction_batch(
      {'image': single_image.read_image(str(image_path)), 'labels': None})
  exported = jax.export.deserialize((tmp_path / 'exported' / 'predict.jax_exported').read_bytes())
  inputs = {key: batch[key] for key in manifest['functions']['predict']['in_structure'][0]}
  _close(exported.call(inputs), expected)


@pytest.mark.slow(seconds=79)
def test_yolact_edge_trains_evaluates_both_intervals_and_exports_its_steps(tmp_path):
  data_dir, workdir = tmp_path / 'tfds', tmp_path / 'work'
  code, log = launcher.launch('train', EDGE, f'--workdir={workdir}', data_dir=data_dir)
  assert code == 0, log[-3000:]
  results = json.loads((workdir / 'eval_results.json').read_text())
  assert results['step'] == 150
  for k in (5, 1):
    for key in ('box/AP', 'mask/AP', 'box/AP50', 'mask/AP50'):
      assert 0.0 <= results[f'keyframe_interval_{k}/{key}'] <= 1.0
  assert results['keyframe_interval_5/box/AP50'] >= MIN_TRAINED_AP50, results
  assert (workdir / 'predictions.png').exists()

  # Keyframe and non-keyframe steps, exported, chain through the explicit cache exactly
  # as the clip scan does.
  config = config_lib.load_config(EDGE, [f'data.data_dir={data_dir}'])
  out = tmp_path / 'exported'
  manifest = export.export_workdir(config, str(workdir), str(out))
  assert sorted(manifest['functions']) == ['keyframe', 'non_keyframe', 'predict']
  assert manifest['functions']['non_keyframe']['args'] == ['batch', 'cache']
  keyframe = jax.export.deserialize((out / 'keyframe.jax_exported').read_bytes())
  non_keyframe = jax.export.deserialize((out / 'non_keyframe.jax_exported').read_bytes())
  task = base.create_task(config)
  batch = next(iter(task.eval_data(process_index=0, process_count=1)))
  clip = {'images': batch['images'][:1, :2], 'orig_size': batch['orig_size'][:1, :2],
          'scale': batch['scale'][:1, :2]}  # frames 0 (keyframe) and 1 of the first clip

  def frame(t, name):
    given = {'image': clip['images'][:, t], 'orig_size': clip['orig_size'][:, t],
             'scale': clip['scale'][:, t]}
    return {key: given[key] for key in manifest['functions'][name]['in_structure'][0]}

  first, cache = keyframe.call(frame(0, 'keyframe'))
  second = non_keyframe.call(frame(1, 'non_keyframe'), cache)
  trainer = loop.Trainer(config, str(workdir))
  try:
    state = trainer.restore(None)
  finally:
    trainer.checkpoints.close()
  expected = jax.jit(lambda s, c: task.predict_clips(s, c, keyframe_interval=2))(state, clip)
  _close(first, {k: v[:, 0] for k, v in expected.items()})
  _close(second, {k: v[:, 1] for k, v in expected.items()})


def test_video_bad_inputs_say_what_to_change(tmp_path):
  data_dir = f'data.data_dir={tmp_path / "tfds"}'
  # A keyframe interval longer than the clips.
  config = config_lib.load_config(EDGE, [data_dir, 'model.keyframe_interval=11'])
  with pytest.raises(config_lib.ConfigError, match='keyframe_interval=11 is longer than'):
    base.create_task(config)
  # A video config on a still-image dataset.
  config = config_lib.load_config(EDGE, [data_dir, 'data.dataset=synthetic_shapes/tiny'])
  with pytest.raises(config_lib.ConfigError, match='not a video dataset'):
    base.create_task(config)
