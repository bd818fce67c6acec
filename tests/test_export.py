"""`launch.export`: a trained checkpoint's functions serialised with jax.export, run by a
fresh process that imports only jax and numpy, give `launch.predict`'s predictions."""
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image
import pytest

from tests import launcher
from tests import toy_tasks
from vision_jax.data import single_image
from vision_jax.tasks import base
from vision_jax.train import checkpoint
from vision_jax.train import config as config_lib
from vision_jax.train import export
from vision_jax.train import loop
from vision_jax.train import predict

CENTERNET = launcher.experiment('centernet_shapes.py', 'tiny')
CGAN = launcher.experiment('cgan_digits.py', 'tiny')

# What a user without vision_jax runs (README, "Export"): jax, numpy and json only.
LOADER = r'''
import json, sys
import jax, numpy as np
folder, name, inputs, outputs = sys.argv[1:5]
entry = json.load(open(f'{folder}/manifest.json'))['functions'][name]
exp = jax.export.deserialize(open(f'{folder}/{entry["file"]}', 'rb').read())
given = np.load(inputs)
batch = {key: given[key] for key in entry['in_structure'][0]}
np.savez(outputs, **jax.device_get(exp.call(batch)))
loaded = sorted({m.split('.')[0] for m in sys.modules} & {'vision_jax', 'flax', 'tensorflow'})
assert not loaded, loaded
print('ran on', jax.default_backend(), 'exported for', exp.platforms)
'''


def _run_exported(folder, name, batch, tmp_path) -> dict:
  """Runs <folder>/<name>.jax_exported on batch in a fresh python (jax + numpy only)."""
  np.savez(tmp_path / 'inputs.npz', **batch)
  out = subprocess.run(
      [sys.executable, '-c', LOADER, str(folder), name, str(tmp_path / 'inputs.npz'),
       str(tmp_path / 'outputs.npz')], cwd=tmp_path, capture_output=True, text=True,
      timeout=300)
  assert out.returncode == 0, out.stdout + out.stderr[-3000:]
  assert 'ran on cpu' in out.stdout
  with np.load(tmp_path / 'outputs.npz') as f:
    return dict(f)


def _assert_same(actual: dict, expected: dict):
  assert sorted(actual) == sorted(expected)
  for key, value in expected.items():
    assert actual[key].shape == value.shape and actual[key].dtype == value.dtype, key
    if np.issubdtype(value.dtype, np.floating):
      np.testing.assert_allclose(actual[key], value, rtol=1e-5, atol=1e-5, err_msg=key)
    else:
      np.testing.assert_array_equal(actual[key], value, err_msg=key)


def check_centernet_export(workdir, data_dir, tmp_path, step: int):
  """`launch.export` of a CenterNet `:tiny` workdir trained to `step` runs without
  vision_jax and matches predict; a second export into the folder is refused.

  Called by tests/test_centernet_end_to_end.py on the workdir it has just trained, so
  that the suite trains the tiny CenterNet once for both (CI time)."""
  out = tmp_path / 'exported'
  code, log = launcher.launch('export', CENTERNET, f'--workdir={workdir}', f'--output={out}',
                              data_dir=data_dir)
  assert code == 0, log[-3000:]
  assert 'wrote' in log and 'predict.jax_exported' in log
  manifest = json.loads((out / 'manifest.json').read_text())
  assert sorted(os.listdir(out)) == ['manifest.json', 'predict.jax_exported']
  assert manifest['format'] == export.FORMAT and manifest['task'] == 'centernet'
  assert manifest['step'] == step and manifest['platforms'] == ['cpu']
  assert manifest['config_name'] == CENTERNET
  entry = manifest['functions']['predict']
  # Only what the model reads: the letterboxed image (scale, orig_size, ... dropped).
  assert entry['args'] == ['batch'] and entry['in_structure'] == [{'image': 0}]
  assert entry['inputs'] == [{'name': 'batch/image', 'shape': [1, 128, 128, 3],
                              'dtype': 'uint8'}]
  assert [o['name'] for o in entry['outputs']] == ['boxes', 'classes', 'scores', 'valid']

  # Noise, so that no two detection scores tie; not the config's size, so it is letterboxed.
  image_path = tmp_path / 'noise.png'
  Image.fromarray(np.random.default_rng(0).integers(0, 256, (100, 150, 3), np.uint8)).save(
      image_path)
  config = config_lib.load_config(CENTERNET, [f'data.data_dir={data_dir}'])
  expected = predict.predict_file(config, str(workdir), str(tmp_path / 'pred.png'),
                                  image_path=str(image_path))
  batch = base.create_task(config).prediction_batch(
      {'image': single_image.read_image(str(image_path)), 'labels': None})
  _assert_same(_run_exported(out, 'predict', batch, tmp_path), expected)

  # The folder now holds an export: refused without --overwrite, and nothing changes.
  before = {name: (out / name).read_bytes() for name in os.listdir(out)}
  code, log = launcher.launch('export', CENTERNET, f'--workdir={workdir}', f'--output={out}',
                              data_dir=data_dir)
  assert code == 2 and f'--output={out} is not empty' in log and '--overwrite' in log
  assert 'Traceback' not in log
  assert {name: (out / name).read_bytes() for name in os.listdir(out)} == before


def test_export_without_checkpoint_says_train_first(tmp_path):
  # In-process (the launcher turns CheckpointError into `error: ...`, exit 2, like
  # launch.predict; the refusal above shows the launcher's path).
  workdir = tmp_path / 'never_trained'
  config = config_lib.load_config(CENTERNET, [f'data.data_dir={tmp_path / "tfds"}'])
  with pytest.raises(checkpoint.CheckpointError,
                     match=f'--workdir={workdir} holds no checkpoints.*Train first'):
    export.export_workdir(config, str(workdir), str(tmp_path / 'out'))
  assert not workdir.exists() and not (tmp_path / 'out').exists()  # nothing was created


def test_cgan_export_matches_predict_by_labels(tmp_path):
  """The generic path with another request (labels) and a two-input batch (label, z)."""
  data_dir, workdir, out = tmp_path / 'tfds', tmp_path / 'work', tmp_path / 'exported'
  config = config_lib.load_config(CGAN, [f'data.data_dir={data_dir}'])
  trainer = loop.Trainer(config, str(workdir))  # An initial checkpoint: no training needed.
  trainer.checkpoints.save(0, trainer.initial_state()[0], force=True)
  trainer.checkpoints.close()

  manifest = export.export_workdir(config, str(workdir), str(out), config_name=CGAN)
  entry = manifest['functions']['predict']
  columns, latent = config.eval.picture_columns, config.model.latent_dim
  assert entry['in_structure'] == [{'label': 0, 'z': 1}]
  assert [(i['name'], i['shape'], i['dtype']) for i in entry['inputs']] == [
      ('batch/label', [columns], 'int32'), ('batch/z', [columns, latent], 'float32')]
  assert entry['out_structure'] == {'image': 0}

  expected = predict.predict_file(config, str(workdir), str(tmp_path / 'grid.png'), labels=[7])
  batch = base.create_task(config).prediction_batch({'image': None, 'labels': [7]})
  actual = _run_exported(out, 'predict', batch, tmp_path)
  # uint8 images: the constants folded into the artifact may round one level differently.
  assert actual['image'].dtype == np.uint8 and actual['image'].shape == expected['image'].shape
  assert np.abs(actual['image'].astype(int) - expected['image']).max() <= 1


class _VideoLikeTask(toy_tasks.ToyRegressionTask):
  """Two named functions with their own arguments, one with an explicit carry."""

  def export_functions(self, state):
    def keyframe(batch):
      features = batch['x'] * 2
      return {'y': self.net.apply(state.variables, features, train=False)}, features

    def step(carry, batch):
      features = 0.5 * carry + batch['x']
      return {'y': self.net.apply(state.variables, features, train=False)}, features

    x = np.zeros((3, 4), np.float32)
    return {'keyframe': base.ExportFunction(keyframe, ({'x': x, 'unused': x},)),
            'step': base.ExportFunction(step, (x, {'x': x}), ('carry', 'batch'))}


def test_several_named_functions_with_a_carry_and_overwrite(tmp_path, monkeypatch):
  task = _VideoLikeTask(toy_tasks.toy_config())
  state = task.init_state(jax.random.key(0), 6)
  exported, entries, skipped = export.export_functions(task, state)
  assert sorted(exported) == ['keyframe', 'step'] and skipped == {}
  assert entries['keyframe']['in_structure'] == [{'x': 0}]  # 'unused' dropped
  assert entries['step']['args'] == ['carry', 'batch']
  assert entries['step']['in_structure'] == [0, {'x': 1}]
  assert [i['name'] for i in entries['step']['inputs']] == ['carry', 'batch/x']
  assert entries['step']['out_structure'] == [{'y': 0}, 1]

  x = np.arange(12, dtype=np.float32).reshape(3, 4)
  keyframe = jax.export.deserialize(exported['keyframe'].serialize())
  (out, carry) = keyframe.call({'x': x})
  expected = task.net.apply(state.variables, x * 2, train=False)
  np.testing.assert_allclose(out['y'], expected, rtol=1e-6)
  step = jax.export.deserialize(exported['step'].serialize())
  np.testing.assert_allclose(step.call(carry, {'x': x})[0]['y'], task.net.apply(
      state.variables, 0.5 * carry + x, train=False), rtol=1e-6)

  # --overwrite replaces the export's own files, drops ones it no longer has, keeps others.
  folder = tmp_path / 'out'
  export.write(str(folder), exported, {'functions': entries})
  (folder / 'notes.txt').write_text('mine')
  with pytest.raises(export.ExportError, match='not empty.*--overwrite'):
    export.write(str(folder), {'keyframe': exported['keyframe']},
                 {'functions': {'keyframe': entries['keyframe']}})
  assert (folder / 'step.jax_exported').exists()
  export.write(str(folder), {'keyframe': exported['keyframe']},
               {'functions': {'keyframe': entries['keyframe']}}, overwrite=True)
  assert sorted(os.listdir(folder)) == ['keyframe.jax_exported', 'manifest.json', 'notes.txt']

  # A platform that does not lower is left out and reported; cpu stays.
  real_export = jax.export.export

  def no_tpu(fun, *, platforms=None, **kwargs):
    if 'tpu' in (platforms or ()):
      raise NotImplementedError('no tpu lowering for this op (simulated)')
    return real_export(fun, platforms=platforms, **kwargs)

  monkeypatch.setattr(jax.export, 'export', no_tpu)
  exported, entries, skipped = export.export_functions(task, state, platforms=['cpu', 'tpu'])
  assert list(skipped) == ['tpu'] and 'simulated' in skipped['tpu']
  assert all(e['platforms'] == ['cpu'] for e in entries.values())
  monkeypatch.undo()

  # A task that does not predict from requests has nothing to export by default.
  with pytest.raises(export.ExportError, match="task 'toy' cannot be exported"):
    export.export_functions(toy_tasks.ToyRegressionTask(task.config), state)

  # Arguments must be plain pytrees, so that a process without vision_jax can call them.
  bad = {'f': base.ExportFunction(lambda s: s.step, (state,), ('state',))}
  task.export_functions = lambda state: bad
  with pytest.raises(export.ExportError, match='not a plain pytree'):
    export.export_functions(task, state)
