"""CycleGAN's history of generated images (Shrivastava et al. 2017; the reference's
ImagePool, pool_size 50) as pure, jit-able functions over a buffer kept in the train
state.

The discriminator is updated on fakes drawn partly from the history rather than only
from the latest generator, which damps oscillation:

  pool = init_pool(50, (256, 256, 3))                      # in the train state
  pool, fakes_for_d = query_pool(pool, jax.lax.stop_gradient(fakes), key)

Pool (a dict, a pytree: checkpoint it with the state; resuming from it continues the
exact same sequence of outputs for the same keys):
  images  [P, H, W, C] `dtype`, the stored images (slots >= count are zeros, unused).
  count   [] int32, how many slots are filled, 0 .. P (P = pool size, static).

`query_pool` walks the batch IN ORDER, image by image (lax.scan), with its own key each
(jax.random.split(key, B)):
  * while count < P: the image is stored in slot count, count += 1, and the image itself
    is returned;
  * once full: with probability 0.5 a uniformly chosen slot's image is returned and the
    new image takes its place; otherwise the new image is returned and the pool is
    unchanged.
P = 0 returns the input unchanged (and the pool untouched). No host round trip, static
shapes; deterministic for a given key.
"""
import jax
import jax.numpy as jnp


def init_pool(size: int, image_shape, dtype=jnp.float32) -> dict:
  """An empty pool of `size` slots.

  Args:
    size: P, the number of stored images (the reference's pool_size, 50); 0 disables.
    image_shape: (H, W, C) of one image.
    dtype: storage dtype.
  Returns:
    {'images': [P, H, W, C] zeros of `dtype`, 'count': [] int32 0}.
  """
  if size < 0:
    raise ValueError(f'init_pool: size must be >= 0, not {size}')
  return {'images': jnp.zeros((int(size),) + tuple(image_shape), dtype),
          'count': jnp.zeros((), jnp.int32)}


def query_pool(pool: dict, images, key):
  """Returns the images to show the discriminator and the updated pool (module docstring).

  Args:
    pool: from `init_pool` (or a previous `query_pool`): images [P, H, W, C], count [].
    images: [B, H, W, C], the newest generated images (stop their gradient first).
    key: a jax.random key; the same key, pool and images give the same result.
  Returns:
    (new_pool, out): new_pool like `pool`; out [B, H, W, C] with `images`' dtype, out[i]
    either images[i] or an image stored earlier.
  Raises:
    ValueError: the image shape differs from the pool's.
  """
  stored = pool['images']
  size = stored.shape[0]
  if images.shape[1:] != stored.shape[1:]:
    raise ValueError(f'query_pool: images {images.shape[1:]} do not match the pool\'s '
                     f'{stored.shape[1:]}')
  if size == 0:
    return pool, images
  keys = jax.random.split(key, images.shape[0])

  def step(carry, inputs):
    buffer, count = carry
    image, k = inputs
    image = image.astype(buffer.dtype)
    k_coin, k_slot = jax.random.split(k)
    filling = count < size
    swap = jnp.logical_and(~filling, jax.random.uniform(k_coin) > 0.5)
    slot = jnp.where(filling, count, jax.random.randint(k_slot, (), 0, size))
    old = jax.lax.dynamic_index_in_dim(buffer, slot, keepdims=False)
    kept = jnp.where(jnp.logical_or(filling, swap), image, old)
    buffer = jax.lax.dynamic_update_index_in_dim(buffer, kept, slot, 0)
    out = jnp.where(swap, old, image)
    return (buffer, jnp.minimum(count + 1, size).astype(jnp.int32)), out

  (buffer, count), out = jax.lax.scan(step, (stored, pool['count'].astype(jnp.int32)),
                                      (images, keys))
  return {'images': buffer, 'count': count}, out.astype(images.dtype)
