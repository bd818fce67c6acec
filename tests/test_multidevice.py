"""One train step on 1 CPU device and on 4 fake CPU devices gives the same result."""
import json
import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_SCRIPT = r'''
import json, sys, tempfile
import jax, numpy as np
from vision_jax.train import config as config_lib, loop, mesh as mesh_lib
config = config_lib.load_config(sys.argv[1], sys.argv[2:])
trainer = loop.Trainer(config, tempfile.mkdtemp())
state, _ = trainer.initial_state()
batch = next(trainer.task.train_data(start_batch=0, process_index=0, process_count=1))
state, metrics = trainer.train_step(
    state, mesh_lib.shard_batch(batch, trainer.data_sharding), jax.random.key(1))
leaves = [np.asarray(x, np.float64) for x in jax.tree.leaves(state)]
print(json.dumps({'devices': jax.device_count(),
                  'metrics': {k: float(v) for k, v in metrics.items()},
                  'state_abs_sum': [float(np.abs(x).sum()) for x in leaves]}))
'''


def _one_step(devices: int, config: str, overrides: list[str]) -> dict:
  env = dict(os.environ, XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}',
             JAX_PLATFORMS='cpu')
  out = subprocess.run([sys.executable, '-c', _SCRIPT, config, *overrides], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  return json.loads(out.stdout.strip().splitlines()[-1])


def test_train_step_on_one_and_four_devices_agree(tmp_path):
  config = os.path.join(ROOT, 'experiments', 'centernet_shapes.py') + ':tiny'
  overrides = ['train.batch_size=8', f'data.data_dir={tmp_path}']
  one = _one_step(1, config, overrides)
  four = _one_step(4, config, overrides)
  assert (one['devices'], four['devices']) == (1, 4)
  assert set(one['metrics']) == set(four['metrics'])
  for name in one['metrics']:
    np.testing.assert_allclose(four['metrics'][name], one['metrics'][name], rtol=1e-5,
                               err_msg=name)
  np.testing.assert_allclose(four['state_abs_sum'], one['state_abs_sum'], rtol=1e-5)
