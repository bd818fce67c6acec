"""Deformable convolution: parity with torchvision (stored fixtures, a float64 transcription
of its CPU kernel at the border cases, live torchvision where installed), the zero-offset
plain convolution, input errors, jit; the DeformConv layer at init."""
import functools
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vision_jax import ops
from vision_jax.benchmarks import ops as ops_benchmark
from vision_jax.nn import deform_conv as deform_nn

FIXTURES = pathlib.Path(__file__).parent / 'fixtures' / 'torchvision_round2.npz'
CASES = [f'{i:02d}' for i in range(7)]
_STATIC = ('stride', 'padding', 'dilation', 'groups')
deform_conv2d = jax.jit(ops.deform_conv2d, static_argnames=_STATIC)


@functools.partial(jax.jit, static_argnames=_STATIC + ('modulated',))
def _output_and_grads(x, offset, weight, mask, cotangent, modulated=True, **kwargs):
  """(out, (grad_x, grad_offset, grad_weight, grad_mask)) in one compiled function."""
  def run(x, offset, weight, mask):
    return ops.deform_conv2d(x, offset, weight, mask=mask if modulated else None, **kwargs)
  out, vjp = jax.vjp(run, x, offset, weight, mask)
  return out, vjp(cotangent.astype(out.dtype))


@functools.lru_cache(maxsize=None)
def _fixtures():
  with np.load(FIXTURES) as data:
    return {k: data[k] for k in data.files if k.startswith('deform_conv2d/')}


def _nhwc(a):
  return np.asarray(a).transpose(0, 2, 3, 1)


def _conv(x, kernel, stride=1, padding=0, dilation=1, groups=1):
  """lax.conv_general_dilated, NHWC / HWIO, symmetric padding."""
  pair = lambda v: (v, v) if isinstance(v, int) else tuple(v)
  ph, pw = pair(padding)
  return jax.lax.conv_general_dilated(
      x, kernel, pair(stride), ((ph, ph), (pw, pw)), rhs_dilation=pair(dilation),
      dimension_numbers=('NHWC', 'HWIO', 'NHWC'), feature_group_count=groups,
      precision=jax.lax.Precision.HIGHEST)


@pytest.mark.parametrize('case', CASES)
def test_matches_torchvision_fixture_forward_and_all_gradients(case):
  data = _fixtures()
  p = f'deform_conv2d/{case}/'
  has_mask = p + 'mask_nchw' in data
  kwargs = dict(stride=tuple(int(v) for v in data[p + 'stride']),
                padding=tuple(int(v) for v in data[p + 'padding']),
                dilation=tuple(int(v) for v in data[p + 'dilation']),
                groups=int(data[p + 'groups']))
  x = _nhwc(data[p + 'input_nchw'])
  offset = _nhwc(data[p + 'offset_nchw'])
  weight = data[p + 'weight_oihw'].transpose(2, 3, 1, 0)
  mask = _nhwc(data[p + 'mask_nchw']) if has_mask else np.zeros((0,), np.float32)
  assert offset.shape[-1] == 2 * int(data[p + 'offset_groups']) * np.prod(weight.shape[:2])
  out, (grad_x, grad_offset, grad_weight, grad_mask) = _output_and_grads(
      x, offset, weight, mask, _nhwc(data[p + 'cotangent_nchw']), modulated=has_mask, **kwargs)
  bias = data[p + 'bias']
  np.testing.assert_allclose(np.asarray(out) + bias, _nhwc(data[p + 'expected_nchw']),
                             rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(grad_x, _nhwc(data[p + 'grad_input']), rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(grad_offset, _nhwc(data[p + 'grad_offset']), rtol=1e-4,
                             atol=1e-4)
  np.testing.assert_allclose(grad_weight, data[p + 'grad_weight'].transpose(2, 3, 1, 0),
                             rtol=1e-4, atol=1e-4)
  if has_mask:
    np.testing.assert_allclose(grad_mask, _nhwc(data[p + 'grad_mask']), rtol=1e-4, atol=1e-4)


# A float64 transcription of torchvision's CPU kernel (deform_conv2d_kernel.cpp), one sample
# at a time: forward (bilinear_interpolate), input gradient (col2im), offset gradient
# (get_coordinate_weight), mask gradient. NHWC, one weight group.
def _tv_bilinear(img, y, x):
  height, width = img.shape[:2]
  if y <= -1 or y >= height or x <= -1 or x >= width:
    return np.zeros(img.shape[-1])
  y_low, x_low = int(np.floor(y)), int(np.floor(x))
  ly, lx = y - y_low, x - x_low
  out = np.zeros(img.shape[-1])
  for yy, wy in ((y_low, 1 - ly), (y_low + 1, ly)):
    for xx, wx in ((x_low, 1 - lx), (x_low + 1, lx)):
      if 0 <= yy <= height - 1 and 0 <= xx <= width - 1:
        out = out + wy * wx * img[yy, xx]
  return out


def _tv_coordinate_weight(img, y, x, is_y):
  height, width = img.shape[:2]
  y_l, x_l = int(np.floor(y)), int(np.floor(x))

  def v(yy, xx):
    inside = 0 <= yy < height and 0 <= xx < width
    return img[yy, xx] if inside else np.zeros(img.shape[-1])

  if is_y:
    dx = x - x_l
    return dx * (v(y_l + 1, x_l + 1) - v(y_l, x_l + 1)) + (1 - dx) * (v(y_l + 1, x_l) - v(y_l, x_l))
  dy = y - y_l
  return dy * (v(y_l + 1, x_l + 1) - v(y_l + 1, x_l)) + (1 - dy) * (v(y_l, x_l + 1) - v(y_l, x_l))


def _tv_reference(x, offset, weight, mask, cotangent, stride, padding):
  """-> out, grad_x, grad_offset, grad_weight, grad_mask (float64), dilation 1, groups 1."""
  x, offset, weight, mask, cotangent = (np.asarray(a, np.float64)
                                        for a in (x, offset, weight, mask, cotangent))
  n, height, width, cin = x.shape
  kh, kw, _, cout = weight.shape
  _, ho, wo, _ = offset.shape
  num_groups = offset.shape[-1] // (2 * kh * kw)
  cg = cin // num_groups
  cols = np.zeros((n, ho, wo, kh, kw, cin))
  kernel = weight.reshape(kh, kw, cin, cout)
  grad_cols = np.einsum('nhwo,ijco->nhwijc', cotangent, kernel)
  grad_x = np.zeros_like(x)
  grad_offset = np.zeros_like(offset)
  grad_mask = np.zeros_like(mask)
  for b in range(n):
    for oy in range(ho):
      for ox in range(wo):
        for g in range(num_groups):
          chans = slice(g * cg, (g + 1) * cg)
          img = x[b, :, :, chans]
          for i in range(kh):
            for j in range(kw):
              k = g * kh * kw + i * kw + j
              dy, dx = offset[b, oy, ox, 2 * k], offset[b, oy, ox, 2 * k + 1]
              m = mask[b, oy, ox, k]
              y = oy * stride[0] - padding[0] + i + dy
              xs = ox * stride[1] - padding[1] + j + dx
              value = _tv_bilinear(img, y, xs)
              cols[b, oy, ox, i, j, chans] = m * value
              gc = grad_cols[b, oy, ox, i, j, chans]
              grad_mask[b, oy, ox, k] = np.sum(gc * value)
              grad_offset[b, oy, ox, 2 * k] = m * np.sum(gc * _tv_coordinate_weight(img, y, xs, True))
              grad_offset[b, oy, ox, 2 * k + 1] = m * np.sum(
                  gc * _tv_coordinate_weight(img, y, xs, False))
              # col2im: truncation toward zero and |distance| < 1, as the C++ kernel.
              for yp in range(int(y) - 1, int(y) + 2):
                for xp in range(int(xs) - 1, int(xs) + 2):
                  if (0 <= yp < height and 0 <= xp < width and abs(y - yp) < 1
                      and abs(xs - xp) < 1):
                    w = (1 - abs(y - yp)) * (1 - abs(xs - xp))
                    grad_x[b, yp, xp, chans] += w * m * gc
  out = np.einsum('nhwijc,ijco->nhwo', cols, kernel)
  grad_weight = np.einsum('nhwijc,nhwo->ijco', cols, cotangent)
  return out, grad_x, grad_offset, grad_weight, grad_mask


def _border_case(seed=0):
  """Samples placed exactly on the border cases: y, x in {-1.5, -1, -0.75, -0.5, 0, 0.25,
  integers, size - 1, size - 0.5, size - 0.25, size, size + 0.5}, all exact in float32."""
  rng = np.random.default_rng(seed)
  n, height, width, cin, cout, k, groups_g = 1, 5, 6, 4, 3, 3, 2
  stride, padding = (1, 1), (1, 1)
  ho, wo = height, width

  def specials(size):
    return np.array([-1.5, -1.0, -0.75, -0.5, 0.0, 0.25, 1.0, 2.0, size - 1.0, size - 0.5,
                     size - 0.25, size, size + 0.5])

  ty = rng.choice(specials(height), (n, ho, wo, groups_g, k, k))
  tx = rng.choice(specials(width), (n, ho, wo, groups_g, k, k))
  base_y = (np.arange(ho) * stride[0] - padding[0])[:, None, None, None, None] + np.arange(k)[:, None]
  base_x = (np.arange(wo) * stride[1] - padding[1])[:, None, None, None] + np.arange(k)
  offset = np.stack([ty - base_y, tx - base_x], -1).reshape(n, ho, wo, -1).astype(np.float32)
  x = rng.standard_normal((n, height, width, cin)).astype(np.float32)
  weight = (rng.standard_normal((k, k, cin, cout)) * 0.3).astype(np.float32)
  mask = rng.uniform(size=(n, ho, wo, groups_g * k * k)).astype(np.float32)
  cotangent = rng.standard_normal((n, ho, wo, cout)).astype(np.float32)
  return x, offset, weight, mask, cotangent, stride, padding


@pytest.mark.parametrize('modulated', [False, True])
def test_border_samples_match_a_transcription_of_torchvisions_kernel(modulated):
  x, offset, weight, mask, cotangent, stride, padding = _border_case()
  if not modulated:
    mask = np.ones_like(mask)
  want = _tv_reference(x, offset, weight, mask, cotangent, stride, padding)
  out, grads = _output_and_grads(x, offset, weight, mask, cotangent, modulated=modulated,
                                 stride=stride, padding=padding)
  got = (out,) + tuple(grads)
  names = ('out', 'grad_x', 'grad_offset', 'grad_weight', 'grad_mask')
  for name, a, b in zip(names, got, want):
    if name == 'grad_mask' and not modulated:
      continue
    np.testing.assert_allclose(np.asarray(a), b, rtol=1e-5, atol=1e-5, err_msg=name)
  # The offset gradient at exactly y = -1 is torchvision's non-zero derivative towards the map.
  y = (offset.reshape(1, 5, 6, 2, 9, 2)[..., 0]
       + (np.arange(5) - 1)[:, None, None, None] + np.repeat(np.arange(3), 3))
  assert np.any(np.abs(np.asarray(got[2]).reshape(1, 5, 6, 2, 9, 2)[..., 0][y == -1]) > 1e-3)


def test_border_samples_match_live_torchvision():
  torch = pytest.importorskip('torch')
  torchvision = pytest.importorskip('torchvision')
  x, offset, weight, mask, cotangent, stride, padding = _border_case(seed=1)
  t = lambda a: torch.tensor(np.asarray(a, np.float64).transpose(0, 3, 1, 2).copy(),
                             requires_grad=True)
  xt, ot, mt = t(x), t(offset), t(mask)
  wt = torch.tensor(weight.transpose(3, 2, 0, 1).astype(np.float64), requires_grad=True)
  yt = torchvision.ops.deform_conv2d(xt, ot, wt, None, stride=stride, padding=padding, mask=mt)
  (yt * torch.tensor(cotangent.transpose(0, 3, 1, 2).astype(np.float64))).sum().backward()
  out, (gx, go, gw, gm) = _output_and_grads(x, offset, weight, mask, cotangent, stride=stride,
                                            padding=padding)
  back = lambda a: a.detach().numpy().transpose(0, 2, 3, 1)
  for a, b in ((out, back(yt)), (gx, back(xt.grad)), (go, back(ot.grad)), (gm, back(mt.grad)),
               (gw, wt.grad.numpy().transpose(2, 3, 1, 0))):
    np.testing.assert_allclose(np.asarray(a), b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('config', [
    dict(k=(3, 3), stride=1, padding=1, dilation=1, groups=1, offset_groups=1),
    dict(k=(3, 3), stride=2, padding=1, dilation=1, groups=2, offset_groups=2),
    dict(k=(3, 2), stride=(1, 2), padding=(2, 0), dilation=(2, 1), groups=1, offset_groups=4),
])
def test_zero_offset_is_a_plain_convolution(config):
  rng = np.random.default_rng(1)
  kh, kw = config['k']
  cin, cout = 4, 6
  x = rng.standard_normal((2, 9, 8, cin)).astype(np.float32)
  weight = rng.standard_normal((kh, kw, cin // config['groups'], cout)).astype(np.float32)
  kwargs = {k: config[k] for k in ('stride', 'padding', 'dilation', 'groups')}
  want = _conv(x, weight, **kwargs)
  g = config['offset_groups']
  offset = np.zeros(want.shape[:3] + (2 * g * kh * kw,), np.float32)
  got = deform_conv2d(x, offset, weight, **kwargs)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  # v2 with a constant mask m scales the plain convolution by m.
  mask = np.full(want.shape[:3] + (g * kh * kw,), 0.25, np.float32)
  got = deform_conv2d(x, offset, weight, mask=mask, **kwargs)
  np.testing.assert_allclose(got, 0.25 * np.asarray(want), rtol=1e-5, atol=1e-5)


def test_integer_offsets_shift_the_sampling_grid():
  # A constant offset (dy, dx) = (1, -2) samples the input shifted by (1, -2) pixels.
  rng = np.random.default_rng(2)
  x = rng.standard_normal((1, 7, 9, 3)).astype(np.float32)
  weight = rng.standard_normal((3, 3, 3, 2)).astype(np.float32)
  offset = np.tile(np.array([1.0, -2.0], np.float32), (1, 7, 9, 9))
  # out[oy, ox] = sum_ij weight[i, j] * x[oy - 1 + i + 1, ox - 1 + j - 2] (zero outside):
  # a valid convolution of a zero-bordered copy of x, cut 1 row lower and 2 columns left.
  bordered = np.pad(x, ((0, 0), (5, 5), (5, 5), (0, 0)))[:, 5:5 + 7 + 2, 2:2 + 9 + 2]
  np.testing.assert_allclose(deform_conv2d(x, offset, weight, padding=1),
                             _conv(bordered, weight), rtol=1e-5, atol=1e-5)


def _valid_inputs():
  x = np.zeros((2, 8, 8, 4), np.float32)
  weight = np.zeros((3, 3, 4, 5), np.float32)
  offset = np.zeros((2, 8, 8, 18), np.float32)
  mask = np.zeros((2, 8, 8, 9), np.float32)
  return dict(x=x, offset=offset, weight=weight, mask=mask, padding=1)


@pytest.mark.parametrize('change, message', [
    (dict(x=np.zeros((8, 8, 4), np.float32)), r'x must be rank 4, \[N, H, W, Cin\], got shape \(8, 8, 4\)'),
    (dict(weight=np.zeros((3, 3, 4), np.float32)), r'weight must be rank 4'),
    (dict(offset=np.zeros((2, 8, 8, 18, 1), np.float32)), r'offset must be rank 4'),
    (dict(mask=np.zeros((2, 8, 8), np.float32)), r'mask must be rank 4'),
    (dict(offset=np.zeros((2, 8, 8, 17), np.float32)),
     r'offset last dim must be 2 \* G \* kh \* kw = 2 \* G \* 9 .* got offset shape \(2, 8, 8, 17\)'),
    (dict(offset=np.zeros((2, 8, 8, 54), np.float32), mask=None),  # G = 3 does not divide 4
     r'G \(offset groups\) >= 1 dividing Cin = 4, got offset shape \(2, 8, 8, 54\)'),
    (dict(offset=np.zeros((2, 7, 8, 18), np.float32)),
     r'offset must be \[N, Ho, Wo, 2 \* G \* kh \* kw\] = \(2, 8, 8, 18\) .* got offset shape '
     r'\(2, 7, 8, 18\)'),
    (dict(offset=np.zeros((1, 8, 8, 18), np.float32)), r'= \(2, 8, 8, 18\)'),
    (dict(mask=np.zeros((2, 8, 8, 18), np.float32)),
     r'mask must be \[N, Ho, Wo, G \* kh \* kw\] = \(2, 8, 8, 9\) .* got mask shape \(2, 8, 8, 18\)'),
    (dict(mask=np.zeros((2, 4, 4, 9), np.float32)), r'got mask shape \(2, 4, 4, 9\)'),
    (dict(groups=3), r'Cin = 4 .* is not divisible by groups = 3'),
    (dict(groups=2), r'weight must be \[kh, kw, Cin // groups, Cout\] = \[3, 3, 2, Cout\]'),
    (dict(groups=2, weight=np.zeros((3, 3, 2, 5), np.float32)), r'Cout divisible by groups = 2'),
    (dict(weight=np.zeros((3, 3, 3, 5), np.float32)), r'got weight shape \(3, 3, 3, 5\)'),
    (dict(stride=0), r'stride must be ints >= 1'),
    (dict(padding=(1, 1, 1)), r'padding must be an int or an \(h, w\) pair'),
    (dict(x=np.zeros((2, 1, 1, 4), np.float32), padding=0), r'empty output'),
])
def test_bad_inputs_raise_errors_naming_the_shapes(change, message):
  kwargs = {**_valid_inputs(), **change}
  with pytest.raises(ValueError, match=message):
    ops.deform_conv2d(**kwargs)


def test_integer_input_is_a_type_error():
  kwargs = _valid_inputs()
  kwargs['x'] = kwargs['x'].astype(np.int32)
  with pytest.raises(TypeError, match='floating point'):
    ops.deform_conv2d(**kwargs)


def test_jit_vmap_dtype_and_non_finite_offsets():
  x, offset, weight, mask, _, stride, padding = _border_case(seed=3)
  run = functools.partial(deform_conv2d, stride=stride, padding=padding)
  out = run(x, offset, weight, mask=mask)
  want = _tv_reference(x, offset, weight, mask, np.zeros(out.shape, np.float32), stride,
                       padding)[0]
  np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)
  # vmap over a leading axis = the batch dimension.
  vmapped = jax.jit(jax.vmap(lambda a, o, m: ops.deform_conv2d(
      a[None], o[None], weight, mask=m[None], stride=stride, padding=padding)[0]))
  np.testing.assert_allclose(vmapped(x, offset, mask), out, rtol=1e-5, atol=1e-5)
  # The output keeps the input's dtype; the sampling runs in float32.
  half = run(x.astype(jnp.bfloat16), offset, weight, mask=mask)
  assert half.dtype == jnp.bfloat16 and out.dtype == jnp.float32
  np.testing.assert_allclose(np.asarray(half, np.float32), out, rtol=0.05, atol=0.1)
  # Non-finite offsets surface as NaN, they are not silently zeroed.
  bad = offset.copy()
  bad[0, 2, 3, 0], bad[0, 4, 1, 5] = np.nan, np.inf
  out = np.asarray(run(x, bad, weight, mask=mask))
  assert np.isnan(out[0, 2, 3]).all() and np.isnan(out[0, 4, 1]).all()
  assert np.isfinite(out[0, 0, 0]).all()


def _conv_params(layer, x, seed):
  """Parameters as `layer.init` makes them (a zero offset conv) with a random kernel and
  bias, without compiling init (its random initializers cost seconds of compile)."""
  rng = np.random.default_rng(seed)
  shapes = jax.eval_shape(layer.init, jax.random.key(0), x)['params']

  def fill(path, leaf):
    if path[0].key == 'offset_conv':
      return np.zeros(leaf.shape, leaf.dtype)
    return rng.standard_normal(leaf.shape).astype(leaf.dtype)

  return jax.tree_util.tree_map_with_path(fill, shapes)


def _check_plain(layer, params, x, got, modulated, groups):
  (_, _), stride, padding, dilation = layer.geometry()
  plain = _conv(x, params['kernel'], stride, padding, dilation, groups)
  scale = deform_nn.INITIAL_MASK if modulated else 1.0
  np.testing.assert_allclose(got, scale * np.asarray(plain) + params['bias'], rtol=1e-5,
                             atol=1e-5)


def test_layer_init_zeroes_the_offset_conv_and_is_a_plain_convolution():
  # DCN v2 with a dilated, strided, grouped kernel: the flax.linen.Conv offset branch.
  x = jnp.asarray(np.random.default_rng(4).standard_normal((2, 11, 10, 4)).astype(np.float32))
  layer = deform_nn.DeformConv(6, 3, stride=2, dilation=2, groups=2, offset_groups=2,
                               modulated=True, bias_init=jax.nn.initializers.normal(1.0))
  got, variables = jax.jit(layer.init_with_output)(jax.random.key(0), x)
  params = variables['params']
  assert layer.geometry() == ((3, 3), (2, 2), (2, 2), (2, 2))
  assert params['kernel'].shape == (3, 3, 2, 6) and params['bias'].shape == (6,)
  assert params['offset_conv']['kernel'].shape == (3, 3, 4, 3 * 2 * 9)
  assert not np.any(params['offset_conv']['kernel']) and not np.any(params['offset_conv']['bias'])
  assert np.any(params['bias']) and deform_nn.INITIAL_MASK == 0.5
  _check_plain(layer, params, x, got, modulated=True, groups=2)


@pytest.mark.parametrize('modulated, config', [
    (False, dict(kernel_size=3)),                           # the library Conv offset branch
    (True, dict(kernel_size=3, stride=2)),
    (False, dict(kernel_size=(1, 3), padding=(0, 1))),      # flax.linen.Conv offset branch
])
def test_layer_with_initial_offset_conv_is_a_plain_convolution(modulated, config):
  x = jnp.asarray(np.random.default_rng(5).standard_normal((2, 11, 10, 4)).astype(np.float32))
  layer = deform_nn.DeformConv(6, modulated=modulated, **config)
  params = _conv_params(layer, x, seed=6)
  (kh, kw), _, _, _ = layer.geometry()
  assert params['offset_conv']['kernel'].shape == (kh, kw, 4, (3 if modulated else 2) * kh * kw)
  got = jax.jit(layer.apply)({'params': params}, x)
  _check_plain(layer, params, x, got, modulated, groups=1)


def test_layer_gradient_reaches_the_offset_branch():
  x = jnp.asarray(np.random.default_rng(7).standard_normal((1, 8, 8, 3)).astype(np.float32))
  layer = deform_nn.DeformConv(4, modulated=True, use_bias=False)
  params = _conv_params(layer, x, seed=8)
  assert 'bias' not in params
  grads = jax.jit(jax.grad(lambda p: jnp.sum(layer.apply({'params': p}, x) ** 2)))(params)
  assert np.any(grads['offset_conv']['kernel']) and np.any(grads['offset_conv']['bias'])
  assert np.any(grads['kernel'])


def test_benchmark_reports_both_passes_at_a_tiny_size():
  results = ops_benchmark.run('deform_conv2d', channels=4, size=(6, 7), repeats=1,
                              use_torch=False, matmul_probe_size=64)
  for key in ('deform_conv2d_fwd_s', 'deform_conv2d_fwd_bwd_s',
              'deform_conv2d_fwd_ratio_to_matmul', 'deform_conv2d_columns_MB'):
    assert results[key] > 0.0, key
  assert results['torchvision'] == 'skipped: use_torch=False'
  names = [m['name'] for m in results['measurements']]
  assert names == ['deform_conv2d_fwd', 'deform_conv2d_fwd_bwd']


@pytest.mark.parametrize('modulated', [False, True])
def test_benchmark_against_torchvision_at_a_tiny_size(modulated):
  pytest.importorskip('torchvision')
  results = ops_benchmark.run('deform_conv2d', channels=4, size=(6, 7), repeats=1,
                              modulated=modulated, matmul_probe_size=64)
  assert results['max_abs_diff'] < 1e-4
  assert results['speedup_deform_conv2d_fwd_bwd'] > 0 and results['torch_threads'] >= 1
