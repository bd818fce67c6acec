"""What every launcher shares: config flags with overrides, readable errors, a quiet
console.

The console shows this project's log lines (progress with ETA, evaluation results) and
other libraries' warnings; their INFO chatter (orbax, TFDS, clu, jax, TensorFlow's C++
INFO lines) and deprecation notices addressed to library authors appear only with
--verbose (`vision_jax.train.console`).
"""
import os
import sys

from absl import app
from absl import flags
from absl import logging

from vision_jax import xla_flags
from vision_jax.train import config as config_lib
from vision_jax.train import console

# Before any JAX computation: XLA reads its flags when the first backend starts.
xla_flags.apply_defaults()

flags.DEFINE_string('config', None, 'Experiment file, optionally with a variant: '
                    'experiments/centernet_shapes.py[:tiny]. Override any value with '
                    '--config.<key>=<value>, e.g. --config.train.steps=200.')
flags.DEFINE_string('workdir', None, 'Directory for checkpoints, metrics and results.')
flags.DEFINE_bool('multihost', False, 'Call jax.distributed.initialize() first (multi-host).')
flags.DEFINE_bool('verbose', False, 'Also print the INFO logs of other libraries (orbax, '
                  'TFDS, clu, jax, the C++ INFO lines of TensorFlow) and their deprecation '
                  'notices; without it only their warnings and errors are printed.')
FLAGS = flags.FLAGS

_overrides: list[str] = []


class UsageError(ValueError):
  """A flag value the launcher cannot use (the message says what to pass)."""


def _parse_flags(argv):
  rest, overrides = config_lib.split_config_overrides(argv)
  _overrides[:] = overrides
  return app.parse_flags_with_usage(rest)


def load_config():
  """The experiment config named by --config with the --config.* overrides applied."""
  if not FLAGS.config:
    raise config_lib.ConfigError('--config is required, e.g. --config=experiments/centernet_shapes.py')
  return config_lib.load_config(FLAGS.config, _overrides)


def user_errors() -> tuple[type[Exception], ...]:
  """Errors caused by input that the user can fix: printed as one message, no traceback."""
  from vision_jax.data import single_image
  from vision_jax.evaluation import judge
  from vision_jax.tasks import base
  from vision_jax.train import checkpoint, loop
  errors = [UsageError, config_lib.ConfigError, checkpoint.CheckpointError,
            loop.TrainingDivergedError, single_image.ImageReadError,
            base.PredictionRequestError, judge.JudgeCacheError]
  try:
    from vision_jax.data import datasets
    errors.append(datasets.DatasetNotFoundError)
  except (ImportError, AttributeError):
    pass
  return tuple(errors)


def run(main):
  """app.run with config overrides and user errors reported as `error: ...` (exit 2)."""

  def wrapped(argv):
    logging.set_verbosity(logging.INFO)
    if not FLAGS.verbose:
      console.quiet_third_party_logs(own_dirs=[os.path.dirname(os.path.abspath(__file__))])
    if FLAGS.multihost:
      import jax
      jax.distributed.initialize()
    try:
      return main(argv)
    except user_errors() as e:
      print(f'error: {e}', file=sys.stderr)
      sys.exit(2)

  app.run(wrapped, flags_parser=_parse_flags)
