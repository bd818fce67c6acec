"""Two processes (jax.distributed on loopback, 2 CPU devices each) train as one 4-device run.

Each process reads its share of every global batch, the train steps all-reduce over
both, checkpoints are written together and the evaluation gathers predictions from
both. The parameters must equal those of one process with 4 devices up to float rounding,
as the cross-process reduction (gloo) adds in another order. The comparison trains
with SGD: Adam divides by the gradients' own magnitude, which turns rounding
differences of near-zero gradients into visible parameter differences. Rounding
still grows about 50x per step, also with the L1 losses off (likely where a gradient
jumps, as at a ReLU or the focal loss's clipped probabilities, and a value rounds to
the other side of it): measured at learning rate 0.005, 0 after step 1, 2e-7 after step 2,
1e-5 after step 4, at most 8% of how far steps 3 and 4 moved each tensor. So the
checkpoint of step 2 is compared to rounding and the final one against the size of
the updates between them.
"""
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, 'experiments', 'centernet_shapes.py') + ':tiny'

_SCRIPT = r'''
import json, os, sys
process_id, num_processes, port, workdir, output = sys.argv[1:6]
overrides = sys.argv[6:]
import jax
if int(num_processes) > 1:
  jax.distributed.initialize(coordinator_address=f'127.0.0.1:{port}',
                             num_processes=int(num_processes), process_id=int(process_id))
import numpy as np
from vision_jax.train import config as config_lib, loop
config = config_lib.load_config(os.environ['CONFIG'], overrides)
results = loop.train_and_evaluate(config, workdir)
trainer = loop.Trainer(config, workdir)
# Parameters are replicated: any local copy is the value.
params = {step: [np.asarray(x.addressable_shards[0].data)
                 for x in jax.tree.leaves(trainer.restore(step).params)] for step in (2, 4)}
latest = trainer.checkpoints.latest_step()
trainer.checkpoints.close()
if jax.process_index() == 0:
  for step, leaves in params.items():
    np.savez(f'{output}.{step}.npz', *leaves)
  with open(output + '.json', 'w') as f:
    json.dump({'results': results, 'step': latest,
               'devices': [jax.process_count(), jax.device_count()]}, f)
'''


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _start(process_id, num_processes, devices_per_process, port, workdir, output, overrides):
  # Without the session's compilation cache (tests/conftest.py): a program compiled for
  # one process set must not be loaded by another.
  env = {k: v for k, v in os.environ.items() if k != 'JAX_COMPILATION_CACHE_DIR'}
  env.update(CONFIG=CONFIG, JAX_PLATFORMS='cpu',
             XLA_FLAGS=f'--xla_force_host_platform_device_count={devices_per_process}')
  return subprocess.Popen(
      [sys.executable, '-c', _SCRIPT, str(process_id), str(num_processes), str(port),
       str(workdir), str(output), *overrides],
      cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait(processes):
  logs = []
  for process in processes:
    try:
      out, _ = process.communicate(timeout=900)
    except subprocess.TimeoutExpired:
      for p in processes:
        p.kill()
      raise
    logs.append(out)
  for process, log in zip(processes, logs):
    assert process.returncode == 0, log[-4000:]


# Extended tier: one process of 4 devices is checked by default (tests/test_multidevice.py).
@pytest.mark.extended
@pytest.mark.slow(seconds=93)
def test_two_processes_of_two_devices_equal_one_process_of_four(tmp_path):
  overrides = ['train.steps=4', 'train.checkpoint_every=2', 'train.log_every=2',
               'optimizers.model.name=sgd', 'optimizers.model.learning_rate=0.005',
               f'data.data_dir={tmp_path / "tfds"}']
  single = tmp_path / 'single'
  _wait([_start(0, 1, 4, 0, tmp_path / 'single', single, overrides)])
  port = _free_port()
  double = tmp_path / 'double'
  _wait([_start(i, 2, 2, port, tmp_path / 'double', double, overrides) for i in range(2)])

  one = json.loads((tmp_path / 'single.json').read_text())
  two = json.loads((tmp_path / 'double.json').read_text())
  assert one['devices'] == [1, 4] and two['devices'] == [2, 4]
  assert one['step'] == two['step'] == 4
  # Both wrote one set of checkpoints and evaluated the whole validation split.
  assert sorted(os.listdir(tmp_path / 'double' / 'checkpoints')) == ['2', '4']
  assert set(one['results']) == set(two['results']) and 'box/AP' in two['results']
  truth = json.loads((tmp_path / 'double' / 'coco_ground_truth.json').read_text())
  assert len(truth['images']) == 16  # the tiny validation split, gathered from both
  a2, b2 = np.load(f'{single}.2.npz'), np.load(f'{double}.2.npz')
  a4, b4 = np.load(f'{single}.4.npz'), np.load(f'{double}.4.npz')
  assert a2.files == b2.files == a4.files == b4.files and len(a2.files) > 10
  for key in a2.files:
    np.testing.assert_allclose(b2[key], a2[key], rtol=1e-5, atol=1e-5, err_msg=key)
  # Steps 3 and 4 moved every tensor; the two runs differ by a small part of that move.
  for key in a4.files:
    update = np.abs(a4[key] - a2[key]).max()
    assert update > 0, key
    assert np.abs(b4[key] - a4[key]).max() <= 0.5 * update, key
