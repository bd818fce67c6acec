"""A model's frozen dataclass config <-> an experiment's `config.model` dict.

Families whose networks are fixed by one frozen dataclass (Mask R-CNN, YOLACT) share this:

  config.model = ml_collections.ConfigDict(model_config.config_dict(
      YolactConfig, 'YOLACT', data_fields=('num_classes',), backbone='resnet18'))
  ...
  cfg = model_config.from_config_dict(YolactConfig, 'YOLACT', config.model,
                                      num_classes=source.num_classes)

Fields set from the dataset (`data_fields`, e.g. num_classes) stay out of the experiment's
dict; unknown keys are errors that list the known ones; lists (from JSON or the shell)
become tuples so the config stays hashable.
"""
import dataclasses
from typing import Any, Sequence


def _fields(cls, data_fields: Sequence[str]) -> dict[str, Any]:
  return {f.name: f.default for f in dataclasses.fields(cls) if f.name not in data_fields}


def _check_known(keys, known, family: str) -> None:
  unknown = sorted(set(keys) - set(known))
  if unknown:
    raise ValueError(f'unknown {family} model keys {unknown}; known: {sorted(known)}')


def config_dict(cls, family: str, *, data_fields: Sequence[str] = ('num_classes',),
                **overrides) -> dict:
  """Every field of dataclass `cls` an experiment sets, at its default, with overrides.

  Experiment configs start from this so that any field can be overridden from the shell.
  """
  values = _fields(cls, data_fields)
  _check_known(overrides, values, family)
  values.update(overrides)
  return values


def _tuples(value):
  if isinstance(value, list):
    return tuple(_tuples(v) for v in value)
  return value


def from_config_dict(cls, family: str, model_config, *,
                     data_fields: Sequence[str] = ('num_classes',), **data_values):
  """A `cls` instance from an experiment's `config.model` plus the dataset's values.

  Args:
    cls: the frozen config dataclass.
    family: its name in error messages.
    model_config: mapping of fields (unknown keys raise ValueError).
    data_fields: fields that come from the dataset, never from `model_config`.
    **data_values: values of (some of) `data_fields`; None leaves the dataclass default.
  """
  values = {key: _tuples(value) for key, value in dict(model_config).items()}
  _check_known(values, _fields(cls, data_fields), family)
  values.update({key: value for key, value in data_values.items() if value is not None})
  return cls(**values)
