"""Speed, measured as ratios in one run: an experiment's train step, or one op.

  python -m launch.benchmark --config=experiments/centernet_shapes.py
  python -m launch.benchmark --op=roi_align

With `config.benchmark.torchvision_reference = 'mask_rcnn'` the run also times torchvision's
train step (vision_jax/benchmarks/torchvision_reference.py) when torch and torchvision import.
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

flags.DEFINE_string('op', None, 'Benchmark one op instead of a train step (e.g. roi_align).')
flags.DEFINE_integer('steps', 10, 'Timed train steps.')
flags.DEFINE_string('output', 'benchmark.json', 'Where to write the results (JSON).')


def _torchvision_reference(config, results: dict) -> dict:
  """torchvision's step time and ours / its, when config.benchmark asks for it.

  Reads config.benchmark.torchvision_reference ('mask_rcnn'), config.data.image_size,
  config.train.batch_size, config.data.max_instances and every key of
  config.benchmark.torchvision_kwargs (passed through; they win over the three above).
  """
  benchmark = config.get('benchmark') or {}
  if benchmark.get('torchvision_reference') != 'mask_rcnn':
    return {}
  error = torchvision_reference.import_error()
  if error:
    print(f'torchvision comparison skipped: torch/torchvision not importable ({error})')
    return {'torchvision_reference': f'skipped: {error}'}
  extra = benchmark.get('torchvision_kwargs') or {}
  kwargs = dict(image_size=tuple(config.data.image_size), batch_size=config.train.batch_size,
                max_instances=config.data.max_instances)
  kwargs.update(extra.to_dict() if hasattr(extra, 'to_dict') else dict(extra))
  reference = torchvision_reference.mask_rcnn_train_step_seconds(**kwargs)
  return {
      'torchvision_seconds_per_step': reference['seconds_per_step'],
      'ratio_ours_to_torchvision_step_time':
          (1.0 / results['train_steps_per_s']) / reference['seconds_per_step'],
      'torchvision_model': reference['model'],
      'torchvision_trainable_backbone_layers': reference['trainable_backbone_layers'],
      'torchvision_backbone_norm': reference['backbone_norm'],
      'torchvision_torch_threads': reference['torch_threads'],
      'torchvision_head_rois_per_image': reference['head_rois_per_image'],
      'torchvision_box_head_rois_per_image': reference['box_head_rois_per_image'],
      'torchvision_losses_finite': reference['losses_finite'],
      'torch_version': reference['torch_version'],
      'torchvision_version': reference['torchvision_version'],
  }


def main(argv):
  del argv
  FLAGS = common.FLAGS
  if FLAGS.op:
    from vision_jax.benchmarks import ops
    results = ops.run(FLAGS.op)
  else:
    from vision_jax.benchmarks import train_step
    workdir = FLAGS.workdir or tempfile.mkdtemp(prefix='benchmark_')
    config = common.load_config()
    results = train_step.run(config, workdir, steps=FLAGS.steps)
    results.update(_torchvision_reference(config, results))
  for key, value in results.items():
    print(f'{key:>28}: {value:.4g}' if isinstance(value, float) else f'{key:>28}: {value}')
  with open(FLAGS.output, 'w') as f:
    json.dump(results, f, indent=2)
  print(f'wrote {os.path.abspath(FLAGS.output)}')


if __name__ == '__main__':
  common.run(main)
