"""Adversarial losses on discriminator logits.

Logits are raw discriminator outputs of any shape ([B] for an image discriminator,
[B, h, w] or [B, h, w, 1] for a PatchGAN), any float dtype; every loss is computed in
float32 and returned as a scalar float32 MEAN over all elements (real and fake terms
are averaged separately, then added). Lower is better for the player being trained.

  kind              discriminator_loss                     generator_loss
  'non_saturating'  mean softplus(-real) + mean softplus(fake)   mean softplus(-fake)
                    = -log sigmoid(real) - log(1 - sigmoid(fake));   = -log sigmoid(fake)
                    the original GAN's D loss (Goodfellow et al. 2014) with its
                    non-saturating G loss.
  'lsgan'           0.5 mean (real - 1)^2 + 0.5 mean fake^2      0.5 mean (fake - 1)^2
                    least squares GAN (Mao et al. 2017), targets a=0 (fake), b=1
                    (real), c=1 (what G wants D to say).
  'hinge'           mean relu(1 - real) + mean relu(1 + fake)    -mean fake
                    (Lim & Ye 2017; Miyato et al. 2018, SAGAN, BigGAN).
"""
import jax
import jax.numpy as jnp

LOSS_KINDS = ('non_saturating', 'lsgan', 'hinge')


def _check_kind(kind: str) -> None:
  if kind not in LOSS_KINDS:
    raise ValueError(f'unknown GAN loss kind {kind!r}; known kinds: {", ".join(LOSS_KINDS)}')


def discriminator_loss(real_logits, fake_logits, kind: str = 'non_saturating'):
  """The discriminator's loss: push real logits up, fake logits down.

  Args:
    real_logits: D's logits on real images, any shape (see the module docstring).
    fake_logits: D's logits on generated images, any shape (may differ from real's).
    kind: one of LOSS_KINDS.
  Returns:
    scalar float32.
  Raises:
    ValueError: unknown kind (the message lists the known ones).
  """
  _check_kind(kind)
  real = jnp.asarray(real_logits, jnp.float32)
  fake = jnp.asarray(fake_logits, jnp.float32)
  if kind == 'non_saturating':
    return jnp.mean(jax.nn.softplus(-real)) + jnp.mean(jax.nn.softplus(fake))
  if kind == 'lsgan':
    return 0.5 * jnp.mean(jnp.square(real - 1.0)) + 0.5 * jnp.mean(jnp.square(fake))
  return jnp.mean(jax.nn.relu(1.0 - real)) + jnp.mean(jax.nn.relu(1.0 + fake))


def generator_loss(fake_logits, kind: str = 'non_saturating'):
  """The generator's loss on D's logits for its samples (wants them called real).

  Args:
    fake_logits: D's logits on generated images, any shape.
    kind: one of LOSS_KINDS.
  Returns:
    scalar float32.
  Raises:
    ValueError: unknown kind (the message lists the known ones).
  """
  _check_kind(kind)
  fake = jnp.asarray(fake_logits, jnp.float32)
  if kind == 'non_saturating':
    return jnp.mean(jax.nn.softplus(-fake))
  if kind == 'lsgan':
    return 0.5 * jnp.mean(jnp.square(fake - 1.0))
  return -jnp.mean(fake)
