"""GAN losses against hand-computed values."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vision_jax.losses import gan

REAL = np.array([2.0, -1.0, 0.5], np.float32)
FAKE = np.array([-3.0, 0.0, 1.5, 0.25], np.float32)


def _softplus(x):
  return math.log1p(math.exp(x))


def test_non_saturating_matches_hand_computation():
  d = gan.discriminator_loss(REAL, FAKE, 'non_saturating')
  want_d = (np.mean([_softplus(-r) for r in REAL]) + np.mean([_softplus(f) for f in FAKE]))
  np.testing.assert_allclose(d, want_d, rtol=1e-6)
  # -log sigmoid(x) = softplus(-x): spelled out once for x = 2.
  np.testing.assert_allclose(_softplus(-2.0), -math.log(1 / (1 + math.exp(-2.0))), rtol=1e-12)
  g = gan.generator_loss(FAKE, 'non_saturating')
  np.testing.assert_allclose(g, np.mean([_softplus(-f) for f in FAKE]), rtol=1e-6)
  # log(2) at logits 0: D cannot tell.
  np.testing.assert_allclose(gan.generator_loss(np.zeros(5), 'non_saturating'), math.log(2),
                             rtol=1e-6)


def test_lsgan_matches_hand_computation():
  # real: (2-1)^2=1, (-1-1)^2=4, (0.5-1)^2=0.25 -> mean 5.25/3 = 1.75
  # fake: 9, 0, 2.25, 0.0625 -> mean 11.3125/4 = 2.828125
  np.testing.assert_allclose(gan.discriminator_loss(REAL, FAKE, 'lsgan'),
                             0.5 * 1.75 + 0.5 * 2.828125, rtol=1e-6)
  # (fake-1)^2: 16, 1, 0.25, 0.5625 -> mean 17.8125/4 = 4.453125
  np.testing.assert_allclose(gan.generator_loss(FAKE, 'lsgan'), 0.5 * 4.453125, rtol=1e-6)


def test_hinge_matches_hand_computation():
  # relu(1 - real): 0, 2, 0.5 -> 2.5/3; relu(1 + fake): 0, 1, 2.5, 1.25 -> 4.75/4
  np.testing.assert_allclose(gan.discriminator_loss(REAL, FAKE, 'hinge'),
                             2.5 / 3 + 4.75 / 4, rtol=1e-6)
  # -mean(fake) = -(-3 + 0 + 1.5 + 0.25)/4 = 0.3125
  np.testing.assert_allclose(gan.generator_loss(FAKE, 'hinge'), 0.3125, rtol=1e-6)


@pytest.mark.parametrize('kind', gan.LOSS_KINDS)
def test_scalar_float32_any_shape_and_dtype(kind):
  real = jnp.asarray(np.linspace(-2, 2, 2 * 3 * 3).reshape(2, 3, 3, 1), jnp.bfloat16)
  fake = jnp.asarray(np.linspace(-1, 3, 2 * 3 * 3).reshape(2, 3, 3), jnp.bfloat16)
  d = jax.jit(gan.discriminator_loss, static_argnums=2)(real, fake, kind)
  g = jax.jit(gan.generator_loss, static_argnums=1)(fake, kind)
  assert d.shape == () and d.dtype == jnp.float32
  assert g.shape == () and g.dtype == jnp.float32
  # Means over all elements: the same as on the flattened logits.
  np.testing.assert_allclose(d, gan.discriminator_loss(real.reshape(-1), fake.reshape(-1),
                                                       kind), rtol=1e-6)


@pytest.mark.parametrize('kind', gan.LOSS_KINDS)
def test_losses_point_the_right_way(kind):
  # D's loss falls when real logits rise and fake logits fall; G's when fake rise
  # (at 0.5: between lsgan's targets 0 and 1, inside hinge's margins).
  real, fake = jnp.full(4, 0.5), jnp.full(4, 0.5)
  d_real, d_fake = jax.grad(gan.discriminator_loss, argnums=(0, 1))(real, fake, kind)
  g_fake = jax.grad(gan.generator_loss)(fake, kind)
  assert np.all(d_real < 0) and np.all(d_fake > 0) and np.all(g_fake < 0)


def test_non_saturating_is_finite_for_huge_logits():
  big = np.array([1e4, -1e4], np.float32)
  assert np.isfinite(gan.discriminator_loss(big, big, 'non_saturating'))
  assert np.isfinite(jax.grad(gan.generator_loss)(jnp.asarray(big), 'non_saturating')).all()


def test_unknown_kind_names_it_and_the_known_ones():
  for fn, args in ((gan.discriminator_loss, (REAL, FAKE)), (gan.generator_loss, (FAKE,))):
    with pytest.raises(ValueError) as err:
      fn(*args, 'wasserstein')
    message = str(err.value)
    assert "'wasserstein'" in message
    assert all(kind in message for kind in gan.LOSS_KINDS)
