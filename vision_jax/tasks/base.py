"""What a model family provides to the generic trainer.

A task owns its state layout (one or several models and optimizers), its steps and its
data; the trainer in `vision_jax.train` only calls the methods below. Every
`vision_jax.tasks.<name>` module exposes `create(config) -> Task`, found by name from
`config.task`.
"""
import abc
import importlib
from typing import Any, Iterable, Iterator

import numpy as np


class Evaluator(abc.ABC):
  """Accumulates predictions over an evaluation split and scores them."""

  @abc.abstractmethod
  def add(self, batch: dict, predictions: dict) -> None:
    """batch: host numpy batch (with `example_valid`); predictions: numpy outputs."""

  @abc.abstractmethod
  def evaluate(self) -> dict[str, float]:
    """Flat metrics, e.g. {'box/AP': 0.61, ...}."""

  def write(self, workdir: str) -> None:
    """Writes result files into workdir (default: nothing beyond the metrics)."""


class Task(abc.ABC):
  """One family's plug-in: state, steps, data and evaluation."""

  def __init__(self, config):
    self.config = config

  @abc.abstractmethod
  def init_state(self, rng, total_steps: int) -> Any:
    """A fresh state pytree with a scalar int `step` field (pure; jit-able)."""

  @abc.abstractmethod
  def train_step(self, state, batch: dict, rng) -> tuple[Any, dict]:
    """One optimizer step (pure; the trainer jits it). metrics must hold a scalar 'loss'."""

  @abc.abstractmethod
  def train_data(self, *, start_batch: int, process_index: int,
                 process_count: int) -> Iterator[dict]:
    """Infinite, deterministic stream of this process's numpy batches from `start_batch`."""

  def eval_data(self, *, process_index: int, process_count: int) -> Iterable[dict] | None:
    """One pass over the evaluation split (static shapes), or None for no evaluation."""
    return None

  def predict_step(self, state, batch: dict) -> dict:
    """Predictions for a batch (pure; jitted)."""
    raise NotImplementedError(f'{type(self).__name__} has no predict_step')

  def make_evaluator(self) -> Evaluator | None:
    return None

  def draw_predictions(self, batch: dict, predictions: dict) -> np.ndarray | None:
    """[N, H, W, 3] uint8 pictures of predictions on a batch, or None."""
    return None


def create_task(config) -> Task:
  """Imports `vision_jax.tasks.<config.task>` and calls its `create(config)`."""
  name = config.task
  try:
    module = importlib.import_module(f'vision_jax.tasks.{name}')
  except ModuleNotFoundError as e:
    if e.name != f'vision_jax.tasks.{name}':
      raise
    raise ValueError(f'config.task={name!r}: there is no module vision_jax/tasks/{name}.py') from e
  return module.create(config)
