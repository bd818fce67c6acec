"""The regression-vs-GAN toy's data: all-white or all-black targets, drawn at random.

Each example is a condition c in [0, K) and a coin `white` that came up with probability
`white_probabilities[c]`; the target image is all ones when white, all zeros when not.
The conditional distribution of the target is thus two-moded for every condition, and
its mean (what an MSE regressor converges to) is the grey level `white_probabilities[c]`,
never a real target when 0 < p < 1.

Batches are drawn by numpy from (seed, global batch index), so the stream is
deterministic, resumes at any batch and splits over processes by rows.
"""
from typing import Iterator, Sequence

import numpy as np


def bimodal_batches(white_probabilities: Sequence[float], *, batch_size: int, seed: int,
                    start_batch: int = 0, process_index: int = 0,
                    process_count: int = 1) -> Iterator[dict]:
  """Infinite stream of this process's batches.

  Args:
    white_probabilities: [K] P(white | c), each in [0, 1].
    batch_size: GLOBAL batch size (divisible by process_count).
    seed, start_batch: the stream's seed and first global batch.
    process_index, process_count: this process's rows of every global batch.
  Yields:
    {'condition': [B / P] int32, 'white': [B / P] bool}.
  """
  p = np.asarray(white_probabilities, np.float64)
  if p.ndim != 1 or not len(p) or np.any((p < 0) | (p > 1)):
    raise ValueError(f'white_probabilities={tuple(white_probabilities)}: give one '
                     'probability in [0, 1] per condition')
  if batch_size % process_count:
    raise ValueError(f'batch_size={batch_size} is not divisible by '
                     f'process_count={process_count}')
  local = batch_size // process_count
  rows = slice(process_index * local, (process_index + 1) * local)
  index = start_batch
  while True:
    rng = np.random.default_rng([seed, index])
    condition = rng.integers(0, len(p), batch_size)
    white = rng.random(batch_size) < p[condition]
    yield {'condition': condition[rows].astype(np.int32), 'white': white[rows]}
    index += 1
