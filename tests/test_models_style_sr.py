"""Johnson's style-transfer transform net, SRResNet, the SRGAN discriminator, pixel shuffle
and the affine instance norm. Tiny widths and images; full sizes only through
`jax.eval_shape` (compiles nothing); one compiled init, the other tiny models get numpy
values in eval_shape's tree (init compiles dominate on a busy CPU)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vision_jax.models import style_transfer
from vision_jax.models import super_resolution as sr
from vision_jax.nn import norms
from vision_jax.nn import upsample

# 'rbg' keys: same tests, much faster init compiles on CPU than threefry.
KEY = jax.random.key(0, impl='rbg')


def _images(shape, seed=0):
  return jnp.asarray(np.random.default_rng(seed).uniform(size=shape), jnp.float32)


def _count(tree):
  return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))


def _init_shapes(module, x, **kwargs):
  return jax.eval_shape(lambda k: module.init(k, x, **kwargs), KEY)


def _numpy_variables(module, x, **kwargs):
  """Variables of `module` without compiling its init (the slow part on a busy CPU):
  kernels N(0, 1 / fan_in), BN scales / variances 1, PReLU slopes 0.25, the rest 0."""
  rng = np.random.default_rng(0)

  def fill(path, leaf):
    name = path[-1].key
    if name == 'kernel':
      fan_in = int(np.prod(leaf.shape[:-1]))
      return jnp.asarray(rng.normal(size=leaf.shape) / np.sqrt(fan_in), jnp.float32)
    value = {'scale': 1.0, 'var': 1.0, 'negative_slope': 0.25}.get(name, 0.0)
    return jnp.full(leaf.shape, value, jnp.float32)

  return jax.tree_util.tree_map_with_path(fill, _init_shapes(module, x, **kwargs))


def _torch_pixel_shuffle(x_nchw, r):
  """torch.nn.PixelShuffle's definition, written out: out[n, c, h r + i, w r + j] =
  in[n, c r^2 + i r + j, h, w]."""
  n, crr, h, w = x_nchw.shape
  c = crr // (r * r)
  out = np.zeros((n, c, h * r, w * r), x_nchw.dtype)
  for ch in range(c):
    for i in range(r):
      for j in range(r):
        out[:, ch, i::r, j::r] = x_nchw[:, ch * r * r + i * r + j]
  return out


# ------------------------------------------------------------------ shared parts


@pytest.mark.parametrize('r,c', [(2, 3), (3, 2)])
def test_pixel_shuffle_is_torch_order(r, c):
  x = np.random.default_rng(r).normal(size=(2, 3, 4, c * r * r)).astype(np.float32)
  want = _torch_pixel_shuffle(x.transpose(0, 3, 1, 2), r).transpose(0, 2, 3, 1)
  got = np.asarray(upsample.pixel_shuffle(jnp.asarray(x), r))
  assert got.shape == (2, 3 * r, 4 * r, c)
  np.testing.assert_array_equal(got, want)
  # one explicit entry: channel c r^2 + i r + j of pixel (h, w) lands at (h r + i, w r + j).
  h, w, ch, i, j = 2, 1, c - 1, r - 1, 0
  assert got[1, h * r + i, w * r + j, ch] == x[1, h, w, ch * r * r + i * r + j]
  with pytest.raises(ValueError, match='multiple'):
    upsample.pixel_shuffle(jnp.zeros((1, 2, 2, r * r + 1)), r)


def test_pixel_shuffle_matches_torch():
  torch = pytest.importorskip('torch')
  x = np.random.default_rng(0).normal(size=(2, 3, 5, 12)).astype(np.float32)
  want = torch.nn.functional.pixel_shuffle(torch.from_numpy(x.transpose(0, 3, 1, 2)), 2)
  got = upsample.pixel_shuffle(jnp.asarray(x), 2)
  np.testing.assert_array_equal(np.asarray(got), want.numpy().transpose(0, 2, 3, 1))


def test_instance_affine_norm():
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 5, 4, 3)) * 3 + 1, jnp.float32)
  norm = norms.make_norm('instance_affine')(name='n')
  variables = norm.init(KEY, x)
  assert {k: v.shape for k, v in variables['params'].items()} == {'scale': (3,),
                                                                   'bias': (3,)}
  variables = {'params': {'scale': jnp.array([1.0, 2.0, 0.5]),
                          'bias': jnp.array([0.0, -1.0, 3.0])}}
  xn = np.asarray(x)
  mean = xn.mean(axis=(1, 2), keepdims=True)
  want = (xn - mean) / np.sqrt(xn.var(axis=(1, 2), keepdims=True) + 1e-5)
  want = want * np.array([1.0, 2.0, 0.5]) + np.array([0.0, -1.0, 3.0])
  np.testing.assert_allclose(norm.apply(variables, x), want, rtol=1e-4, atol=1e-5)


def test_prelu_per_channel():
  prelu = sr.PReLU()
  x = jnp.array([[-2.0, -2.0, 3.0]])
  variables = prelu.init(KEY, x)
  np.testing.assert_array_equal(variables['params']['negative_slope'], [0.25] * 3)
  variables = {'params': {'negative_slope': jnp.array([0.1, 0.5, 0.9])}}
  np.testing.assert_allclose(prelu.apply(variables, x), [[-0.2, -1.0, 3.0]])


# ------------------------------------------------------------------ style transfer


def test_transform_net_full_size_matches_pytorch_examples():
  variables = _init_shapes(style_transfer.TransformNet(), jnp.zeros((1, 16, 16, 3)))
  assert set(variables) == {'params'}  # instance norm: no batch statistics
  # pytorch/examples' TransformerNet: sum(p.numel() for p in net.parameters()).
  assert _count(variables['params']) == 1_679_235
  params = variables['params']
  assert params['conv1']['conv2d']['kernel'].shape == (9, 9, 3, 32)
  assert params['in1']['scale'].shape == (32,)
  assert params['res5']['conv2']['kernel'].shape == (3, 3, 128, 128)
  assert params['deconv3']['conv2d']['kernel'].shape == (9, 9, 32, 3)


def test_transform_net_tiny_shapes_ranges_jit():
  net = style_transfer.TransformNet(features=4, num_residual=1)
  x = _images((2, 12, 16, 3))
  variables = jax.jit(net.init)(KEY, x)

  @jax.jit  # one compile for all four calls (they share most of their work)
  def run(variables, x):
    return (net.apply(variables, x), net.apply(variables, x, clip=True),
            net.apply(variables, 255.0 * x),
            net.clone(output='tanh').apply(variables, x))  # same params

  y, clipped, y_255, y_tanh = run(variables, x)
  assert y.shape == (2, 12, 16, 3) and y.dtype == jnp.float32
  assert np.all(np.isfinite(y)) and float(y.std()) > 1e-3
  # linear output: centred on mid-grey at init (deconv3's bias 0.5); clip for display.
  assert 0.2 < float(y.mean()) < 0.8
  np.testing.assert_array_equal(clipped, np.clip(y, 0.0, 1.0))
  # conv1 feeds an instance norm: 0..255 inputs (pytorch/examples') give the same output.
  np.testing.assert_allclose(y_255, y, atol=2e-3)
  # the paper's scaled tanh: output in (0, 1).
  assert float(y_tanh.min()) > 0.0 and float(y_tanh.max()) < 1.0
  with pytest.raises(ValueError, match='multiple of 4'):
    _init_shapes(net, jnp.zeros((1, 12, 14, 3)))
  with pytest.raises(ValueError, match='output'):
    _init_shapes(net.clone(output='sigmoid'), x)


# ------------------------------------------------------------------ super-resolution


def test_srresnet_full_size_param_count():
  variables = _init_shapes(sr.SRResNet(), jnp.zeros((1, 24, 24, 3)), train=False)
  # Ledig et al.'s SRResNet (16 blocks, 64 wide, x4), ~1.5M: stem conv 15,616 + PReLU 64;
  # 16 blocks x 74,048 (two bias-free 3x3 convs 73,728, two BNs 256, PReLU 64); trunk
  # conv + BN 36,992; two upsamplers x 147,776; head 15,555. 33 BNs x 64 x (mean, var).
  assert _count(variables['params']) == 1_548_547
  assert _count(variables['batch_stats']) == 33 * 64 * 2
  shape = jax.eval_shape(lambda v: sr.SRResNet().apply(v, jnp.zeros((1, 24, 24, 3)),
                                                       train=False), variables)
  assert shape.shape == (1, 96, 96, 3)


@pytest.mark.parametrize('upscale,out', [(2, (12, 10)), (3, (18, 15)), (8, (48, 40))])
def test_srresnet_upscales(upscale, out):
  gen = sr.SRResNet(features=4, num_blocks=1, upscale=upscale)
  x = jnp.zeros((1, 6, 5, 3))
  variables = _init_shapes(gen, x, train=False)
  y = jax.eval_shape(lambda v: gen.apply(v, x, train=False), variables)
  assert y.shape == (1,) + out + (3,)


def test_srresnet_rejects_bad_config():
  x = jnp.zeros((1, 6, 6, 3))
  with pytest.raises(ValueError, match='upscale'):
    _init_shapes(sr.SRResNet(features=4, num_blocks=1, upscale=5), x, train=False)
  with pytest.raises(ValueError, match='norm'):
    _init_shapes(sr.SRResNet(features=4, num_blocks=1, norm='instance'), x, train=False)


def test_srresnet_tiny_x4_train_eval_jit():
  gen = sr.SRResNet(features=8, num_blocks=2)
  x = _images((2, 6, 5, 3))
  variables = _numpy_variables(gen, x, train=False)
  assert set(variables) == {'params', 'batch_stats'}
  y, updates = jax.jit(lambda v: gen.apply(v, x, train=True, mutable=['batch_stats']))(
      variables)
  assert y.shape == (2, 24, 20, 3) and y.dtype == jnp.float32 and np.all(np.isfinite(y))
  moved = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), variables['batch_stats'],
                       updates['batch_stats'])
  assert all(jax.tree.leaves(moved))
  evaluate = jax.jit(lambda v, x: gen.apply(v, x, train=False))
  y_eval = evaluate({**variables, **updates}, x)
  assert y_eval.shape == y.shape
  # eval mode: each image is processed independently of the rest of the batch.
  np.testing.assert_allclose(evaluate({**variables, **updates}, x[:1])[0], y_eval[0],
                             rtol=1e-5, atol=1e-5)
  # no BN: no batch statistics, biases instead.
  no_bn = _init_shapes(gen.clone(norm='none'), x, train=True)
  assert set(no_bn) == {'params'}


def test_srresnet_bicubic_skip_starts_as_bicubic_and_learns_a_residual():
  gen = sr.SRResNet(features=4, num_blocks=1, norm='none', skip='bicubic')
  x = _images((1, 6, 5, 3))

  @jax.jit
  def run(key, x):
    variables = gen.init(key, x, train=False)
    grads = jax.grad(lambda v: jnp.sum(gen.apply(v, x, train=False) ** 2))(variables)
    return gen.apply(variables, x, train=False), grads

  out, grads = run(KEY, x)
  bicubic = jax.image.resize(x, (1, 24, 20, 3), 'bicubic')
  np.testing.assert_array_equal(out, bicubic)
  assert np.any(np.asarray(grads['params']['head']['kernel']) != 0)
  with pytest.raises(ValueError, match='skip'):
    _init_shapes(sr.SRResNet(features=4, num_blocks=1, skip='nearest'), x, train=False)


def test_discriminator_full_size_param_counts():
  x = jnp.zeros((1, 96, 96, 3))
  flat = _init_shapes(sr.SRGANDiscriminator(), x, train=False)
  assert flat['params']['dense']['kernel'].shape == (6 * 6 * 512, 1024)
  assert _count(flat['params']) == 23_563_649
  pooled = _init_shapes(sr.SRGANDiscriminator(pooling='avg'), x, train=False)
  assert pooled['params']['dense']['kernel'].shape == (512, 1024)
  assert _count(pooled['params']) == 23_563_649 - (36 - 1) * 512 * 1024
  assert _count(flat['batch_stats']) == 2 * 64 * (1 + 2 + 2 + 4 + 4 + 8 + 8)


def test_discriminator_tiny_logits_jit():
  disc = sr.SRGANDiscriminator(features=4)
  x = _images((3, 16, 16, 3))  # 1 x 1 after the four stride-2 convs
  variables = _numpy_variables(disc, x, train=False)
  logits, updates = jax.jit(
      lambda v: disc.apply(v, x, train=True, mutable=['batch_stats']))(variables)
  assert logits.shape == (3,) and logits.dtype == jnp.float32
  assert np.all(np.isfinite(logits))
  assert set(updates) == {'batch_stats'}
  # flatten: the crop size is part of the params.
  with pytest.raises(Exception):
    jax.eval_shape(lambda v: disc.apply(v, jnp.zeros((1, 48, 48, 3)), train=False),
                   variables)
  # avg pooling: the same params (a 1 x 1 map flattens to the pooled width) serve any
  # crop size.
  pooled = disc.clone(pooling='avg')
  logits = jax.jit(lambda v, x: pooled.apply(v, x, train=False))(
      variables, _images((2, 40, 24, 3)))
  assert logits.shape == (2,) and np.all(np.isfinite(logits))
  with pytest.raises(ValueError, match='pooling'):
    _init_shapes(disc.clone(pooling='max'), x, train=False)
