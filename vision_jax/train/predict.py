"""Predict on one image file with a trained checkpoint and draw the result."""
import jax
import numpy as np

from vision_jax.data import single_image
from vision_jax.train import loop
from vision_jax.viz import grid


def predict_file(config, workdir: str, image_path: str, output_path: str,
                 step: int | None = None) -> dict:
  """Runs the task's predict_step on `image_path`; writes the drawn picture to output_path.

  Returns the numpy predictions (boxes in input pixels of the resized image).
  """
  image = single_image.read_image(image_path)
  batch = single_image.image_batch(image, tuple(config.data.image_size))
  trainer = loop.Trainer(config, workdir)
  try:
    state = trainer.restore(step)
  finally:
    trainer.checkpoints.close()
  # One image does not split over a data-parallel mesh: run it unsharded.
  predictions = jax.device_get(jax.jit(trainer.task.predict_step)(state, batch))
  picture = trainer.task.draw_predictions(batch, predictions)[0]
  h, w = (np.round(batch['orig_size'][0] * batch['scale'][0])).astype(int)
  upscale = picture.shape[0] // batch['image'].shape[1]
  grid.save_png(output_path, picture[:h * upscale, :w * upscale])
  return predictions
