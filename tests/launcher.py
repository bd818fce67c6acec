"""Runs a launcher (`python -m launch.<module>`) in a subprocess, as a user would; and
`predict`, launch.predict's work in this process (its flags are checked once by a
launched run, in tests/test_centernet_end_to_end.py; a subprocess costs imports and a
checkpoint restore, several seconds each in CI)."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def experiment(name: str, variant: str | None = None) -> str:
  """The --config value of experiments/<name>[:variant]."""
  path = os.path.join(ROOT, 'experiments', name)
  return f'{path}:{variant}' if variant else path


# Runs a module as `python -m` does, then prints which of the named modules it imported.
_REPORTING = """import runpy, sys
try:
  runpy.run_module({module!r}, run_name='__main__', alter_sys=True)
finally:
  print('imported:', ' '.join(f'{{name}}={{name in sys.modules}}' for name in {names!r}))
"""


def launch(module: str, config: str, *args, data_dir=None, timeout: int = 900,
           report_modules=()) -> tuple[int, str]:
  """(exit code, stdout + stderr) of `python -m launch.<module> --config=... args`.

  With `report_modules` (e.g. ['tensorflow']) the output ends with a line
  `imported: tensorflow=False ...` saying which of them the run imported.
  """
  if report_modules:
    code = _REPORTING.format(module=f'launch.{module}', names=list(report_modules))
    command = [sys.executable, '-c', code, f'--config={config}']
  else:
    command = [sys.executable, '-m', f'launch.{module}', f'--config={config}']
  if data_dir is not None:
    command.append(f'--config.data.data_dir={data_dir}')
  out = subprocess.run(command + [str(a) for a in args], cwd=ROOT, capture_output=True,
                       text=True, timeout=timeout)
  return out.returncode, out.stdout + out.stderr


def predict(config: str, workdir, output, *, image=None, labels=None, data_dir=None) -> dict:
  """`launch.predict --config=config --workdir --image|--labels --output` in this
  process: the call the launcher makes (`predict.predict_file`). Returns its predictions."""
  # pylint: disable=g-import-not-at-top
  from vision_jax.train import config as config_lib
  from vision_jax.train import predict as predict_lib
  overrides = [] if data_dir is None else [f'data.data_dir={data_dir}']
  return predict_lib.predict_file(config_lib.load_config(config, overrides), str(workdir),
                                  str(output), image_path=None if image is None else str(image),
                                  labels=labels)
