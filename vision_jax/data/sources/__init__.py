"""Per-dataset adapters, found by the TFDS builder's name: `vision_jax.data.sources.<name>`.

A module here adapts one TFDS dataset to one or more batch contracts by defining
`<contract>_source(builder)`:

  detection_source(builder)       -> detection_sources.DetectionSource
  labelled_image_source(builder)  -> labelled_images.LabelledImageSource
  video_source(builder)           -> video_pipeline.VideoSource
  landmark_source(builder)        -> landmark_pipeline.LandmarkSource
  paired_image_source(builder)    -> image_pairs.PairedImageSource
  unpaired_image_source(builder)  -> image_pairs.UnpairedImageSource

A new dataset needs one new module named after its builder (`coco.py` for TFDS
`coco/2017`, `coco_format.py` for local COCO-format folders); no list elsewhere changes.
"""
import importlib
import pkgutil

import tensorflow_datasets as tfds


def find(builder: tfds.core.DatasetBuilder, contract: str):
  """The `contract` adapter of a prepared builder (ValueError naming what is missing)."""
  module_name = f'{__name__}.{builder.name}'
  try:
    module = importlib.import_module(module_name)
  except ModuleNotFoundError as e:
    if e.name != module_name:
      raise
    module = None
  factory = getattr(module, f'{contract}_source', None)
  if factory is None:
    config = builder.builder_config.name if builder.builder_config else ''
    raise ValueError(
        f'no {contract} adapter for TFDS dataset {builder.name}'
        + (f'/{config}' if config else '') + f': datasets with one are {available(contract)}; '
        f'add vision_jax/data/sources/{builder.name}.py defining {contract}_source(builder)')
  return factory(builder)


def available(contract: str) -> list[str]:
  """Names of the builders that have a `contract` adapter."""
  names = []
  for info in pkgutil.iter_modules(__path__):
    module = importlib.import_module(f'{__name__}.{info.name}')
    if hasattr(module, f'{contract}_source'):
      names.append(info.name)
  return sorted(names)
