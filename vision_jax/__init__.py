"""vision_jax: computer vision model families in JAX/Flax."""
