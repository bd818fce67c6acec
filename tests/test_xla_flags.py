"""vision_jax.xla_flags: defaults added once, the user's flags win, XLA accepts them."""
import os
import subprocess
import sys

from vision_jax import xla_flags

MEASURED = xla_flags.MEASURED_JAXLIB[0]


def test_adds_the_cpu_defaults_to_xla_flags():
  environ = {'XLA_FLAGS': '--xla_force_host_platform_device_count=2'}
  added = xla_flags.apply_defaults(environ, jaxlib_version=MEASURED)
  assert added == [f'--{name}={value}' for name, value in xla_flags.CPU_DEFAULTS]
  assert environ['XLA_FLAGS'].split() == ['--xla_force_host_platform_device_count=2', *added]
  assert xla_flags.apply_defaults(environ, jaxlib_version=MEASURED) == []  # only once


def test_a_flag_the_user_set_wins():
  name = xla_flags.CPU_DEFAULTS[0][0]
  environ = {'XLA_FLAGS': f'--{name}=individual_dot'}
  assert xla_flags.apply_defaults(environ, jaxlib_version=MEASURED) == []
  assert environ['XLA_FLAGS'] == f'--{name}=individual_dot'


def test_nothing_for_a_jaxlib_the_flags_were_not_measured_with():
  environ = {}
  assert xla_flags.apply_defaults(environ, jaxlib_version=(99, 0)) == []
  assert 'XLA_FLAGS' not in environ


def test_this_jaxlib_runs_with_the_defaults():
  """XLA aborts on unknown flags: a fresh process with the defaults must compute."""
  code = ('from vision_jax import xla_flags; import os; added = xla_flags.apply_defaults(); '
          'import jax.numpy as jnp; x = jnp.ones((64, 64)); '
          'print(float((x @ x).sum()), bool(added) or "XLA_FLAGS" in os.environ)')
  env = {k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'}
  out = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True, text=True,
                       timeout=120, check=False)
  assert out.returncode == 0, out.stderr[-2000:]
  assert out.stdout.split()[0] == str(64.0**3)
