"""Serialise a trained task's functions with `jax.export`, parameters included.

  python -m launch.export --config=experiments/centernet_shapes.py \
      --workdir=workdirs/centernet_shapes --output=exported/centernet_shapes

The functions come from the task (`Task.export_functions(state)`; default: one,
'predict', the task's `predict_step` on a batch of `launch.predict`'s contract). Each is
traced with the parameters of the restored checkpoint closed over, so they are embedded
in the artifact as constants (a Mask R-CNN R50-FPN: 44M parameters, 177 MB, exported in
a few seconds), and written as

  DIR/<name>.jax_exported   the bytes of `jax.export.Exported.serialize()`
  DIR/manifest.json         what the functions take and return (below)

A process that imports only jax and numpy runs them, on any backend the manifest lists:

  import jax, numpy as np
  exp = jax.export.deserialize(open('DIR/predict.jax_exported', 'rb').read())
  out = exp.call({'image': image})  # image: [1, H, W, 3] uint8, letterboxed
  # out: {'boxes': [1, K, 4], 'classes': [1, K], 'scores': [1, K], 'valid': [1, K]}

Arguments and results are plain pytrees (dicts with string keys, lists, tuples of
arrays), so calling needs no registration of vision_jax types. Top-level keys of a dict
argument that the function never reads are left out of the signature (CenterNet's
'predict' takes {'image'} only, Mask R-CNN's {'image', 'orig_size', 'scale'}).

manifest.json:
  format               'vision_jax.export/1'
  task, config_name    config.task and the --config it was exported with
  config               the whole config (plain JSON)
  workdir, step        where the checkpoint came from (None: a state exported from
                       memory, `export_state`), and the state's step
  jax_version, jaxlib_version, kernels ('cpu' | 'plain': the ones traced,
                       `vision_jax.ops.backend`), platforms (lowered for),
  skipped_platforms    {platform: why} for requested platforms that did not lower
  functions            {name: {file, args (names of the positional arguments),
                        in_structure (one per argument: the pytree with each leaf
                        replaced by its index in `inputs`), inputs ([{name, shape,
                        dtype}] in the flat order of jax's flattening: dict keys
                        sorted), out_structure, outputs (the same for the result),
                        platforms, calling_convention_version}}

An output folder that is not empty is refused unless `overwrite`, which replaces the
manifest and the .jax_exported files (and removes those its previous manifest named and
the new one does not); other files there are kept.

Kernels are chosen at trace time (`config.kernels`; 'auto' picks them by the exporting
machine's backend) and are the same on every platform of one artifact: both kinds
compute the same function, the CPU-tuned ones are only slower on an accelerator, so to
export for GPU / TPU from a CPU machine pass --config.kernels=plain.
"""
import json
import os
import re
from typing import Any, Sequence

from absl import logging
import jax
import jaxlib
import jax.numpy as jnp
import numpy as np

from vision_jax.ops import backend
from vision_jax.tasks import base as tasks_base
from vision_jax.train import checkpoint as checkpoint_lib
from vision_jax.train import config as config_lib
from vision_jax.train import loop

FORMAT = 'vision_jax.export/1'
MANIFEST = 'manifest.json'
SUFFIX = '.jax_exported'
PLATFORMS = ('cpu', 'cuda', 'rocm', 'tpu')


class ExportError(ValueError):
  """An export that cannot be made as asked (output folder in use, task without one)."""


def default_platforms() -> list[str]:
  """'cpu' and the platform of the default backend ('cuda', 'rocm', 'tpu'), if another."""
  current = jax.export.default_export_platform()
  return ['cpu'] + ([current] if current != 'cpu' else [])


def check_platforms(platforms: Sequence[str] | None) -> list[str]:
  """The platforms to lower for (default: `default_platforms()`); 'cpu' always."""
  platforms = list(platforms or default_platforms())
  if any(p not in PLATFORMS for p in platforms) or 'cpu' not in platforms:
    raise ExportError(f'--platforms={",".join(platforms)}: choose among '
                      f'{", ".join(PLATFORMS)}, cpu included (e.g. --platforms=cpu,cuda)')
  return platforms


def check_output(output_dir: str, overwrite: bool = False) -> None:
  """Refuses a file, or a non-empty folder unless `overwrite` (before any work is done)."""
  if os.path.exists(output_dir) and not os.path.isdir(output_dir):
    raise ExportError(f'--output={output_dir} is a file; pass a directory to write the '
                      'export into')
  entries = sorted(os.listdir(output_dir)) if os.path.isdir(output_dir) else []
  if entries and not overwrite:
    shown = ', '.join(entries[:5]) + (f', ... ({len(entries)} entries)' if len(entries) > 5
                                      else '')
    raise ExportError(
        f'--output={output_dir} is not empty ({shown}); nothing was written. Choose a new '
        'or empty directory, or pass --overwrite to replace the export files there '
        f'({MANIFEST} and the *{SUFFIX} files; other files are kept).')


def _plain(tree, where: str):
  """A pytree of indices made of dicts, lists, tuples and None -> JSON (or ExportError)."""
  if isinstance(tree, dict):
    if not all(isinstance(k, str) for k in tree):
      raise ExportError(f'{where}: dict keys must be strings, got {list(tree)}')
    return {k: _plain(v, where) for k, v in tree.items()}
  if type(tree) in (list, tuple):
    return [_plain(v, where) for v in tree]
  if tree is None or isinstance(tree, int):
    return tree
  raise ExportError(
      f'{where}: {type(tree).__name__} is not a plain pytree node; export functions take '
      'and return dicts, lists and tuples of arrays, so that a process without vision_jax '
      'can call them')


def _names(tree, prefix: str) -> dict[int, str]:
  """{leaf index: 'prefix/key/0/...'} of a plain pytree of indices."""
  if isinstance(tree, dict):
    items = tree.items()
  elif isinstance(tree, list):
    items = enumerate(tree)
  else:
    return {} if tree is None else {tree: prefix}
  names = {}
  for key, value in items:
    names.update(_names(value, f'{prefix}/{key}' if prefix else str(key)))
  return names


def _leaves(structure_names: dict[int, str], avals) -> list[dict]:
  return [{'name': structure_names[i], 'shape': [d if isinstance(d, int) else str(d)
                                                 for d in aval.shape],
           'dtype': str(aval.dtype)} for i, aval in enumerate(avals)]


def describe(exported: jax.export.Exported, arg_names: Sequence[str]) -> dict:
  """The manifest entry of one exported function (inputs, outputs and their structure)."""
  args, kwargs = jax.tree.unflatten(exported.in_tree, range(len(exported.in_avals)))
  if kwargs:
    raise ExportError(f'{exported.fun_name}: export functions take positional arguments '
                      'only')
  if len(arg_names) != len(args):
    raise ExportError(f'{exported.fun_name}: {len(args)} arguments but arg_names='
                      f'{tuple(arg_names)}')
  in_structure = [_plain(a, f'argument {n!r}') for n, a in zip(arg_names, args)]
  out_structure = _plain(jax.tree.unflatten(exported.out_tree,
                                            range(len(exported.out_avals))), 'the result')
  in_names = {}
  for name, structure in zip(arg_names, in_structure):
    in_names.update(_names(structure, name))
  return {'args': list(arg_names), 'in_structure': in_structure,
          'inputs': _leaves(in_names, exported.in_avals),
          'out_structure': out_structure,
          'outputs': _leaves(_names(out_structure, ''), exported.out_avals),
          'platforms': list(exported.platforms),
          'calling_convention_version': exported.calling_convention_version}


def _export(function: tasks_base.ExportFunction, platforms: Sequence[str]):
  """jax.export of one function; top-level dict keys it never reads are dropped."""
  args = tuple(function.example_args)
  exported = jax.export.export(jax.jit(function.fn), platforms=platforms)(*args)
  kept = set(exported.module_kept_var_idx)
  pruned, index = [], 0
  for arg in args:
    if isinstance(arg, dict):
      keep = {}
      for key in sorted(arg):  # jax flattens dicts in sorted key order.
        n = len(jax.tree.leaves(arg[key]))
        if any(i in kept for i in range(index, index + n)):
          keep[key] = arg[key]
        index += n
      pruned.append(keep)
    else:
      pruned.append(arg)
      index += len(jax.tree.leaves(arg))
  if jax.tree.structure(tuple(pruned)) == jax.tree.structure(args):
    return exported

  def pruned_fn(*given):
    # The dropped keys never reach the module: their example values stand in.
    return exported.call(*({**arg, **part} if isinstance(arg, dict) else part
                           for arg, part in zip(args, given)))

  # Wraps the module just lowered: tracing the function again would cost as much again
  # (a Mask R-CNN's predict: 0.9 s).
  pruned_fn.__name__ = exported.fun_name
  return jax.export.export(jax.jit(pruned_fn), platforms=platforms)(*pruned)


def _lowerable(function, platforms: Sequence[str]) -> tuple[list[str], dict[str, str]]:
  """(platforms that lower, {platform: why not}); 'cpu' must lower."""
  ok, skipped = [], {}
  for platform in platforms:
    try:
      jax.export.export(jax.jit(function.fn), platforms=[platform])(*function.example_args)
      ok.append(platform)
    except Exception as e:  # pylint: disable=broad-except  (lowering rules raise anything)
      if platform == 'cpu':
        raise
      skipped[platform] = f'{type(e).__name__}: {e}'[:500]
  return ok, skipped


def export_functions(task: tasks_base.Task, state, *, platforms: Sequence[str] | None = None
                     ) -> tuple[dict[str, jax.export.Exported], dict[str, dict], dict]:
  """Exports `task.export_functions(state)` (parameters embedded as constants).

  Args:
    task: the task.
    state: its train state (host numpy or device arrays).
    platforms: lower for these ('cpu', 'cuda', 'rocm', 'tpu'); default
      `default_platforms()`. A platform other than 'cpu' whose lowering fails is
      skipped and reported.
  Returns:
    ({name: Exported}, {name: manifest entry}, {skipped platform: why}).
  """
  platforms = check_platforms(platforms)
  # Parameters on one device, not sharded over a mesh: the artifact's constants.
  state = jax.tree.map(jnp.asarray, jax.device_get(state))
  try:
    functions = task.export_functions(state)
  except NotImplementedError as e:
    raise ExportError(f'task {task.config.task!r} cannot be exported ({e}): it needs '
                      'export_functions or example_prediction_request') from e
  exported, entries, skipped = {}, {}, {}
  for name, function in functions.items():
    if not re.fullmatch(r'[A-Za-z0-9_.-]+', name) or name.startswith('.'):
      raise ExportError(f'export function name {name!r}: use letters, digits, _ . - '
                        '(it names a file)')
    function = tasks_base.ExportFunction(*function)
    _plain(jax.tree.unflatten(jax.tree.structure(tuple(function.example_args)),
                              range(len(jax.tree.leaves(function.example_args)))),
           f'{name} example arguments')
    remaining = [p for p in platforms if p not in skipped]
    try:
      result = _export(function, remaining)
    except Exception:  # pylint: disable=broad-except
      if remaining == ['cpu']:
        raise
      ok, failed = _lowerable(function, remaining)
      for platform, why in failed.items():
        logging.warning('%s: not exported for %s: %s', name, platform, why)
      skipped.update(failed)
      result = _export(function, ok)
    exported[name] = result
    entries[name] = {'file': name + SUFFIX, **describe(result, function.arg_names)}
  return exported, entries, skipped


def write(output_dir: str, exported: dict[str, jax.export.Exported], manifest: dict, *,
          overwrite: bool = False) -> None:
  """Writes <name>.jax_exported files and manifest.json (last) into output_dir.

  With `overwrite`, replaces them and removes the .jax_exported files that a previous
  manifest there named and this one does not; other files are kept."""
  check_output(output_dir, overwrite)
  os.makedirs(output_dir, exist_ok=True)
  manifest_path = os.path.join(output_dir, MANIFEST)
  previous = []
  if os.path.exists(manifest_path):
    try:
      with open(manifest_path) as f:
        previous = [e['file'] for e in json.load(f).get('functions', {}).values()]
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
      previous = []
  for name, e in exported.items():
    _write_atomic(os.path.join(output_dir, name + SUFFIX), bytes(e.serialize()))
  for file in previous:
    if (os.path.basename(file) == file and file.endswith(SUFFIX)
        and file[:-len(SUFFIX)] not in exported):
      os.remove(os.path.join(output_dir, file))
  _write_atomic(manifest_path, json.dumps(manifest, indent=2).encode())


def _write_atomic(path: str, data: bytes) -> None:
  tmp = path + '.tmp'
  with open(tmp, 'wb') as f:
    f.write(data)
  os.replace(tmp, path)


def export_workdir(config, workdir: str, output_dir: str, *, step: int | None = None,
                   overwrite: bool = False, platforms: Sequence[str] | None = None,
                   config_name: str | None = None) -> dict[str, Any]:
  """Exports the task's functions with the workdir's newest (or `step`) checkpoint.

  Args:
    config: the experiment config.
    workdir: holds the checkpoints.
    output_dir: the folder to write (new or empty, unless `overwrite`).
    step: the checkpoint step (default: newest).
    overwrite: replace an earlier export in output_dir.
    platforms: see `export_functions`.
    config_name: the --config value, recorded in the manifest.
  Returns:
    The manifest (also written as output_dir/manifest.json).
  Raises:
    ExportError: output_dir in use, or the task has nothing to export.
    CheckpointError: the workdir has no (such) checkpoint.
  """
  check_output(output_dir, overwrite)  # Before any slow work.
  platforms = check_platforms(platforms)
  checkpoints = os.path.join(os.path.abspath(workdir), 'checkpoints')
  if not os.path.isdir(checkpoints):
    raise checkpoint_lib.CheckpointError(
        f'--workdir={workdir} holds no checkpoints ({checkpoints} does not exist). Train '
        f'first: python -m launch.train --config=... --workdir={workdir}')
  trainer = loop.Trainer(config, workdir)
  try:
    loop.log_config_differences(workdir, config)
    state = trainer.restore(step)
  finally:
    trainer.checkpoints.close()
  return export_state(config, trainer.task, state, output_dir, workdir=workdir,
                      overwrite=overwrite, platforms=platforms, config_name=config_name)


def export_state(config, task: tasks_base.Task, state, output_dir: str, *,
                 workdir: str | None = None, overwrite: bool = False,
                 platforms: Sequence[str] | None = None,
                 config_name: str | None = None) -> dict[str, Any]:
  """Exports `task.export_functions(state)` into output_dir, with their manifest.

  What `export_workdir` does once it has restored the checkpoint; call it directly to
  export a state held in memory (a notebook's training, a random init in tests).

  Args:
    config: the experiment config (recorded in the manifest).
    task: the task made from config, kernels set (`vision_jax.ops.backend`) as wanted.
    state: its state; `state.step` is recorded.
    output_dir: the folder to write (new or empty, unless `overwrite`).
    workdir: where the state was restored from (recorded; None: not from a workdir).
    overwrite, platforms, config_name: see `export_workdir`.
  Returns:
    The manifest (also written as output_dir/manifest.json).
  """
  check_output(output_dir, overwrite)
  exported, entries, skipped = export_functions(task, state, platforms=platforms)
  manifest = {
      'format': FORMAT,
      'task': config.task,
      'config_name': config_name,
      'workdir': None if workdir is None else os.path.abspath(workdir),
      'step': int(np.asarray(jax.device_get(state.step))),
      'jax_version': jax.__version__,
      'jaxlib_version': jaxlib.__version__,
      'kernels': backend.kernels(),
      'platforms': sorted({p for e in entries.values() for p in e['platforms']}),
      'skipped_platforms': skipped,
      'functions': entries,
      'config': config_lib.to_json_dict(config),
  }
  write(output_dir, exported, manifest, overwrite=overwrite)
  return manifest
