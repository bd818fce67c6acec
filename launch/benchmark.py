"""Speed, measured as ratios in one run: an experiment's train step, or one op.

  python -m launch.benchmark --config=experiments/centernet_shapes.py
  python -m launch.benchmark --op=roi_align
"""
import json
import os
import tempfile

from absl import flags

from launch import common

flags.DEFINE_string('op', None, 'Benchmark one op instead of a train step (e.g. roi_align).')
flags.DEFINE_integer('steps', 10, 'Timed train steps.')
flags.DEFINE_string('output', 'benchmark.json', 'Where to write the results (JSON).')


def main(argv):
  del argv
  FLAGS = common.FLAGS
  if FLAGS.op:
    from vision_jax.benchmarks import ops
    results = ops.run(FLAGS.op)
  else:
    from vision_jax.benchmarks import train_step
    workdir = FLAGS.workdir or tempfile.mkdtemp(prefix='benchmark_')
    results = train_step.run(common.load_config(), workdir, steps=FLAGS.steps)
  for key, value in results.items():
    print(f'{key:>28}: {value:.4g}' if isinstance(value, float) else f'{key:>28}: {value}')
  with open(FLAGS.output, 'w') as f:
    json.dump(results, f, indent=2)
  print(f'wrote {os.path.abspath(FLAGS.output)}')


if __name__ == '__main__':
  common.run(main)
