"""Scores of outputs whose real answers are all-black or all-white images (the
regression-vs-GAN toy, `vision_jax.data.bimodal_targets`)."""
from typing import Sequence

import numpy as np


def mode_distance(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """[N, ...] values in [0, 1] -> (distance [N], white [N] bool).

  distance: the mean absolute difference between an image and the nearer real answer
  (all zeros or all ones); white: whether that answer is the all-ones one.
  """
  flat = np.asarray(images, np.float64).reshape(len(images), -1)
  to_black = np.mean(np.abs(flat), axis=1)
  to_white = np.mean(np.abs(flat - 1.0), axis=1)
  return np.minimum(to_black, to_white), to_white < to_black


def mode_scores(images: np.ndarray, conditions: np.ndarray,
                white_probabilities: Sequence[float], *, tolerance: float = 0.1) -> dict:
  """How real-looking outputs are, and whether they pick the modes as often as the data.

  Args:
    images: [N, ...] outputs in [0, 1].
    conditions: [N] int, the condition each output was asked for.
    white_probabilities: [K] the data's P(white | c).
    tolerance: an output is "at a mode" when its mean absolute distance to the
      all-black or the all-white image is at most this.
  Returns:
    mode_fraction: the fraction of outputs at a mode;
    mean_intensity: the mean output value (the data's is mean P(white | c));
    white_fraction_error: mean over conditions of |fraction of outputs nearer white
      - P(white | c)|: 0 when the modes are picked as often as in the data;
    conditional_mean_error: mean over conditions of |mean output - P(white | c)|: 0 for
      the conditional mean (what MSE regression learns), and for the data itself.
  """
  distance, white = mode_distance(images)
  conditions = np.asarray(conditions)
  p = np.asarray(white_probabilities, np.float64)
  present = [c for c in range(len(p)) if np.any(conditions == c)]
  means = np.asarray(images, np.float64).reshape(len(images), -1).mean(axis=1)
  return {'mode_fraction': float(np.mean(distance <= tolerance)),
          'mean_intensity': float(np.mean(images)),
          'white_fraction_error': float(np.mean(
              [abs(np.mean(white[conditions == c]) - p[c]) for c in present])),
          'conditional_mean_error': float(np.mean(
              [abs(np.mean(means[conditions == c]) - p[c]) for c in present]))}
