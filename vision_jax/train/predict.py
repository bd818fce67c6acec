"""Predict with a trained checkpoint from what the user gives, and draw the result.

What is given depends on the family: an image file for detection, class labels for a
class-conditional generator. The task turns the request into a batch of its contract
(`Task.prediction_batch`) and draws the picture (`Task.draw_prediction`).
"""
from typing import Sequence

import jax

from vision_jax.data import single_image
from vision_jax.train import loop
from vision_jax.viz import grid


def predict_file(config, workdir: str, output_path: str, *, image_path: str | None = None,
                 labels: Sequence[int] | None = None, step: int | None = None) -> dict:
  """Runs the task's predict_step on the request; writes the drawn picture to output_path.

  Args:
    config: the experiment config.
    workdir: holds the checkpoints.
    output_path: the PNG to write.
    image_path: an image file (detection tasks).
    labels: class labels (class-conditional generators).
    step: the checkpoint step (default: newest).
  Returns:
    The numpy predictions (detection boxes in input pixels of the letterboxed image).
  Raises:
    PredictionRequestError: the task needs another input, or a label is out of range.
    ImageReadError, CheckpointError: as their names say.
  """
  request = {'image': single_image.read_image(image_path) if image_path else None,
             'labels': None if labels is None else list(labels)}
  trainer = loop.Trainer(config, workdir)
  batch = trainer.task.prediction_batch(request)  # Input errors before any restore.
  try:
    loop.log_config_differences(workdir, config)
    state = trainer.restore(step)
  finally:
    trainer.checkpoints.close()
  # One request does not split over a data-parallel mesh: run it unsharded.
  predictions = jax.device_get(jax.jit(trainer.task.predict_step)(state, batch))
  grid.save_png(output_path, trainer.task.draw_prediction(batch, predictions))
  return predictions
