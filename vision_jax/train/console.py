"""A readable console: this project's log lines (progress with ETA, evaluation results)
and other libraries' warnings and errors, without their chatter.

`quiet_third_party_logs()` (the launchers call it unless --verbose; a notebook may too):
  * other libraries' INFO records (orbax, TFDS, clu, jax) and their deprecation notices
    (addressed to library authors: TFDS's `TensorInfo.dtype`, TF's `map_fn(dtype=...)`)
    are dropped; this project's records pass at any level;
  * TensorFlow's C++ INFO lines printed while it is imported (oneDNN notices) are
    dropped, wherever it is imported later (prediction never imports it);
  * TFDS's progress bars are off (preparing a procedural dataset prints its own lines).
"""
import contextlib
import importlib.abc
import importlib.machinery
import logging
import os
import re
import sys
import tempfile
import warnings

# Records from files under this folder are this project's own.
_VISION_JAX_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


class QuietThirdParty(logging.Filter):
  """Passes the records of this project's code at any level, and other libraries'
  records from WARNING up except their deprecation notices."""

  def __init__(self, own_dirs=()):
    super().__init__()
    self.own_dirs = (_VISION_JAX_DIR,) + tuple(
        os.path.abspath(d).rstrip(os.sep) + os.sep for d in own_dirs)

  def filter(self, record: logging.LogRecord) -> bool:
    if record.pathname.startswith(self.own_dirs):
      return True
    if record.levelno > logging.WARNING:
      return True
    return (record.levelno == logging.WARNING
            and 'deprecat' not in record.getMessage().lower())


def quiet_third_party_logs(own_dirs=()) -> None:
  """Applies the module docstring's rules; `own_dirs`: more folders whose records pass
  (the launchers' own). Idempotent."""
  quiet = QuietThirdParty(own_dirs)
  # Records of absl's logger (orbax, TFDS, clu and this project log through it) and of
  # TensorFlow's, whatever handler prints them; then every record the root's handlers
  # print (jax's loggers propagate there).
  targets = [logging.getLogger('absl'), logging.getLogger('tensorflow')]
  targets += logging.getLogger().handlers
  for target in targets:
    for old in [f for f in target.filters if isinstance(f, QuietThirdParty)]:
      target.removeFilter(old)
    target.addFilter(quiet)
  _hide_cpp_info_on_import('tensorflow')
  with warnings.catch_warnings():
    warnings.filterwarnings('ignore', message='IProgress not found')  # tqdm in notebooks
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  tfds.disable_progress_bar()


# absl/glog C++ INFO lines ('I1201 16:29:18.418735 19284 port.cc:153] ...'; before absl
# is initialised the date and time read 'I0000 00:00:<seconds>'), and absl's notice that
# precedes the first of them.
_CPP_INFO = re.compile(r'I\d{4} \d\d:\d\d:\d+\.\d+ +\d+ \S+:\d+\] '
                       r'|WARNING: All log messages before absl::InitializeLog\(\)')


@contextlib.contextmanager
def cpp_info_hidden():
  """Captures file descriptor 2 (where C++ libraries log) during the block, then writes
  back everything captured except C++ INFO lines."""
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile() as captured:
    os.dup2(captured.fileno(), 2)
    try:
      yield
    finally:
      sys.stderr.flush()
      os.dup2(saved, 2)
      os.close(saved)
      captured.seek(0)
      lines = captured.read().decode(errors='replace').splitlines(keepends=True)
      sys.stderr.write(''.join(line for line in lines if not _CPP_INFO.match(line)))
      sys.stderr.flush()


class _CppInfoHiddenLoader(importlib.abc.Loader):
  """Runs a module's real loader under `cpp_info_hidden`."""

  def __init__(self, loader):
    self._loader = loader

  def create_module(self, spec):
    return self._loader.create_module(spec)

  def exec_module(self, module):
    module.__loader__ = module.__spec__.loader = self._loader
    with cpp_info_hidden():
      self._loader.exec_module(module)


class _CppInfoHiddenImport(importlib.abc.MetaPathFinder):
  """Finds one top-level module on sys.path and has it imported under `cpp_info_hidden`."""

  def __init__(self, name: str):
    self.name = name

  def find_spec(self, fullname, path=None, target=None):
    if fullname != self.name:
      return None
    spec = importlib.machinery.PathFinder.find_spec(fullname, path)
    if spec is not None and spec.loader is not None:
      spec.loader = _CppInfoHiddenLoader(spec.loader)
    return spec


def _hide_cpp_info_on_import(name: str) -> None:
  if name not in sys.modules and not any(
      isinstance(f, _CppInfoHiddenImport) and f.name == name for f in sys.meta_path):
    sys.meta_path.insert(0, _CppInfoHiddenImport(name))
