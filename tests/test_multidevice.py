"""One train step on 1 CPU device and on 4 fake CPU devices gives the same result."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# One process with 4 fake devices trains one step on a mesh of its first device, then one
# on a mesh of all 4 (a second process for the 1-device run cost CI time for its start,
# imports and data pipeline). Each run initialises its own state from the config's seed.
_SCRIPT = r'''
import json, sys, tempfile
import jax, numpy as np
from vision_jax.train import config as config_lib, loop, mesh as mesh_lib
config = config_lib.load_config(sys.argv[1], sys.argv[2:])
all_devices = mesh_lib.make_mesh


def first_device():
  return jax.make_mesh((1,), (mesh_lib.DATA_AXIS,), devices=jax.devices()[:1],
                       axis_types=(jax.sharding.AxisType.Auto,))


runs, task = {}, None
for name, make_mesh in (('one', first_device), ('four', all_devices)):
  mesh_lib.make_mesh = make_mesh  # read by loop.Trainer
  trainer = loop.Trainer(config, tempfile.mkdtemp(), task=task)
  task = trainer.task
  state, _ = trainer.initial_state()
  batch = next(task.train_data(start_batch=0, process_index=0, process_count=1))
  state, metrics = trainer.train_step(
      state, mesh_lib.shard_batch(batch, trainer.data_sharding), jax.random.key(1))
  leaves = [np.asarray(x, np.float64) for x in jax.tree.leaves(state)]
  runs[name] = {'devices': len(jax.tree.leaves(state.params)[0].sharding.device_set),
                'process_devices': jax.device_count(),
                'metrics': {k: float(v) for k, v in metrics.items()},
                'state_abs_sum': [float(np.abs(x).sum()) for x in leaves]}
print(json.dumps(runs))
'''


@pytest.mark.slow(seconds=54)
def test_train_step_on_one_and_four_devices_agree(tmp_path):
  config = os.path.join(ROOT, 'experiments', 'centernet_shapes.py') + ':tiny'
  overrides = ['train.batch_size=8', f'data.data_dir={tmp_path}']
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=4',
             JAX_PLATFORMS='cpu')
  out = subprocess.run([sys.executable, '-c', _SCRIPT, config, *overrides], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  runs = json.loads(out.stdout.strip().splitlines()[-1])
  one, four = runs['one'], runs['four']
  assert (one['devices'], four['devices']) == (1, 4) and four['process_devices'] == 4
  assert set(one['metrics']) == set(four['metrics'])
  for name in one['metrics']:
    np.testing.assert_allclose(four['metrics'][name], one['metrics'][name], rtol=1e-5,
                               err_msg=name)
  np.testing.assert_allclose(four['state_abs_sum'], one['state_abs_sum'], rtol=1e-5)
