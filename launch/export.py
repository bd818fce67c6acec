"""Serialise a trained checkpoint's functions with jax.export, parameters included.

  python -m launch.export --config=experiments/centernet_shapes.py \
      --workdir=workdirs/centernet_shapes --output=exported/centernet_shapes

Writes <name>.jax_exported per function and manifest.json into --output; a process with
only jax and numpy runs them (`vision_jax/train/export.py` describes the format).
"""
from absl import flags

from launch import common
from vision_jax.train import export

flags.DEFINE_string('output', None, 'Directory to write the export into (new or empty).')
flags.DEFINE_integer('step', None, 'Checkpoint step (default: newest).')
flags.DEFINE_bool('overwrite', False, 'Replace an earlier export in --output.')
flags.DEFINE_list('platforms', None, 'Lower for these platforms (cpu, cuda, rocm, tpu); '
                  'default: cpu and the default backend\'s.')
flags.mark_flags_as_required(['config', 'workdir', 'output'])


def main(argv):
  del argv
  FLAGS = common.FLAGS
  try:
    manifest = export.export_workdir(
        common.load_config(), FLAGS.workdir, FLAGS.output, step=FLAGS.step,
        overwrite=FLAGS.overwrite, platforms=FLAGS.platforms, config_name=FLAGS.config)
  except export.ExportError as e:
    raise common.UsageError(str(e)) from e
  for name, entry in manifest['functions'].items():
    inputs = ', '.join(f'{i["name"]} {i["dtype"]}{i["shape"]}' for i in entry['inputs'])
    print(f'wrote {FLAGS.output}/{entry["file"]} ({name}({inputs}); step '
          f'{manifest["step"]}; platforms {",".join(entry["platforms"])})')
  for platform, why in manifest['skipped_platforms'].items():
    print(f'not exported for {platform}: {why}')


if __name__ == '__main__':
  common.run(main)
