"""Runs a launcher (`python -m launch.<module>`) in a subprocess, as a user would."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def experiment(name: str, variant: str | None = None) -> str:
  """The --config value of experiments/<name>[:variant]."""
  path = os.path.join(ROOT, 'experiments', name)
  return f'{path}:{variant}' if variant else path


def launch(module: str, config: str, *args, data_dir=None, timeout: int = 900
           ) -> tuple[int, str]:
  """(exit code, stdout + stderr) of `python -m launch.<module> --config=... args`."""
  command = [sys.executable, '-m', f'launch.{module}', f'--config={config}']
  if data_dir is not None:
    command.append(f'--config.data.data_dir={data_dir}')
  out = subprocess.run(command + [str(a) for a in args], cwd=ROOT, capture_output=True,
                       text=True, timeout=timeout)
  return out.returncode, out.stdout + out.stderr
