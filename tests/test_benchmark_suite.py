"""The benchmark suite: which variant each experiment file gives, skips, and what a row
reports (speed itself is not asserted)."""
import json
import os
import textwrap

import jax
import pytest

from vision_jax.benchmarks import suite

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPERIMENTS = os.path.join(ROOT, 'experiments')

# A config file whose :tiny variant reads a catalog dataset (not embedded).
CATALOG_TINY = textwrap.dedent('''
    import os
    from vision_jax.train import config as config_lib

    def get_config(arg=None):
      shapes = config_lib.load_module(os.path.join({experiments!r}, 'centernet_shapes.py'))
      config = shapes.get_config(arg)
      if arg == 'tiny':
        config.data.dataset = 'coco/2017'
      return config
''')


def test_variants_bench_then_tiny_and_ignored_variants_do_not_count():
  spec, config, reason = suite.pick_variant(os.path.join(EXPERIMENTS, 'mask_rcnn_coco.py'))
  assert spec.endswith('mask_rcnn_coco.py:bench') and reason is None
  spec, config, reason = suite.pick_variant(os.path.join(EXPERIMENTS, 'yolact_shapes.py'))
  assert spec.endswith('yolact_shapes.py:tiny') and config.task == 'yolact'
  # centernet_coco.py returns its default config whatever the variant.
  spec, config, reason = suite.pick_variant(os.path.join(EXPERIMENTS, 'centernet_coco.py'))
  assert spec is None and config.task == 'centernet' and 'no :bench or :tiny' in reason


def test_suite_rows_json_and_table(tmp_path):
  experiments = tmp_path / 'experiments'
  experiments.mkdir()
  (experiments / 'centernet_catalog.py').write_text(
      CATALOG_TINY.format(experiments=EXPERIMENTS))
  (experiments / 'toy.py').symlink_to(os.path.join(EXPERIMENTS, 'regression_vs_gan_toy.py'))
  with pytest.raises(ValueError, match='no experiment has that task'):
    suite.run(str(experiments), families=['nope'], steps=1)

  # RBG keys: XLA:CPU compiles threefry per parameter shape of the jit'd init (CI time).
  with jax.default_prng_impl('rbg'):
    results = suite.run(str(experiments), steps=1)
  rows = {row['experiment']: row for row in results['rows']}
  assert set(rows) == {'centernet_catalog.py:tiny', 'toy.py:tiny'}
  skipped, row = rows['centernet_catalog.py:tiny'], rows['toy.py:tiny']
  assert skipped['status'] == 'skipped' and skipped['family'] == 'centernet'
  assert 'needs prepared data (coco/2017)' in skipped['note']

  head = results['header']
  assert head['backend'] == jax.default_backend() and head['matmul_flops_per_s'] > 0
  assert row['status'] == 'ok', row['note']
  assert row['family'] == 'regression_vs_gan_toy'
  assert row['kernels'] == ('cpu' if jax.default_backend() == 'cpu' else 'plain')
  for key in ('compile_s', 'train_steps_per_s', 'train_images_per_s', 'flops_per_step',
              'achieved_flops_per_s', 'ratio_to_matmul', 'predict_images_per_s'):
    assert row[key] > 0, key
  assert row['ratio_to_matmul'] == pytest.approx(
      row['achieved_flops_per_s'] / head['matmul_flops_per_s'])
  assert row['train_images_per_s'] == pytest.approx(
      row['train_steps_per_s'] * row['batch_size'])
  assert row['predict_finite'] and row['timed_steps'] == 1
  # The toy has no evaluation batches: its example prediction batch, repeated.
  assert row['predict_inputs'].startswith('the example')

  json_path, md_path = suite.write(results, str(tmp_path / 'out'))
  assert json.loads(open(json_path).read()) == json.loads(json.dumps(results))
  table = open(md_path).read()
  assert f"{head['matmul_size']}x{head['matmul_size']} f32" in table
  assert '| ' + ' | '.join(suite.COLUMNS) + ' |' in table
  (line,) = [l for l in table.splitlines() if l.startswith('| regression_vs_gan_toy')]
  cells = line.split(' | ')
  assert len(cells) == len(suite.COLUMNS) and '—' not in cells[4:12]
  assert any(l.startswith('| centernet') and 'skipped: needs prepared data' in l
             for l in table.splitlines())


def test_predict_batches_come_from_evaluation_batches_when_they_hold_the_inputs():
  from vision_jax.tasks import base  # pylint: disable=g-import-not-at-top
  from vision_jax.train import config as config_lib  # pylint: disable=g-import-not-at-top
  config = config_lib.load_config(os.path.join(EXPERIMENTS, 'centernet_shapes.py') + ':tiny')
  task = base.create_task(config)
  batches, source = suite.predict_batches(task, config, 2)
  example = task.prediction_batch(task.example_prediction_request())
  assert source == 'evaluation batches' and len(batches) == 2
  assert set(batches[0]) == set(example)
  assert batches[0]['image'].shape == (config.eval.batch_size, *example['image'].shape[1:])
