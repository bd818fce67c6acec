"""Speed, measured as ratios in one run: an experiment's train or predict step, or one op.

  python -m launch.benchmark --config=experiments/centernet_shapes.py
  python -m launch.benchmark --op=roi_align  # also nms, conv3x3, deform_conv2d, corner_pool
  python -m launch.benchmark --config=experiments/mask_rcnn_coco.py:bench --steps=5
  python -m launch.benchmark --config=experiments/yolact_coco.py:bench --steps=5
  python -m launch.benchmark --config=experiments/mask_rcnn_coco.py:bench --mode=predict
  python -m launch.benchmark --op=style_transfer --config=experiments/style_transfer.py \
      --workdir=workdirs/style   # one image: transform net vs Gatys to the same loss
  python -m launch.benchmark --suite [--families=centernet,yolact] [--steps=3]

--suite runs every experiment's :bench (else :tiny) variant on whatever backend JAX sees
(`vision_jax/benchmarks/suite.py`): compile time, train steps/s, images/s, FLOP/s and its
ratio to a large matmul's, predict images/s and the kernels that ran, one row per
experiment (skipped ones say why). It prints the Markdown table and writes suite.json and
suite.md into --output (a folder; default workdirs/benchmark_suite). --steps defaults to 3
there. The :bench variants are full-size models (up to a minute per train step on 2 CPU
cores): --variants=tiny runs only the :tiny ones.

--mode picks what an experiment's benchmark times: 'train_step' (the default) or
'predict' (the default of an experiment whose config sets `config.benchmark.mode =
'predict'`, e.g. yolact_coco:bench). Predict mode times the experiment's predict step
beside the experiment named by `config.benchmark.inference_against` (yolact_coco:bench:
YOLACT vs our Mask R-CNN at the same backbone, image size and batch, with the target
speedup `config.benchmark.target_speedup`) and torchvision's inference model
(`config.benchmark.torchvision_reference`), all on the same images, always in fresh
processes per --threads setting (`vision_jax/benchmarks/inference.py` describes the
knobs). It prints one table per pair of sides (seconds per batch, images/s, CPU use,
ratio) and whether the target was met.

Side by side with torchvision (every --op, and an experiment whose config sets
`config.benchmark.torchvision_reference = 'mask_rcnn'`), each comparison runs once per
--threads setting (default all,1), in a fresh process each: 'all' gives both sides every
core, '1' pins the process to one core with XLA and torch at one thread. It prints a
table (side, threads, seconds, CPU use, ours / torchvision's time) per setting, and
whether one thread held. The torchvision side is reported as skipped when torch and
torchvision do not import. (--op=corner_pool has no torchvision op to compare with: its
other side is plain torch, `torch.cummax`, labelled torch, and needs torch only.) A train
step without a torchvision reference runs in this process, at all threads, unless
--threads is given.

The results JSON (--output) holds, for a comparison, each setting's results under
'threads=<setting>' and the ratios under 'summary'; otherwise the flat results.
"""
import json
import os
import tempfile

from absl import flags

from vision_jax.benchmarks import torchvision_reference

# torchvision imported after TensorFlow (which the data pipeline loads) crashes: import it
# first, when it is installed.
torchvision_reference.import_error()

from launch import common  # pylint: disable=g-import-not-at-top,wrong-import-position

flags.DEFINE_string('op', None, 'Benchmark one op instead of a train step: roi_align, nms, '
                    'conv3x3, deform_conv2d or corner_pool; or style_transfer (a trained '
                    'transform net in --workdir vs Gatys\' optimisation, --config).')
flags.DEFINE_string('op_kwargs', None, 'JSON object of keyword arguments for the op case, '
                    'e.g. \'{"num_boxes": 1000}\' (see vision_jax/benchmarks/ops.py).')
flags.DEFINE_enum('mode', None, ['train_step', 'predict'], 'What an experiment\'s benchmark '
                  'times; default: config.benchmark.mode, else train_step.')
flags.DEFINE_integer('steps', 10, 'Timed train steps or predict calls per side (each on its '
                     'own batch).')
flags.DEFINE_string('threads', None, 'Thread settings, comma-separated: all (every core) '
                    'and/or a core count such as 1; each runs in a fresh process. Default: '
                    'all,1 for comparisons (with torchvision, or --mode=predict); a train '
                    'step without a reference runs in-process otherwise.')
flags.DEFINE_string('output', 'benchmark.json', 'Where to write the results (JSON); with '
                    '--suite a folder (default workdirs/benchmark_suite).')
flags.DEFINE_bool('suite', False, 'Benchmark every experiment (its :bench or :tiny variant): '
                  'one table.')
flags.DEFINE_list('families', None, 'With --suite: only experiments of these tasks, e.g. '
                  'centernet,yolact (default: all).')
flags.DEFINE_list('variants', ['bench', 'tiny'], 'With --suite: the variant each experiment '
                  'file runs, the first it has (--variants=tiny: a quick CPU run).')

SUITE_OUTPUT = 'workdirs/benchmark_suite'
SUITE_STEPS = 3


def _suite(FLAGS) -> None:
  from vision_jax.benchmarks import suite  # pylint: disable=g-import-not-at-top
  steps = FLAGS.steps if FLAGS['steps'].present else SUITE_STEPS
  output = FLAGS.output if FLAGS['output'].present else SUITE_OUTPUT
  try:
    results = suite.run(families=FLAGS.families, steps=steps, variants=FLAGS.variants)
  except ValueError as e:
    raise common.UsageError(str(e)) from e
  json_path, md_path = suite.write(results, output)
  print()
  print(suite.markdown(results))
  print(f'wrote {os.path.abspath(json_path)} and {os.path.abspath(md_path)}')


def _print_flat(results: dict) -> None:
  for key, value in results.items():
    print(f'{key:>28}: {value:.4g}' if isinstance(value, float) else f'{key:>28}: {value}')


def _compared(kind: str, by_setting: dict) -> dict:
  from vision_jax.benchmarks import compare  # pylint: disable=g-import-not-at-top
  for setting, results in by_setting.items():
    print(f'\n--- threads={setting} ---')
    _print_flat({k: v for k, v in results.items() if k != 'threads'})
  print()
  print(compare.table(kind, by_setting))
  return {'benchmark': kind, **{f'threads={s}': r for s, r in by_setting.items()},
          'summary': compare.summary(kind, by_setting)}


def main(argv):
  del argv
  FLAGS = common.FLAGS
  if FLAGS.suite:
    _suite(FLAGS)
    return
  from vision_jax.benchmarks import threads  # pylint: disable=g-import-not-at-top
  try:
    settings = threads.parse_settings(FLAGS.threads or 'all,1')
  except ValueError as e:
    raise common.UsageError(f'--threads: {e}') from e
  if FLAGS.op == 'style_transfer':  # vision_jax/benchmarks/style_transfer.py
    overrides = list(common._overrides)  # pylint: disable=protected-access
    kwargs = dict(json.loads(FLAGS.op_kwargs) if FLAGS.op_kwargs else {},
                  config_spec=FLAGS.config or 'experiments/style_transfer.py',
                  overrides=overrides, workdir=FLAGS.workdir)
    output = _compared('style_transfer', {
        s: threads.run_isolated('vision_jax.benchmarks.style_transfer:run', kwargs, s)
        for s in settings})
  elif FLAGS.op:
    from vision_jax.benchmarks import compare  # pylint: disable=g-import-not-at-top
    from vision_jax.benchmarks import ops  # pylint: disable=g-import-not-at-top
    known = sorted(ops._OPS)  # pylint: disable=protected-access
    if FLAGS.op not in known:
      raise common.UsageError(f'unknown --op={FLAGS.op}; benchmarked ops: {", ".join(known)}')
    kwargs = json.loads(FLAGS.op_kwargs) if FLAGS.op_kwargs else {}
    output = _compared(FLAGS.op, compare.run_op(FLAGS.op, settings, **kwargs))
  else:
    config = common.load_config()
    from vision_jax.benchmarks import compare  # pylint: disable=g-import-not-at-top
    compares = (config.get('benchmark') or {}).get('torchvision_reference') is not None
    overrides = list(common._overrides)  # pylint: disable=protected-access
    if compare.benchmark_mode(config, FLAGS.mode) == 'predict':
      output = _compared('predict', compare.run_predict(FLAGS.config, overrides, settings,
                                                        steps=FLAGS.steps))
    elif compares or FLAGS.threads:
      output = _compared('train_step', compare.run_train_step(
          FLAGS.config, overrides, settings, steps=FLAGS.steps, workdir=FLAGS.workdir))
    else:
      from vision_jax.benchmarks import train_step  # pylint: disable=g-import-not-at-top
      workdir = FLAGS.workdir or tempfile.mkdtemp(prefix='benchmark_')
      output = train_step.run_with_reference(config, workdir, steps=FLAGS.steps)
      _print_flat(output)
  with open(FLAGS.output, 'w') as f:
    json.dump(output, f, indent=2)
  print(f'wrote {os.path.abspath(FLAGS.output)}')


if __name__ == '__main__':
  common.run(main)
