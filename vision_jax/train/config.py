"""Experiment configs: load `experiments/<name>.py[:variant]`, lock, apply overrides.

A config file defines `get_config(arg=None) -> ml_collections.ConfigDict`; `arg` is the
text after the colon (`experiments/centernet_shapes.py:tiny`). Overrides use the
big_vision form `train.steps=200` (from the shell: `--config.train.steps=200`). The
config is locked: a key that does not exist is an error that names it.
"""
import ast
import difflib
import importlib.util
import os
from typing import Iterable

import ml_collections


class ConfigError(ValueError):
  """A config file, variant or override that cannot be used as given."""


def load_config(spec: str, overrides: Iterable[str] = ()) -> ml_collections.ConfigDict:
  """Loads `path.py[:arg]`, calls its `get_config(arg)`, locks it and applies overrides."""
  path, _, arg = spec.partition(':')
  if not os.path.isfile(path):
    raise ConfigError(f'config file {path!r} does not exist; pass --config=experiments/<name>.py')
  module_spec = importlib.util.spec_from_file_location(
      'vision_jax_config_' + os.path.splitext(os.path.basename(path))[0], path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  if not hasattr(module, 'get_config'):
    raise ConfigError(f'config file {path!r} defines no get_config(arg=None)')
  config = module.get_config(arg or None)
  if not isinstance(config, ml_collections.ConfigDict):
    raise ConfigError(f'{path}: get_config must return an ml_collections.ConfigDict')
  config.lock()
  for override in overrides:
    apply_override(config, override)
  return config


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
