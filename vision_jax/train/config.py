"""Experiment configs: load `experiments/<name>.py[:variant]`, lock, apply overrides;
and the workdir's memory of the config it was started with.

A config file defines `get_config(arg=None) -> ml_collections.ConfigDict`; `arg` is the
text after the colon (`experiments/centernet_shapes.py:tiny`). Overrides use the
big_vision form `train.steps=200` (from the shell: `--config.train.steps=200`). The
config is locked: a key that does not exist is an error that names it.

`remember_config` writes `<workdir>/config.json` at a run's first start and, on resume,
refuses differences that change the optimisation (all keys but FREE_TO_CHANGE) unless
they are explicitly allowed.
"""
import ast
import difflib
import importlib.util
import json
import os
from typing import Iterable
import weakref

from absl import logging
import ml_collections


class ConfigError(ValueError):
  """A config file, variant or override that cannot be used as given."""


def load_module(path: str):
  """The experiment config file at `path`, executed as a module (a config that builds on
  another loads it with this: `load_module(os.path.join(os.path.dirname(__file__), ...))`)."""
  module_spec = importlib.util.spec_from_file_location(
      'vision_jax_config_' + os.path.splitext(os.path.basename(path))[0], path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module


def load_config(spec: str, overrides: Iterable[str] = ()) -> ml_collections.ConfigDict:
  """Loads `path.py[:arg]`, calls its `get_config(arg)`, locks it and applies overrides."""
  path, _, arg = spec.partition(':')
  if not os.path.isfile(path):
    raise ConfigError(f'config file {path!r} does not exist; pass --config=experiments/<name>.py')
  module = load_module(path)
  if not hasattr(module, 'get_config'):
    raise ConfigError(f'config file {path!r} defines no get_config(arg=None)')
  config = module.get_config(arg or None)
  if not isinstance(config, ml_collections.ConfigDict):
    raise ConfigError(f'{path}: get_config must return an ml_collections.ConfigDict')
  config.lock()
  overrides = list(overrides)
  for override in overrides:
    apply_override(config, override)
  _remember_origin(config, spec, overrides)
  return config


# id(config) -> (weak reference, {'experiment': spec, 'overrides': [...]}) of the configs
# load_config made: the trainer records which experiment a workdir ran (run_info.json).
_origins: dict[int, tuple[weakref.ref, dict]] = {}


def _remember_origin(config, spec: str, overrides: list[str]) -> None:
  key = id(config)
  _origins[key] = (weakref.ref(config, lambda _: _origins.pop(key, None)),
                   {'experiment': spec, 'overrides': list(overrides)})


def origin(config) -> dict | None:
  """{'experiment': 'experiments/x.py[:variant]', 'overrides': ['k=v', ...]} of a config
  that `load_config` made (later edits of the object are not tracked), else None."""
  entry = _origins.get(id(config))
  if entry is None or entry[0]() is not config:
    return None
  return {'experiment': entry[1]['experiment'], 'overrides': list(entry[1]['overrides'])}


def apply_override(config: ml_collections.ConfigDict, override: str) -> None:
  """Sets `dotted.key=value` on a locked config; unknown keys raise ConfigError."""
  key, sep, text = override.partition('=')
  if not sep:
    raise ConfigError(f'override {override!r} is not of the form key=value')
  parts = key.split('.')
  node = config
  for depth, part in enumerate(parts):
    if not isinstance(node, ml_collections.ConfigDict) or part not in node:
      known = sorted(node.keys()) if isinstance(node, ml_collections.ConfigDict) else []
      where = '.'.join(parts[:depth]) or 'the top level'
      hint = difflib.get_close_matches(part, known, n=1)
      raise ConfigError(
          f'unknown config key {key!r}: {where} has no {part!r}'
          + (f' (did you mean {hint[0]!r}?)' if hint else '')
          + f'. Known keys there: {", ".join(known)}')
    if depth < len(parts) - 1:
      node = node[part]
  leaf = parts[-1]
  current = node[leaf]
  value = _parse_value(text, current)
  try:
    node[leaf] = value
  except (TypeError, ValueError) as e:
    raise ConfigError(f'cannot set {key!r} to {text!r}: {e}') from e


def _parse_value(text: str, current):
  if isinstance(current, str):
    return text
  try:
    value = ast.literal_eval(text)
  except (ValueError, SyntaxError):
    if text.lower() in ('true', 'false'):
      return text.lower() == 'true'
    return text
  if isinstance(current, tuple) and isinstance(value, list):
    value = tuple(value)
  return value


def split_config_overrides(argv: list[str], name: str = 'config') -> tuple[list[str], list[str]]:
  """Splits `--config.a.b=v` arguments out of argv -> (remaining argv, ['a.b=v', ...])."""
  prefix = f'--{name}.'
  rest, overrides = [], []
  for arg in argv:
    if arg.startswith(prefix):
      overrides.append(arg[len(prefix):])
    else:
      rest.append(arg)
  return rest, overrides


# The workdir's memory of its config.

CONFIG_FILE = 'config.json'
# Keys whose change leaves the optimisation as it was (a trailing '.' covers a subtree):
# any other change on resume is refused unless explicitly allowed.
FREE_TO_CHANGE = ('eval.', 'train.log_every', 'train.checkpoint_every',
                  'train.keep_checkpoints', 'train.eval_every', 'data.data_dir', 'benchmark.',
                  'kernels', 'init.')  # init.*: read at step 0 only (checkpoint.initialize_from)


def to_json_dict(config: ml_collections.ConfigDict) -> dict:
  """The config as plain JSON types (tuples become lists, unset placeholders None)."""
  return json.loads(config.to_json_best_effort())


def flatten(tree: dict, prefix: str = '') -> dict:
  """{'a': {'b': 1}} -> {'a.b': 1}."""
  flat = {}
  for key, value in tree.items():
    if isinstance(value, dict) and value:
      flat.update(flatten(value, f'{prefix}{key}.'))
    else:
      flat[f'{prefix}{key}'] = value
  return flat


def differences(saved: dict, current: dict) -> list[tuple[str, object, object]]:
  """[(dotted key, saved value, current value)] of two JSON config dicts, sorted by key.

  A key present on one side only shows `<absent>` on the other.
  """
  absent = '<absent>'
  old, new = flatten(saved), flatten(current)
  return [(k, old.get(k, absent), new.get(k, absent)) for k in sorted(set(old) | set(new))
          if old.get(k, absent) != new.get(k, absent)]


def changes_optimisation(key: str) -> bool:
  return not any(key == free or (free.endswith('.') and key.startswith(free))
                 for free in FREE_TO_CHANGE)


def remember_config(workdir: str, config: ml_collections.ConfigDict, *, resuming_at: int | None,
                    allow_change: bool = False, write: bool = True
                    ) -> list[tuple[str, object, object]]:
  """Writes `<workdir>/config.json` at the first start; on resume compares against it.

  Args:
    workdir: the run's directory.
    config: the config of this start.
    resuming_at: the step of the checkpoint this start resumes from, None for a new run.
    allow_change: accept differences that change the optimisation; the saved config is
      then kept as `config.before_step_<N>.json` and the new one written.
    write: write files (False on all processes but the first).
  Returns:
    The differences found (empty for a new run).
  Raises:
    ConfigError: on resume, differences outside FREE_TO_CHANGE (steps, schedules,
      learning rates, batch size, model, data, ...) without allow_change; the message
      names every such key with both values.
  """
  path = os.path.join(workdir, CONFIG_FILE)
  current = to_json_dict(config)
  found = []
  if resuming_at is not None and os.path.exists(path):
    try:
      with open(path) as f:
        saved = json.load(f)
    except (OSError, ValueError) as e:
      raise ConfigError(f'{path} cannot be read ({e}); restore it from a backup, or delete it '
                        'to take this config as the run\'s config') from e
    found = differences(saved, current)
    refused = [d for d in found if changes_optimisation(d[0])]
    for key, old, new in found:
      logging.info('config differs from %s: %s: %r -> %r', path, key, old, new)
    if refused and not allow_change:
      listed = '; '.join(f'{k}: {old!r} -> {new!r}' for k, old, new in refused)
      raise ConfigError(
          f'{workdir} holds a run started with another config, and these differences '
          f'change its optimisation: {listed}. Resume with the saved values ({path}), use '
          'a fresh --workdir, or pass --allow_config_change to continue with the new ones.')
    if not refused or not write:
      return found
    os.replace(path, os.path.join(workdir, f'config.before_step_{resuming_at}.json'))
    logging.warning('Continuing step %d with a changed config (--allow_config_change); '
                    'the former one is kept as config.before_step_%d.json', resuming_at,
                    resuming_at)
  elif resuming_at is not None:
    logging.warning('%s is missing: writing this start\'s config there', path)
  if not write:
    return found
  os.makedirs(workdir, exist_ok=True)
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    json.dump(current, f, indent=2, sort_keys=True)
  os.replace(tmp, path)
  return found
