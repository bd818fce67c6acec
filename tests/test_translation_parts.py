"""pix2pix / CycleGAN parts: GAN + L1 losses, the image history pool, U-Net and ResNet
generators, the PatchGAN and its receptive field, N(0, 0.02) init, instance norm and the
linear_decay schedule. Tiny shapes: the whole file runs in well under a minute on CPU."""
import functools
import math

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from vision_jax.losses import gan
from vision_jax.nn import norms
from vision_jax.nn import patchgan
from vision_jax.nn import resnet_generator
from vision_jax.nn import unet
from vision_jax.ops import image_pool
from vision_jax.train import config as config_lib
from vision_jax.train import optim

REAL = np.array([2.0, -1.0, 0.5], np.float32)
FAKE = np.array([-3.0, 0.0, 1.5, 0.25], np.float32)


def _softplus(x):
  return math.log1p(math.exp(x))


# ------------------------------------------------------------------ losses


def test_criterion_vanilla_is_bce_with_logits():
  # BCE(sigmoid(x), 1) = -log sigmoid(x) = softplus(-x); BCE(sigmoid(x), 0) = softplus(x).
  want_real = np.mean([-math.log(1 / (1 + math.exp(-r))) for r in REAL])
  want_fake = np.mean([-math.log(1 - 1 / (1 + math.exp(-f))) for f in FAKE])
  np.testing.assert_allclose(gan.gan_criterion(REAL, True, 'vanilla'), want_real, rtol=1e-6)
  np.testing.assert_allclose(gan.gan_criterion(FAKE, False, 'vanilla'), want_fake, rtol=1e-6)
  np.testing.assert_allclose(gan.halved_discriminator_loss(REAL, FAKE, 'vanilla'),
                             0.5 * (want_real + want_fake), rtol=1e-6)
  np.testing.assert_allclose(gan.translation_generator_loss(FAKE, 'vanilla'),
                             np.mean([_softplus(-f) for f in FAKE]), rtol=1e-6)


def test_criterion_lsgan_is_mse_without_half():
  # (x-1)^2 on REAL: 1, 4, 0.25 -> 1.75; x^2 on FAKE: 9, 0, 2.25, 0.0625 -> 2.828125
  np.testing.assert_allclose(gan.gan_criterion(REAL, True, 'lsgan'), 1.75, rtol=1e-6)
  np.testing.assert_allclose(gan.gan_criterion(FAKE, False, 'lsgan'), 2.828125, rtol=1e-6)
  d = gan.halved_discriminator_loss(REAL, FAKE, 'lsgan')
  np.testing.assert_allclose(d, 0.5 * (1.75 + 2.828125), rtol=1e-6)
  # equals the class-conditional 'lsgan' D loss (which has the 0.5 inside)
  np.testing.assert_allclose(d, gan.discriminator_loss(REAL, FAKE, 'lsgan'), rtol=1e-6)
  # (f-1)^2 on FAKE: 16, 1, 0.25, 0.5625 -> 4.453125 (not halved)
  np.testing.assert_allclose(gan.translation_generator_loss(FAKE, 'lsgan'), 4.453125,
                             rtol=1e-6)


def test_criterion_hinge():
  # relu(1 - real): 0, 2, 0.5 -> 2.5/3; relu(1 + fake): 0, 1, 2.5, 1.25 -> 4.75/4
  np.testing.assert_allclose(gan.gan_criterion(REAL, True, 'hinge'), 2.5 / 3, rtol=1e-6)
  np.testing.assert_allclose(gan.gan_criterion(FAKE, False, 'hinge'), 4.75 / 4, rtol=1e-6)
  np.testing.assert_allclose(gan.halved_discriminator_loss(REAL, FAKE, 'hinge'),
                             0.5 * (2.5 / 3 + 4.75 / 4), rtol=1e-6)
  # generator: -mean(fake) = -(-3 + 0 + 1.5 + 0.25) / 4 = 0.3125
  np.testing.assert_allclose(gan.translation_generator_loss(FAKE, 'hinge'), 0.3125,
                             rtol=1e-6)
  np.testing.assert_allclose(
      gan.gan_criterion(FAKE, True, 'hinge', for_discriminator=False), 0.3125, rtol=1e-6)
  with pytest.raises(ValueError, match='vanilla'):
    gan.gan_criterion(REAL, True, 'wgan')


def test_l1_cycle_identity():
  a = np.array([[1.0, -2.0], [0.5, 3.0]], np.float32)
  b = np.array([[0.0, 0.0], [1.0, 1.0]], np.float32)
  # |1| + |-2| + |-0.5| + |2| = 5.5 -> mean 1.375
  for fn in (gan.l1_loss, gan.cycle_consistency_loss, gan.identity_loss):
    got = fn(jnp.asarray(a, jnp.bfloat16), b)
    assert got.shape == () and got.dtype == jnp.float32
    np.testing.assert_allclose(got, 1.375, rtol=1e-6)
  with pytest.raises(ValueError, match='shapes differ'):
    gan.l1_loss(a, a[:1])
  images = np.zeros((2, 3, 3, 1), np.float32)
  np.testing.assert_allclose(gan.cycle_consistency_loss(images + 0.25, images), 0.25)


@pytest.mark.parametrize('kind', gan.TRANSLATION_LOSS_KINDS)
def test_translation_losses_scalar_float32_any_shape(kind):
  logits = jnp.linspace(-2, 2, 2 * 3 * 3).reshape(2, 3, 3, 1).astype(jnp.bfloat16)
  for v in (gan.halved_discriminator_loss(logits, logits[:1], kind),
            gan.translation_generator_loss(logits, kind)):
    assert v.shape == () and v.dtype == jnp.float32 and np.isfinite(v)


# ------------------------------------------------------------------ image pool


def _reference_query(stored, count, images, key):
  """The reference's ImagePool.query, step by step, fed the same random draws."""
  size = len(stored)
  out = []
  for image, k in zip(images, jax.random.split(key, len(images))):
    if count < size:
      stored[count] = image
      count += 1
      out.append(image)
      continue
    k_coin, k_slot = jax.random.split(k)
    if float(jax.random.uniform(k_coin)) > 0.5:
      slot = int(jax.random.randint(k_slot, (), 0, size))
      out.append(stored[slot])
      stored[slot] = image
    else:
      out.append(image)
  return stored, count, np.stack(out)


_query = jax.jit(image_pool.query_pool)


def _batch(start, n):
  """n distinct [2, 2, 1] images with constant values start, start + 1, ..."""
  return np.broadcast_to(np.arange(start, start + n, dtype=np.float32)[:, None, None, None],
                         (n, 2, 2, 1)).copy()


def test_pool_fills_first_and_returns_inputs():
  pool = image_pool.init_pool(4, (2, 2, 1))
  assert pool['images'].shape == (4, 2, 2, 1) and pool['count'].dtype == jnp.int32
  pool, out = _query(pool, _batch(1, 3), jax.random.PRNGKey(0))
  np.testing.assert_array_equal(out, _batch(1, 3))
  assert int(pool['count']) == 3
  np.testing.assert_array_equal(pool['images'][:3], _batch(1, 3))
  pool, out = _query(pool, _batch(4, 1), jax.random.PRNGKey(1))
  np.testing.assert_array_equal(out, _batch(4, 1))
  assert int(pool['count']) == 4


def test_pool_once_full_returns_input_or_stored_and_swaps():
  pool = image_pool.init_pool(4, (2, 2, 1))
  pool, _ = _query(pool, _batch(0, 4), jax.random.PRNGKey(0))
  swaps = 0
  for step in range(60):
    before = np.asarray(pool['images'])[:, 0, 0, 0].copy()
    new = _batch(100 + step, 1)
    pool, out = _query(pool, new, jax.random.PRNGKey(step + 1))
    after = np.asarray(pool['images'])[:, 0, 0, 0]
    got = float(out[0, 0, 0, 0])
    if got == 100 + step:  # the input came back: the pool is unchanged
      np.testing.assert_array_equal(after, before)
    else:  # a stored image came back, and the new one took exactly its slot
      swaps += 1
      slot = int(np.flatnonzero(before == got)[0])
      want = before.copy()
      want[slot] = 100 + step
      np.testing.assert_array_equal(after, want)
    assert int(pool['count']) == 4
  assert 15 <= swaps <= 45  # p = 0.5 over 60 draws


def test_pool_matches_reference_semantics_and_is_deterministic():
  key = jax.random.PRNGKey(7)
  pool = image_pool.init_pool(3, (2, 2, 1))
  stored, count = [np.zeros((2, 2, 1), np.float32)] * 3, 0
  outs = []
  for step in range(5):
    images = _batch(10 * step, 4)  # 4 > 3: the first batch already overflows
    k = jax.random.fold_in(key, step)
    pool, out = _query(pool, images, k)
    stored, count, want = _reference_query(list(stored), count, images, k)
    np.testing.assert_array_equal(out, want)
    np.testing.assert_array_equal(pool['images'], np.stack(stored))
    assert int(pool['count']) == count
    outs.append(np.asarray(out))
  # the same key again gives the same outputs
  again = image_pool.init_pool(3, (2, 2, 1))
  for step in range(5):
    again, out = _query(again, _batch(10 * step, 4), jax.random.fold_in(key, step))
    np.testing.assert_array_equal(out, outs[step])


def test_pool_size_zero_is_identity():
  pool = image_pool.init_pool(0, (2, 2, 1))
  images = _batch(3, 2)
  new_pool, out = image_pool.query_pool(pool, images, jax.random.PRNGKey(0))
  np.testing.assert_array_equal(out, images)
  assert new_pool['images'].shape == (0, 2, 2, 1)


def test_pool_resume_after_serialization_is_exact():
  key = jax.random.PRNGKey(3)
  steps = 8
  pool = image_pool.init_pool(5, (2, 2, 1))
  uninterrupted = []
  for step in range(steps):
    pool, out = _query(pool, _batch(10 * step, 2), jax.random.fold_in(key, step))
    uninterrupted.append(np.asarray(out))
  final = pool

  pool = image_pool.init_pool(5, (2, 2, 1))
  resumed = []
  for step in range(steps // 2):
    pool, out = _query(pool, _batch(10 * step, 2), jax.random.fold_in(key, step))
    resumed.append(np.asarray(out))
  saved = flax.serialization.to_bytes(pool)
  pool = flax.serialization.from_bytes(image_pool.init_pool(5, (2, 2, 1)), saved)
  for step in range(steps // 2, steps):
    pool, out = _query(pool, _batch(10 * step, 2), jax.random.fold_in(key, step))
    resumed.append(np.asarray(out))
  np.testing.assert_array_equal(np.stack(resumed), np.stack(uninterrupted))
  np.testing.assert_array_equal(pool['images'], final['images'])
  assert int(pool['count']) == int(final['count'])


# ------------------------------------------------------------------ generators
# Initialising is mostly XLA compile time on CPU (and threefry's is ~5x rbg's): each
# network is initialised once (jit, rbg keys), shared by its shape test and the init
# statistics test; structure-only checks of other variants use jax.eval_shape (tracing,
# no compile).

UNET = unet.UNetGenerator(out_channels=2, features=16, depth=3, max_features=16)
RESNET = resnet_generator.ResnetGenerator(out_channels=3, features=8, num_blocks=1,
                                          norm='batch')
PATCH = patchgan.PatchDiscriminator(features=16, n_layers=2)


_UNET_APPLY = jax.jit(UNET.apply, static_argnames=('train', 'dropout', 'mutable'))


def _key(seed):
  return jax.random.key(seed, impl='rbg')


def _init(module, x):
  return jax.jit(module.init, static_argnames='train')(_key(0), x, train=False)


def _shapes(module, x, **kwargs):
  return jax.eval_shape(functools.partial(module.init, train=False, **kwargs),
                        jax.random.PRNGKey(0), x)


@pytest.fixture(scope='module')
def unet_variables():
  return _init(UNET, jnp.zeros((2, 16, 8, 3)))


@pytest.fixture(scope='module')
def resnet_variables():
  return _init(RESNET, jnp.zeros((2, 16, 12, 3)))


@pytest.fixture(scope='module')
def patch_variables():
  return _init(PATCH, jnp.zeros((2, 16, 24, 6)))


def test_unet_shapes_skips_and_biases(unet_variables):
  x = jnp.linspace(-1, 1, 2 * 16 * 8 * 3).reshape(2, 16, 8, 3)
  y = _UNET_APPLY(unet_variables, x, train=False)
  assert y.shape == (2, 16, 8, 2) and y.dtype == jnp.float32
  assert float(jnp.abs(y).max()) < 1.0
  p = unet_variables['params']
  # widths 16, 16, 16: the innermost up-conv reads 16 channels, the others the skip
  # concatenation (twice the width); kernels are [4, 4, out, in].
  assert p['up2']['kernel'].shape == (4, 4, 16, 16)
  assert p['up1']['kernel'].shape == (4, 4, 16, 32)
  assert p['up0']['kernel'].shape == (4, 4, 2, 32)
  assert 'bias' not in p['down0'] and 'bias' not in p['up1'] and 'bias' in p['up0']
  assert set(p) == {'down0', 'down1', 'down2', 'down1_norm', 'up2', 'up2_norm', 'up1',
                    'up1_norm', 'up0'}  # no norm on the outermost / innermost down conv
  inst = _shapes(UNET.clone(norm='instance'), x)
  assert 'bias' in inst['params']['down0'] and 'batch_stats' not in inst
  assert set(inst['params']) == {'down0', 'down1', 'down2', 'up2', 'up1', 'up0'}
  with pytest.raises(ValueError, match=r'12x8.*2\*\*depth \(depth=3\)'):
    _shapes(UNET, jnp.zeros((1, 12, 8, 3)))


def test_unet_dropout_levels_and_switch(unet_variables):
  assert unet.UNetGenerator(out_channels=3, depth=8).dropout_levels() == (4, 5, 6)
  assert unet.UNetGenerator(out_channels=3, depth=7).dropout_levels() == (4, 5)
  assert unet.UNetGenerator(out_channels=3, depth=6).dropout_levels() == (4,)
  assert unet.UNetGenerator(out_channels=3, depth=5).dropout_levels() == ()
  assert UNET.dropout_levels() == (1,)  # widths 16, 16, 16
  x = jnp.linspace(-1, 1, 2 * 16 * 8 * 3).reshape(2, 16, 8, 3)
  a = _UNET_APPLY(unet_variables, x, train=False, dropout=True, rngs={'dropout': _key(1)})
  b = _UNET_APPLY(unet_variables, x, train=False, dropout=True, rngs={'dropout': _key(2)})
  assert not np.allclose(a, b)  # test-time dropout is noise
  c = _UNET_APPLY(unet_variables, x, train=False)  # off by default at eval
  np.testing.assert_array_equal(c, _UNET_APPLY(unet_variables, x, train=False))
  y, upd = _UNET_APPLY(unet_variables, x, train=True, mutable=('batch_stats',),
                       rngs={'dropout': _key(1)})  # dropout follows train
  assert y.shape == (2, 16, 8, 2) and 'batch_stats' in upd
  assert not np.allclose(y, _UNET_APPLY(unet_variables, x, train=True,
                                        mutable=('batch_stats',), rngs={'dropout': _key(2)})[0])


def test_conv_transpose_3x3_is_the_adjoint_of_the_strided_conv():
  # torch's ConvTranspose2d(k=3, s=2, p=1, output_padding=1) is the input gradient of
  # Conv2d(k=3, s=2, p=1) with the same weight: [h, w] -> exactly [2h, 2w].
  layer = resnet_generator.ConvTranspose3x3(features=2, use_bias=False)
  rng = np.random.default_rng(0)
  y = jnp.asarray(rng.normal(size=(1, 3, 4, 5)), jnp.float32)
  kernel = jnp.asarray(rng.normal(size=(3, 3, 2, 5)), jnp.float32)  # [3, 3, out, in]
  out = layer.apply({'params': {'kernel': kernel}}, y)
  assert out.shape == (1, 6, 8, 2)

  def conv(x):  # the same array as an HWIO kernel [3, 3, in=2, out=5]
    return jax.lax.conv_general_dilated(x, kernel, (2, 2), ((1, 1), (1, 1)),
                                        dimension_numbers=('NHWC', 'HWIO', 'NHWC'))

  _, vjp = jax.vjp(conv, jnp.zeros((1, 6, 8, 2)))
  np.testing.assert_allclose(out, vjp(y)[0], rtol=1e-5, atol=1e-5)


def test_resnet_generator_shapes_and_errors(resnet_variables):
  x = jnp.linspace(-1, 1, 2 * 16 * 12 * 3).reshape(2, 16, 12, 3)
  y, upd = jax.jit(RESNET.apply, static_argnames=('train', 'mutable'))(
      resnet_variables, x, train=True, mutable=('batch_stats',))
  assert y.shape == (2, 16, 12, 3) and y.dtype == jnp.float32 and 'batch_stats' in upd
  assert float(jnp.abs(y).max()) < 1.0
  p = resnet_variables['params']
  assert p['down1']['kernel'].shape == (3, 3, 16, 32)
  assert p['block0']['conv2']['kernel'].shape == (3, 3, 32, 32)
  assert p['up0']['kernel'].shape == (3, 3, 16, 32) and p['up1']['kernel'].shape == (3, 3, 8, 16)
  assert 'bias' not in p['stem'] and 'bias' in p['head']  # batch norm: no conv bias
  inst = _shapes(resnet_generator.ResnetGenerator(out_channels=3, features=8, num_blocks=9),
                 x)  # CycleGAN's default: instance norm, biases, no state
  assert 'batch_stats' not in inst and len([k for k in inst['params'] if 'block' in k]) == 9
  assert 'bias' in inst['params']['stem'] and 'bias' in inst['params']['up1']
  with pytest.raises(ValueError, match=r'18x12.*2\*\*num_downsampling'):
    _shapes(RESNET, jnp.zeros((1, 18, 12, 3)))


# ------------------------------------------------------------------ PatchGAN


def test_patchgan_shape_and_errors(patch_variables):
  x = jnp.zeros((2, 16, 24, 6))
  logits = jax.jit(PATCH.apply, static_argnames='train')(patch_variables, x, train=False)
  assert logits.shape == (2, 2, 4, 1) and logits.dtype == jnp.float32
  p = patch_variables['params']
  assert p['conv2']['kernel'].shape == (4, 4, 32, 64)  # the stride-1 conv, width f * 4
  assert 'bias' in p['conv0'] and 'bias' not in p['conv1'] and 'bias' in p['logits']
  shapes = _shapes(patchgan.PatchDiscriminator(), jnp.zeros((1, 256, 256, 6)))
  apply = functools.partial(patchgan.PatchDiscriminator().apply, train=False)
  assert jax.eval_shape(apply, shapes, jnp.zeros((1, 256, 256, 6))).shape == (1, 30, 30, 1)
  with pytest.raises(ValueError, match=r'18x24'):
    _shapes(PATCH, jnp.zeros((1, 18, 24, 3)))


@pytest.mark.parametrize('n_layers,want', [(1, 16), (2, 34), (3, 70)])
def test_patchgan_receptive_field_measured(n_layers, want):
  # By hand, from the logits back: r = 1 -> 4 -> 7 through the two stride-1 4x4 convs,
  # then r -> 2 (r - 1) + 4 per stride-2 4x4 conv: 16, 34, 70.
  r = 7
  for _ in range(n_layers):
    r = 2 * (r - 1) + 4
  assert r == want
  norm = 'instance' if n_layers == 3 else 'batch'
  disc = patchgan.PatchDiscriminator(features=2, n_layers=n_layers, norm=norm)
  assert patchgan.receptive_field(disc) == want
  if n_layers == 3:
    with pytest.raises(ValueError, match='too small'):
      patchgan.receptive_field(disc, input_size=64)


# ------------------------------------------------------------------ init, norms


def _leaves(tree, name):
  return np.concatenate([np.ravel(v) for path, v in jax.tree_util.tree_leaves_with_path(tree)
                         if getattr(path[-1], 'key', None) == name])


def test_init_is_normal_002(unet_variables, resnet_variables, patch_variables):
  scales = []
  for variables in (unet_variables, resnet_variables, patch_variables):
    params = variables['params']
    kernels = _leaves(params, 'kernel')
    assert kernels.size > 10000
    assert abs(kernels.mean()) < 0.002 and abs(kernels.std() - 0.02) < 0.001
    np.testing.assert_array_equal(_leaves(params, 'bias'), 0.0)
    scales.append(_leaves(params, 'scale'))
  scales = np.concatenate(scales)
  assert scales.size > 250
  assert abs(scales.mean() - 1.0) < 0.005 and abs(scales.std() - 0.02) < 0.004


def test_instance_norm_kind():
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 5, 4, 3)) * 3 + 1, jnp.float32)
  norm = norms.make_norm('instance', train=True)(name='n', scale_init=unet.norm_scale_init)
  variables = norm.init(_key(0), x)
  assert not jax.tree_util.tree_leaves(variables)  # affine=False, no running stats
  y = np.asarray(norm.apply(variables, x))
  xn = np.asarray(x)
  mean = xn.mean(axis=(1, 2), keepdims=True)
  var = xn.var(axis=(1, 2), keepdims=True)
  np.testing.assert_allclose(y, (xn - mean) / np.sqrt(var + 1e-5), rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------ schedule


def test_linear_decay_schedule():
  sched = optim.make_schedule(dict(learning_rate=2.0, schedule='linear_decay'), 100)
  for step, want in [(0, 2.0), (30, 2.0), (50, 2.0), (75, 1.0), (90, 0.4), (100, 0.0),
                     (120, 0.0)]:
    np.testing.assert_allclose(sched(step), want, rtol=1e-6, atol=1e-7)
  sched = optim.make_schedule(dict(learning_rate=1.0, schedule='linear_decay',
                                   decay_start_fraction=0.8, warmup_steps=10), 100)
  for step, want in [(0, 0.0), (5, 0.5), (10, 1.0), (80, 1.0), (90, 0.5), (100, 0.0)]:
    np.testing.assert_allclose(sched(step), want, rtol=1e-6, atol=1e-7)
  with pytest.raises(config_lib.ConfigError, match='decay_start_fraction'):
    optim.make_schedule(dict(learning_rate=1.0, schedule='linear_decay',
                             decay_start_fraction=1.5), 100)


def test_adam_b1_half_with_linear_decay():
  entry = dict(name='adam', learning_rate=2e-4, b1=0.5, schedule='linear_decay',
               decay_start_fraction=0.5)
  tx = optim.make_transformation(entry, 10)
  want_tx = optax.adam(optim.make_schedule(entry, 10), b1=0.5)
  params = {'w': jnp.ones(3)}
  state, want_state = tx.init(params), want_tx.init(params)
  for g in (jnp.array([1.0, -2.0, 0.5]), jnp.array([-1.0, 1.0, 3.0])):
    upd, state = tx.update({'w': g}, state, params)
    want, want_state = want_tx.update({'w': g}, want_state, params)
    np.testing.assert_allclose(upd['w'], want['w'], rtol=1e-6)
