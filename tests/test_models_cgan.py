"""The class-conditional DCGAN generator and discriminator."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vision_jax.models import cgan

B = 4
SMALL_G = dict(widths=(32, 16, 8), latent_dim=16, embed_dim=8)
SMALL_D = dict(widths=(8, 16, 32))

# 'rbg' keys: same tests, much faster init compiles on CPU than threefry.
G_KEY = jax.random.key(1, impl='rbg')
D_KEY = jax.random.key(3, impl='rbg')


def _inputs(latent_dim=16, seed=0):
  kz, _ = jax.random.split(jax.random.key(seed))
  return jax.random.normal(kz, (B, latent_dim)), jnp.array([0, 3, 7, 9])


def _all_dtypes(tree):
  return {x.dtype for x in jax.tree.leaves(tree)}


@pytest.mark.parametrize('upsample', cgan.UPSAMPLE_MODES)
@pytest.mark.parametrize('image_size,channels', [(32, 1), (24, 3)])
def test_generator_shapes_range_and_batch_stats(upsample, image_size, channels):
  gen = cgan.Generator(image_size=image_size, channels=channels, upsample=upsample, **SMALL_G)
  z, labels = _inputs()
  variables = gen.init(G_KEY, z, labels)
  assert set(variables) == {'params', 'batch_stats'}
  images, updates = gen.apply(variables, z, labels, train=True, mutable=['batch_stats'])
  assert images.shape == (B, image_size, image_size, channels)
  assert images.dtype == jnp.float32
  assert float(jnp.abs(images).max()) <= 1.0
  assert float(images.std()) > 1e-3  # not constant
  # train=True moved the running statistics.
  moved = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), variables['batch_stats'],
                       updates['batch_stats'])
  assert all(jax.tree.leaves(moved))
  # train=False: deterministic, no state change needed.
  eval_images = gen.apply(variables, z, labels)
  assert eval_images.shape == images.shape


def test_generator_output_depends_on_label_and_z():
  gen = cgan.Generator(**SMALL_G)
  z, labels = _inputs()
  variables = gen.init(G_KEY, z, labels)
  base = gen.apply(variables, z, labels)
  other_label = gen.apply(variables, z, (labels + 1) % 10)
  other_z = gen.apply(variables, z + 1.0, labels)
  for other in (other_label, other_z):
    per_example = jnp.abs(other - base).max(axis=(1, 2, 3))
    assert np.all(per_example > 1e-3), per_example


@pytest.mark.parametrize('conditioning', cgan.CONDITIONINGS)
def test_discriminator_shapes_and_label_dependence(conditioning):
  disc = cgan.Discriminator(conditioning=conditioning, **SMALL_D)
  images = jax.random.uniform(jax.random.key(2), (B, 32, 32, 1), minval=-1, maxval=1)
  labels = jnp.array([0, 3, 7, 9])
  variables = disc.init(D_KEY, images, labels)
  logits, updates = disc.apply(variables, images, labels, train=True,
                               mutable=['batch_stats'])
  assert logits.shape == (B,) and logits.dtype == jnp.float32
  assert 'batch_stats' in updates
  base = disc.apply(variables, images, labels)
  other = disc.apply(variables, images, (labels + 5) % 10)
  assert np.all(np.abs(np.asarray(other - base)) > 1e-5), (base, other)
  # The label parameters are where each mode says they are.
  params = variables['params']
  if conditioning == 'concat':
    assert 'label_embed' not in params
    assert params['conv0']['kernel'].shape == (4, 4, 1 + 10, 8)
  else:
    assert params['label_embed']['embedding'].shape == (10, 4 * 4 * 32)
    assert params['conv0']['kernel'].shape == (4, 4, 1, 8)
  # No norm on the first layer.
  assert 'norm0' not in params and 'norm1' in params


def test_projection_adds_inner_product_of_embedding_and_features():
  disc = cgan.Discriminator(conditioning='projection', norm='none', **SMALL_D)
  images = jax.random.uniform(jax.random.key(2), (B, 32, 32, 1), minval=-1, maxval=1)
  labels = jnp.array([0, 3, 7, 9])
  variables = disc.init(D_KEY, images, labels)
  params = variables['params']
  kernel, bias = params['logit']['kernel'][:, 0], params['logit']['bias'][0]
  zero = dict(params, label_embed={'embedding': jnp.zeros((10, kernel.size))})
  psi = disc.apply({'params': zero}, images, labels)  # psi(phi(x)) alone
  # Embedding rows = c_y * psi's kernel  =>  logit = psi + c_y * (psi - bias).
  c = jnp.arange(10, dtype=jnp.float32) - 4.0
  scaled = dict(params, label_embed={'embedding': c[:, None] * kernel[None, :]})
  logits = disc.apply({'params': scaled}, images, labels)
  np.testing.assert_allclose(logits, psi + c[labels] * (psi - bias), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('conditioning', cgan.CONDITIONINGS)
def test_bfloat16_compute_keeps_float32_params_and_outputs(conditioning):
  gen = cgan.Generator(dtype=jnp.bfloat16, **SMALL_G)
  disc = cgan.Discriminator(conditioning=conditioning, dtype=jnp.bfloat16, **SMALL_D)
  z, labels = _inputs()
  g_vars = gen.init(G_KEY, z, labels)
  images = gen.apply(g_vars, z, labels)
  d_vars = disc.init(D_KEY, images, labels)
  logits = disc.apply(d_vars, images, labels)
  assert _all_dtypes(g_vars) == {jnp.dtype(jnp.float32)}
  assert _all_dtypes(d_vars) == {jnp.dtype(jnp.float32)}
  assert images.dtype == jnp.float32 and logits.dtype == jnp.float32
  f32 = cgan.Generator(**SMALL_G).apply(g_vars, z, labels)
  np.testing.assert_allclose(images, f32, atol=0.1)  # same function, lower precision


@pytest.mark.parametrize('conditioning', cgan.CONDITIONINGS)
def test_gradients_reach_every_parameter(conditioning):
  gen = cgan.Generator(**SMALL_G)
  disc = cgan.Discriminator(conditioning=conditioning, **SMALL_D)
  z, labels = _inputs()
  g_vars = gen.init(G_KEY, z, labels)
  d_vars = disc.init(D_KEY, gen.apply(g_vars, z, labels), labels)

  def g_loss(g_params):
    images, _ = gen.apply({**g_vars, 'params': g_params}, z, labels, train=True,
                          mutable=['batch_stats'])
    logits, _ = disc.apply(d_vars, images, labels, train=True, mutable=['batch_stats'])
    return jnp.mean(jax.nn.softplus(-logits))

  grads = jax.grad(g_loss)(g_vars['params'])
  nonzero = jax.tree.map(lambda g: bool(jnp.any(g != 0)), grads)
  assert all(jax.tree.leaves(nonzero)), nonzero


def test_bad_configuration_errors():
  z, labels = _inputs()
  with pytest.raises(ValueError, match='multiple of 2\\*\\*len\\(widths\\) = 8'):
    cgan.Generator(image_size=28, **SMALL_G).init(jax.random.key(0), z, labels)
  with pytest.raises(ValueError, match="'film'"):
    cgan.Discriminator(conditioning='film').init(jax.random.key(0), jnp.zeros((B, 32, 32, 1)),
                                                 labels)
  with pytest.raises(ValueError, match='images must be'):
    cgan.Discriminator(**SMALL_D).init(jax.random.key(0), jnp.zeros((B, 32, 32, 3)), labels)
  with pytest.raises(ValueError, match='z must be'):
    cgan.Generator(**SMALL_G).init(jax.random.key(0), jnp.zeros((B, 5)), labels)
