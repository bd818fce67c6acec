"""The per-batch evaluator interface that a task's default evaluation feeds.

  for batch in eval_data:
    evaluator.add(batch, predictions)        # host numpy, whole global batch
  metrics = evaluator.evaluate()             # {'box/AP': 0.61, ...}
  evaluator.write(workdir)                   # its own files (not eval_results.json)

`prediction_keys` / `batch_keys` name the fields `add` reads: the trainer moves only
those from the devices (and across processes) to the host.
"""
import abc
from typing import Sequence


class Evaluator(abc.ABC):
  """Accumulates predictions over an evaluation split and scores them."""

  # Prediction / batch keys `add` reads (None: all).
  prediction_keys: Sequence[str] | None = None
  batch_keys: Sequence[str] | None = None

  @abc.abstractmethod
  def add(self, batch: dict, predictions: dict) -> None:
    """batch: host numpy batch (with `example_valid`); predictions: numpy outputs."""

  @abc.abstractmethod
  def evaluate(self) -> dict[str, float]:
    """Flat metrics with stable names, e.g. {'box/AP': 0.61, ...}."""

  def write(self, workdir: str) -> None:
    """Writes the evaluator's own result files into workdir (not eval_results.json)."""
