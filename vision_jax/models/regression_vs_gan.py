"""The regression-vs-GAN toy's networks: small MLPs over flattened grey images.

`ConditionalMlp` maps (condition, noise) to an image in [0, 1]; the same module is the
MSE regressor and the GAN's generator, so the two differ only in their loss.
`ConditionalCritic` maps (image, condition) to one logit; with `minibatch_std` it also
sees how much the images of its batch differ (Karras et al. 2018's minibatch standard
deviation), so that a generator answering every input with the same mode is told apart
from the data, whose batches hold both.
"""
import flax.linen as nn
import jax
import jax.numpy as jnp


class ConditionalMlp(nn.Module):
  """(condition [B] int, z [B, latent]) -> images [B, H, W, 1] in [0, 1] (sigmoid)."""
  num_conditions: int
  image_size: int = 8
  hidden: int = 128
  layers: int = 2

  @nn.compact
  def __call__(self, condition, z, train: bool = False):
    del train
    x = jnp.concatenate([jax.nn.one_hot(condition, self.num_conditions), z], axis=-1)
    for _ in range(self.layers):
      x = nn.relu(nn.Dense(self.hidden)(x))
    x = nn.Dense(self.image_size * self.image_size)(x)
    return jax.nn.sigmoid(x).reshape(-1, self.image_size, self.image_size, 1)


class ConditionalCritic(nn.Module):
  """(images [B, H, W, 1] in [0, 1], condition [B] int) -> logits [B]."""
  num_conditions: int
  hidden: int = 128
  layers: int = 2
  minibatch_std: bool = False

  @nn.compact
  def __call__(self, images, condition, train: bool = False):
    del train
    pixels = images.reshape(images.shape[0], -1) * 2.0 - 1.0
    parts = [pixels, jax.nn.one_hot(condition, self.num_conditions)]
    if self.minibatch_std:  # One feature: the batch's per-pixel std, averaged.
      spread = jnp.mean(jnp.std(pixels, axis=0))
      parts.append(jnp.broadcast_to(spread, (pixels.shape[0], 1)))
    x = jnp.concatenate(parts, axis=-1)
    for _ in range(self.layers):
      x = nn.leaky_relu(nn.Dense(self.hidden)(x), 0.2)
    return nn.Dense(1)(x)[:, 0]
