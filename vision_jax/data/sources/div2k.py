"""TFDS `div2k/*` (DIV2K: 800 train / 100 validation 2K photos) for the photo contracts.

Every config holds `hr` (the 2K photo, PNG) and `lr` (it downscaled by the config's
factor, PNG), splits 'train' and 'validation'. The LR images of `bicubic_xN` were made
with MATLAB's `imresize(hr, 1/N, 'bicubic')`; those of `unknown_xN` with an
undisclosed degradation; `realistic_*_x4` (NTIRE 2018) add blur, noise and small pixel
shifts, so their pairs are only roughly aligned (they are cropped as if they were).

  'super_resolution'  (lr, hr) as stored; the pipeline crops LR pixel (y, x) with HR
                      pixel (N y, N x). `scale` = N, read from the config name.
  'photo'             the HR photos alone (e.g. style-transfer content).
"""
import re

import tensorflow_datasets as tfds

from vision_jax.data import photo_pipeline

_DECODERS = {'lr': tfds.decode.SkipDecoding(), 'hr': tfds.decode.SkipDecoding()}


def scale_of(config_name: str) -> int:
  """'bicubic_x4' -> 4 (the config's downscaling factor)."""
  match = re.search(r'_x(\d+)$', config_name)
  if not match:
    raise ValueError(f'div2k/{config_name}: no _xN scale in the config name')
  return int(match.group(1))


def super_resolution_source(builder) -> photo_pipeline.SuperResolutionSource:

  def canonical(example):
    return (photo_pipeline.decode_rgb(example['lr']),
            photo_pipeline.decode_rgb(example['hr']))

  return photo_pipeline.SuperResolutionSource(
      builder=builder, decoders=_DECODERS, canonical=canonical,
      scale=scale_of(builder.builder_config.name))


def photo_source(builder) -> photo_pipeline.PhotoSource:
  return photo_pipeline.PhotoSource(
      builder=builder,
      decoders=tfds.decode.PartialDecoding(
          {'hr': True}, decoders={'hr': tfds.decode.SkipDecoding()}),
      canonical=lambda example: photo_pipeline.decode_rgb(example['hr']))
