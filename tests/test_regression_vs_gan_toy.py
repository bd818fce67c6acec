"""The regression-vs-GAN toy: its data stream, its scores, and the task end to end."""
import json

import numpy as np
import pytest

from tests import launcher
from vision_jax.data import bimodal_targets
from vision_jax.evaluation import bimodal

CONFIG = launcher.experiment('regression_vs_gan_toy.py', 'tiny')


def _take(n, **kwargs):
  stream = bimodal_targets.bimodal_batches((0.25, 0.5, 0.75), seed=3, **kwargs)
  return [next(stream) for _ in range(n)]


def test_stream_is_deterministic_resumable_split_and_has_the_probabilities():
  whole = _take(200, batch_size=64)
  again = _take(3, batch_size=64, start_batch=5)
  for a, b in zip(whole[5:8], again):
    np.testing.assert_array_equal(a['condition'], b['condition'])
    np.testing.assert_array_equal(a['white'], b['white'])
  halves = [_take(2, batch_size=64, process_index=i, process_count=2) for i in (0, 1)]
  for step in range(2):
    for key in ('condition', 'white'):
      np.testing.assert_array_equal(
          np.concatenate([halves[0][step][key], halves[1][step][key]]), whole[step][key])
  condition = np.concatenate([b['condition'] for b in whole])
  white = np.concatenate([b['white'] for b in whole])
  assert condition.dtype == np.int32 and set(condition) == {0, 1, 2}
  for c, p in enumerate((0.25, 0.5, 0.75)):
    assert abs(white[condition == c].mean() - p) < 0.03
  with pytest.raises(ValueError, match='white_probabilities'):
    next(bimodal_targets.bimodal_batches((0.5, 1.5), batch_size=4, seed=0))


def test_mode_scores_hand_case():
  grey = np.full((4, 2, 2, 1), 0.5)
  near = np.stack([np.full((2, 2, 1), v) for v in (0.05, 0.97, 1.0, 0.0)])
  conditions = np.array([0, 0, 1, 1])
  scores = bimodal.mode_scores(near, conditions, (0.5, 0.5))
  assert scores['mode_fraction'] == 1.0
  assert scores['mean_intensity'] == pytest.approx(np.mean([0.05, 0.97, 1.0, 0.0]))
  assert scores['white_fraction_error'] == pytest.approx(0.0)
  assert scores['conditional_mean_error'] == pytest.approx(
      np.mean([abs(0.51 - 0.5), abs(0.5 - 0.5)]))
  assert bimodal.mode_scores(grey, conditions, (0.5, 0.5))['mode_fraction'] == 0.0
  # Always white where the data is white half of the time: off by 0.5 in each condition.
  white = np.ones((4, 2, 2, 1))
  assert bimodal.mode_scores(white, conditions, (0.5, 0.5))['white_fraction_error'] == 0.5


def test_toy_trains_both_models_and_draws_conditions(tmp_path):
  workdir = tmp_path / 'work'
  code, log = launcher.launch('train', CONFIG, f'--workdir={workdir}')
  assert code == 0, log[-3000:]
  results = json.loads((workdir / 'eval_results.json').read_text())
  assert results['step'] == 600
  # Untrained (1 step, measured) both paint grey whatever the condition: mode fractions
  # 0.0, conditional means 0.17 off the data's. Trained (tiny, measured): the regressor
  # paints the conditional means (mode fraction 0.0, off by 0.006), the GAN answers with
  # modes (0.94).
  assert results['regression/mode_fraction'] <= 0.1, results
  assert results['regression/conditional_mean_error'] < 0.05, results
  assert results['gan/mode_fraction'] >= 0.8, results

  code, log = launcher.launch('predict', CONFIG, f'--workdir={workdir}', '--labels=0,2',
                              f'--output={tmp_path / "rows.png"}')
  assert code == 0, log[-3000:]
  assert (tmp_path / 'rows.png').exists()
  code, log = launcher.launch('predict', CONFIG, f'--workdir={workdir}', '--labels=5',
                              f'--output={tmp_path / "bad.png"}')
  assert code == 2 and '0..2' in log and 'Traceback' not in log, log[-2000:]
