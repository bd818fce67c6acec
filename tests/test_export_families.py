"""`launch.export` for every family with a predict step: each `:tiny` experiment's
random-init state goes through `export.export_state` (what `launch.export` does once it
has restored the checkpoint); the written artifacts, deserialised in this process, give
what the task's own `predict_step` gives on the same state and batch.

Cheap on purpose (CI): no training, no checkpoint, one process, cpu lowering only. The
checkpoint -> launcher -> artifact path, run by a fresh process with only jax and numpy,
is tests/test_export.py's (CenterNet, cGAN); YOLACT's and YolactEdge's is in
tests/test_yolact_end_to_end.py.
"""
import importlib
import json
import math
import os
import pkgutil

import jax
import jax.extend.random as jex
import jax.numpy as jnp
import numpy as np
import pytest

from tests import launcher
from vision_jax import tasks as tasks_package
from vision_jax.ops import backend
from vision_jax.tasks import base
from vision_jax.train import config as config_lib
from vision_jax.train import export

# One `:tiny` experiment per family (and per model variant of a family).
EXPERIMENTS = (
    'centernet_shapes.py:tiny',
    'centernet_triplets_shapes.py:tiny',
    'cornernet_shapes.py:tiny',
    'mask_rcnn_shapes.py:tiny',
    'keypoint_rcnn_shapes.py:tiny',
    'yolact_shapes.py:tiny',
    'yolact_edge_shapes_video.py:tiny',
    'upsnet_shapes.py:tiny',
    'hourglass_faces.py:tiny',
    'hourglass_faces.py:regression,tiny',
    'hourglass_faces.py:integral,tiny',
    'retinaface_faces.py:tiny',
    'cgan_digits.py:tiny',
    'pix2pix_shapes.py:tiny',
    'cyclegan_shapes.py:tiny',
    'style_transfer.py:tiny',
    'srresnet.py:tiny',
    'srgan.py:tiny',
    'regression_vs_gan_toy.py:tiny',
)

def _mix(x):
  """A uint32 -> uint32 integer hash (lowbias32: two multiply-xorshift rounds)."""
  x = (x ^ (x >> 16)) * jnp.uint32(0x7FEB352D)
  x = (x ^ (x >> 15)) * jnp.uint32(0x846CA68B)
  return x ^ (x >> 16)


def _bits(key, n: int):
  return _mix(_mix(jax.lax.iota(jnp.uint32, n) ^ key[0]) + key[1])


def _random_bits(key, bit_width: int, shape):
  if bit_width not in (8, 16, 32):
    raise NotImplementedError(f'{bit_width}-bit random numbers')
  return _bits(key, math.prod(shape)).astype(f'uint{bit_width}').reshape(shape)


# Random init only needs random-looking numbers, not a cryptographic generator: with a
# key of this hash, the inits compile 2x faster than with 'rbg', 3-5x than with threefry
# (whose expanded rounds, one per parameter, dominate a 15 s CenterNet init compile).
_CHEAP_PRNG = jex.define_prng_impl(
    key_shape=(2,),
    seed=lambda seed: jnp.stack([jnp.uint32(0x9E3779B9), _mix(seed.astype(jnp.uint32))]),
    split=lambda key, shape: _bits(key, 2 * math.prod(shape)).reshape(*shape, 2),
    random_bits=_random_bits,
    fold_in=lambda key, data: _mix(key ^ _mix(jnp.uint32(data) + jnp.uint32(0x85EBCA6B))),
    name='test_hash')


def _config(experiment: str, data_dir):
  name, variant = experiment.split(':')
  config = config_lib.load_config(launcher.experiment(name, variant))
  if 'data_dir' in config.get('data', {}):
    config.data.data_dir = str(data_dir)
  return config


def _tasks_with_predict_step() -> set[str]:
  """config.task of every module in vision_jax/tasks/ whose task has a predict step."""
  names = set()
  for info in pkgutil.iter_modules(tasks_package.__path__):
    module = importlib.import_module(f'vision_jax.tasks.{info.name}')
    if not hasattr(module, 'create'):
      continue  # shared bases and helpers
    if any(isinstance(c, type) and issubclass(c, base.Task) and c.__module__ == module.__name__
           and c.predict_step is not base.Task.predict_step for c in vars(module).values()):
      names.add(info.name)
  return names


def test_every_family_with_a_predict_step_is_exported_below():
  covered = {_config(e, '/nonexistent').task for e in EXPERIMENTS}
  assert covered == _tasks_with_predict_step()


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  # Shared by the cases: several read the same procedural builders.
  return tmp_path_factory.mktemp('tfds')


def _request(task: base.Task) -> dict:
  """The task's example request with a noise image (no ties among detection scores)."""
  request = dict(task.example_prediction_request())
  if request.get('image') is not None:
    shape = request['image'].shape
    request['image'] = np.random.default_rng(0).integers(0, 256, shape, np.uint8)
  return request


def _assert_same(actual, expected, where: str):
  """Same structure, shapes and dtypes; floats close, integers and booleans equal, and
  uint8 images within one level (the artifact's folded constants may round differently)."""
  actual, expected = jax.device_get(actual), jax.device_get(expected)
  assert jax.tree.structure(actual) == jax.tree.structure(expected), where
  for (path, a), b in zip(jax.tree.leaves_with_path(actual), jax.tree.leaves(expected)):
    what = f'{where}{jax.tree_util.keystr(path)}'
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape and a.dtype == b.dtype, (what, a.shape, a.dtype, b.shape, b.dtype)
    assert a.size, what
    if np.issubdtype(b.dtype, np.floating):
      assert np.isfinite(b).all(), what
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5, err_msg=what)
    elif b.dtype == np.uint8:
      assert np.abs(a.astype(int) - b).max() <= 1, what
    else:
      np.testing.assert_array_equal(a, b, err_msg=what)


# Each program here runs once: compiled at LLVM's optimisation level 1 on XLA:CPU (CI time;
# the same options for the artifact and the reference, so they still compute alike).
_run = backend.run_once


# A second model variant of a task already exported above: the extended tier (CI time).
_EXTENDED = ('cornernet_shapes.py:tiny', 'keypoint_rcnn_shapes.py:tiny',
             'hourglass_faces.py:regression,tiny', 'hourglass_faces.py:integral,tiny',
             'srgan.py:tiny')


@pytest.mark.parametrize('experiment', [
    pytest.param(e, marks=pytest.mark.extended) if e in _EXTENDED else e
    for e in EXPERIMENTS])
def test_export_round_trip_matches_predict_step(experiment, data_dir, tmp_path):
  config = _config(experiment, data_dir)
  backend.set_kernels(config.get('kernels', 'auto'))  # as launch.export does
  task = base.create_task(config)
  state = task.init_state_once(jax.random.key(config.seed, impl=_CHEAP_PRNG),
                               int(config.train.steps))

  out = tmp_path / 'exported'
  # export_workdir's path once it has restored a checkpoint.
  manifest = export.export_state(config, task, state, str(out), platforms=['cpu'],
                                 config_name=experiment)
  assert manifest['task'] == config.task and manifest['platforms'] == ['cpu']
  assert manifest['kernels'] == backend.kernels() and manifest['step'] == 0
  assert json.loads((out / export.MANIFEST).read_text()) == manifest
  functions = task.export_functions(state)
  assert sorted(manifest['functions']) == sorted(functions) and 'predict' in functions
  assert sorted(os.listdir(out)) == sorted(
      [export.MANIFEST] + [e['file'] for e in manifest['functions'].values()])

  batch = task.prediction_batch(_request(task))
  for name, entry in manifest['functions'].items():
    exported = jax.export.deserialize((out / entry['file']).read_bytes())
    assert exported.platforms == ('cpu',)
    args = (batch,) if name == 'predict' else functions[name].example_args
    # The artifact takes only the top-level keys its function reads (the manifest's).
    kept = tuple({key: arg[key] for key in structure} if isinstance(structure, dict) else arg
                 for arg, structure in zip(args, entry['in_structure']))
    actual = _run(exported.call, *kept)
    if name == 'predict':
      expected = _run(task.predict_step, state, batch)
    else:  # other entry points (a video model's steps) against their traced function
      expected = _run(functions[name].fn, *args)
    _assert_same(actual, expected, f'{experiment} {name}')
