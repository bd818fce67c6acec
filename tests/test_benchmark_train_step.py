"""The train-step benchmark on a tiny experiment: what it reports (speed is not asserted)."""
import math

from vision_jax.benchmarks import train_step
from vision_jax.train import config as config_lib


def test_reports_speed_flops_and_the_last_steps_metrics(tmp_path):
  config = config_lib.load_config('experiments/centernet_shapes.py:tiny')
  results = train_step.run(config, str(tmp_path), steps=2, pipeline_batches=2)
  for key in ('compile_s', 'train_steps_per_s', 'train_images_per_s', 'flops_per_step',
              'achieved_flops_per_s', 'matmul_flops_per_s', 'pipeline_images_per_s'):
    assert results[key] > 0, key
  assert results['batch_size'] == config.train.batch_size
  assert math.isclose(results['train_images_per_s'],
                      results['train_steps_per_s'] * config.train.batch_size)
  assert results['flops_count'].startswith('exact')  # CenterNet's step has no conditional
  # The last timed step's scalar metrics, a finite loss among them.
  assert math.isfinite(results['final_loss'])
  assert all(math.isfinite(v) for k, v in results.items() if k.startswith('final_'))
