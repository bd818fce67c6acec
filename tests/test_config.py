"""Experiment configs: variants, overrides, unknown keys."""
import glob
import os

import pytest

from vision_jax.train import config as config_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _path(name):
  return os.path.join(ROOT, 'experiments', name)


@pytest.mark.parametrize('path', sorted(glob.glob(os.path.join(ROOT, 'experiments', '*.py'))))
def test_every_experiment_loads_locked_with_a_launch_command(path):
  config = config_lib.load_config(path)
  assert config.is_locked
  assert config.task
  with open(path) as f:
    assert 'python -m launch.train' in f.read()


def test_variant_and_overrides_of_each_type():
  config = config_lib.load_config(
      _path('centernet_shapes.py') + ':tiny',
      ['train.steps=7', 'optimizers.model.learning_rate=0.5', 'data.image_size=(64, 96)',
       'model.backbone=resnet34', 'data.data_dir=/data/tfds'])
  assert config.data.dataset.endswith('tiny')
  assert config.train.steps == 7
  assert config.optimizers.model.learning_rate == 0.5
  assert tuple(config.data.image_size) == (64, 96)
  assert config.model.backbone == 'resnet34'
  assert config.data.data_dir == '/data/tfds'


def test_unknown_key_names_it_and_suggests():
  with pytest.raises(config_lib.ConfigError, match=r"'train.stepz'.*did you mean 'steps'"):
    config_lib.load_config(_path('centernet_shapes.py'), ['train.stepz=5'])
  with pytest.raises(config_lib.ConfigError, match=r"'nope.x'"):
    config_lib.load_config(_path('centernet_shapes.py'), ['nope.x=1'])


def test_wrong_type_and_missing_file_are_config_errors():
  with pytest.raises(config_lib.ConfigError, match='train.steps'):
    config_lib.load_config(_path('centernet_shapes.py'), ['train.steps=many'])
  with pytest.raises(config_lib.ConfigError, match='does not exist'):
    config_lib.load_config(_path('no_such_experiment.py'))


def test_split_config_overrides():
  rest, overrides = config_lib.split_config_overrides(
      ['prog', '--config=x.py', '--config.a.b=1', '--workdir=w'])
  assert rest == ['prog', '--config=x.py', '--workdir=w']
  assert overrides == ['a.b=1']
