"""A readable console and a light prediction: what the launchers print, and what
prediction imports.

The end-to-end CenterNet test (`test_centernet_end_to_end`) checks its real `launch.train`
output with `check_quiet_train_log` and its `launch.predict` run's imports (no
TensorFlow), so no training is added here.
"""
import logging
import os
import re

import numpy as np
import pytest

from vision_jax.data import single_image
from vision_jax.train import console
from vision_jax.train import loop

# A progress line of vision_jax.train.loop: step, losses, rate, ETA.
_PROGRESS = re.compile(r'step (\d+)/(\d+) \| .*loss=[\d.]+.* \| [\d.]+ steps/s \| ETA \d\d:\d\d:\d\d')


def check_quiet_train_log(log: str, steps: int, max_lines: int = 30) -> None:
  """`launch.train` output: progress lines with ETA up to `steps` and the evaluation's
  metrics; no tracebacks, deprecation notices, other libraries' INFO lines (orbax, clu,
  TFDS, jax, TensorFlow's C++ logs) or progress bars; at most `max_lines` lines."""
  lines = log.splitlines()
  assert len(lines) <= max_lines, '\n'.join(lines)
  assert 'Traceback' not in log and 'deprecat' not in log.lower(), log
  for noise in ('orbax', 'checkpoint_manager.py', 'logging_writer.py', 'port.cc', 'oneDNN',
                'xla_bridge.py', 'dataset_info.py', 'absl::InitializeLog', '%|'):
    assert noise not in log, f'{noise!r} in:\n{log}'
  # absl's prefix is 'I<date> <time> <thread> <file>:<line>]': INFO lines come from our files.
  for line in lines:
    match = re.match(r'I\d{4} \S+ +\d+ (\S+):\d+\]', line)
    assert match is None or match.group(1) in ('loop.py', 'datasets.py'), line
  progress = [m for m in map(_PROGRESS.search, lines) if m]
  assert progress and progress[-1].groups() == (str(steps), str(steps)), log
  assert re.search(rf'Evaluation at step {steps} \(.*\): box/AP=[\d.]+', log), log


def _record(path: str, level: int, message: str) -> logging.LogRecord:
  return logging.LogRecord('absl', level, path, 1, message, None, None)


def test_quiet_filter_keeps_own_lines_and_third_party_warnings(tmp_path):
  quiet = console.QuietThirdParty(own_dirs=[str(tmp_path)])
  own = os.path.join(os.path.dirname(loop.__file__), 'loop.py')
  other = '/site-packages/orbax/checkpoint/checkpoint_manager.py'
  assert quiet.filter(_record(own, logging.INFO, 'step 1/2'))
  assert quiet.filter(_record(os.path.join(tmp_path, 'train.py'), logging.DEBUG, 'x'))
  assert not quiet.filter(_record(other, logging.INFO, 'Saving checkpoint at step 80'))
  assert quiet.filter(_record(other, logging.WARNING, 'disk almost full'))
  assert not quiet.filter(_record(other, logging.WARNING, '`x` is deprecated, use `y`'))
  assert quiet.filter(_record(other, logging.ERROR, 'deprecated API failed'))


def test_cpp_info_lines_are_dropped_and_other_stderr_kept(capfd):
  with console.cpp_info_hidden():
    os.write(2, b'WARNING: All log messages before absl::InitializeLog() is called are '
                b'written to STDERR\n'
                b'I0000 00:00:1796142555.363125   19284 port.cc:153] oneDNN custom ops\n'
                b'W1201 16:29:33.207538 1400999 feature.py:72] a C++ warning\n'
                b'plain text\n')
  err = capfd.readouterr().err
  assert err == 'W1201 16:29:33.207538 1400999 feature.py:72] a C++ warning\nplain text\n'


@pytest.mark.parametrize('total, log_every, expected', [
    (160, 40, 40),     # the tiny CenterNet: 4 lines
    (1800, 50, 100),   # 36 summaries -> every 100 steps, 18 lines
    (30, 50, 50),      # fewer steps than log_every: only the last step prints
    (100_000, 100, 3400)])
def test_progress_lines_are_capped(total, log_every, expected):
  every = loop.progress_interval(total, log_every)
  assert every == expected and every % log_every == 0
  assert -(-total // every) <= loop.MAX_PROGRESS_LINES


@pytest.mark.parametrize('shape, size', [((100, 150), (128, 128)), ((37, 53), (128, 128)),
                                         ((300, 200), (128, 128)), ((128, 128), (128, 128)),
                                         ((64, 500), (96, 160)), ((1, 1), (64, 64))])
def test_numpy_letterbox_is_evaluations_preprocessing(shape, size):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from vision_jax.data import detection_transforms  # pylint: disable=g-import-not-at-top
  image = np.random.default_rng(sum(shape)).integers(0, 256, (*shape, 3), dtype=np.uint8)
  example = {'image': tf.constant(image), 'boxes': tf.zeros([0, 4]),
             'classes': tf.zeros([0], tf.int32), 'is_crowd': tf.zeros([0], tf.bool),
             'areas': tf.zeros([0]), 'image_id': tf.constant(0, tf.int64)}
  want = detection_transforms.preprocess(example, image_size=size, max_instances=1,
                                         training=False, with_keypoints=False)
  got = single_image.letterbox(image, size)
  for key, value in got.items():
    expected = np.asarray(want[key])[None]
    assert value.dtype == expected.dtype and value.shape == expected.shape, key
    np.testing.assert_array_equal(value, expected, err_msg=key)


def test_letterbox_rejects_non_rgb():
  with pytest.raises(ValueError, match=r'\[H, W, 3\] uint8'):
    single_image.letterbox(np.zeros((4, 4), np.uint8), (32, 32))
