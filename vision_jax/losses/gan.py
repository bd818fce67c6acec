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

Image translation (pix2pix, CycleGAN) in pytorch-CycleGAN-and-pix2pix's conventions (its
GANLoss, its halved D loss and its L1 terms):

  kind        gan_criterion(x, target_is_real=True)   gan_criterion(x, False)
  'vanilla'   mean softplus(-x)  (BCE with logits, 1)  mean softplus(x)  (BCE, 0)
  'lsgan'     mean (x - 1)^2  (MSE to 1, no 0.5)       mean x^2  (MSE to 0)
  'hinge'     D: mean relu(1 - x)                      D: mean relu(1 + x)
              G (for_discriminator=False): -mean x     G: mean x

  halved_discriminator_loss(real, fake, kind)
      = 0.5 * (gan_criterion(real, True, kind) + gan_criterion(fake, False, kind)):
      the reference halves D's loss to slow D down relative to G (so 'lsgan' here equals
      discriminator_loss(..., 'lsgan') above, and 'vanilla' is half of 'non_saturating').
  translation_generator_loss(fake, kind) = gan_criterion(fake, True, kind,
      for_discriminator=False): not halved ('lsgan' is mean (x - 1)^2, twice
      generator_loss(..., 'lsgan') above).
  l1_loss(a, b) = mean |a - b|: pix2pix's L1 term (lambda 100 in the paper);
  cycle_consistency_loss(reconstructed, original) = mean |F(G(x)) - x| (CycleGAN's
      lambda_A / lambda_B = 10); identity_loss(mapped, original) = mean |G(y) - y|
      (CycleGAN's lambda_identity = 0.5, times lambda_A / lambda_B). The lambdas are the
      task's; these return the plain L1 means, float32 scalars, any (equal) shapes.
"""
import jax
import jax.numpy as jnp

LOSS_KINDS = ('non_saturating', 'lsgan', 'hinge')
TRANSLATION_LOSS_KINDS = ('vanilla', 'lsgan', 'hinge')


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


def gan_criterion(logits, target_is_real: bool, kind: str, *,
                  for_discriminator: bool = True):
  """The reference's GANLoss: the mean loss of `logits` against a real or fake target.

  Args:
    logits: D's logits, any shape (a PatchGAN's [B, h, w, 1]); any float dtype.
    target_is_real: the label the loss pushes the logits towards (real = 1, fake = 0).
    kind: one of TRANSLATION_LOSS_KINDS: 'vanilla' (BCE with logits), 'lsgan' (mean
      squared error to 1 or 0, no 0.5 factor), 'hinge' (see the module docstring).
    for_discriminator: 'hinge' only: True gives D's margin losses mean relu(1 -+ x);
      False gives the generator's linear loss, -mean x for a real target (mean x for a
      fake one). Ignored by the other kinds.
  Returns:
    scalar float32.
  Raises:
    ValueError: unknown kind.
  """
  if kind not in TRANSLATION_LOSS_KINDS:
    raise ValueError(f'unknown image translation GAN loss kind {kind!r}; known kinds: '
                     f'{", ".join(TRANSLATION_LOSS_KINDS)}')
  x = jnp.asarray(logits, jnp.float32)
  sign = 1.0 if target_is_real else -1.0
  if kind == 'vanilla':
    return jnp.mean(jax.nn.softplus(-sign * x))
  if kind == 'lsgan':
    return jnp.mean(jnp.square(x - (1.0 if target_is_real else 0.0)))
  if for_discriminator:
    return jnp.mean(jax.nn.relu(1.0 - sign * x))
  return -sign * jnp.mean(x)


def halved_discriminator_loss(real_logits, fake_logits, kind: str):
  """D's loss as the reference: 0.5 * (criterion(real, True) + criterion(fake, False)).

  Args:
    real_logits: D's logits on real images (pix2pix: on concat(input, target)), any shape.
    fake_logits: D's logits on generated images (CycleGAN: drawn from the image pool),
      any shape.
    kind: one of TRANSLATION_LOSS_KINDS.
  Returns:
    scalar float32.
  """
  return 0.5 * (gan_criterion(real_logits, True, kind)
                + gan_criterion(fake_logits, False, kind))


def translation_generator_loss(fake_logits, kind: str):
  """G's adversarial loss: criterion(D(G(x)), real); 'hinge' gives -mean x. Not halved.

  Args:
    fake_logits: D's logits on generated images, any shape.
    kind: one of TRANSLATION_LOSS_KINDS.
  Returns:
    scalar float32.
  """
  return gan_criterion(fake_logits, True, kind, for_discriminator=False)


def l1_loss(a, b):
  """mean |a - b| over all elements, float32 scalar (torch's L1Loss, reduction 'mean').

  Args:
    a, b: arrays of the same shape (e.g. [B, H, W, C] images), any float dtype.
  Raises:
    ValueError: the shapes differ (no silent broadcasting).
  """
  a = jnp.asarray(a)
  b = jnp.asarray(b)
  if a.shape != b.shape:
    raise ValueError(f'l1_loss: shapes differ, {a.shape} vs {b.shape}')
  return jnp.mean(jnp.abs(a.astype(jnp.float32) - b.astype(jnp.float32)))


def cycle_consistency_loss(reconstructed, original):
  """CycleGAN's cycle loss, mean |F(G(x)) - x| (the reference's L1; the task applies lambda).

  Args:
    reconstructed: F(G(x)), [B, H, W, C] (any shape equal to original's).
    original: x, same shape.
  Returns:
    scalar float32.
  """
  return l1_loss(reconstructed, original)


def identity_loss(mapped, original):
  """CycleGAN's identity loss, mean |G(y) - y| (the reference's L1, for a generator G: X -> Y
  fed an image y of its own output domain; the task applies lambda_identity * lambda).

  Args:
    mapped: G(y), [B, H, W, C] (any shape equal to original's).
    original: y, same shape.
  Returns:
    scalar float32.
  """
  return l1_loss(mapped, original)
