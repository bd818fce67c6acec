"""`bundled_photos`: the colour photographs shipped inside scikit-image and scikit-learn.

Real photos for style transfer and super-resolution with no download: preparing reads
the image files installed with the two packages (the files themselves, never through
`skimage.data`'s fetchers, so pooch is never asked for anything) and stores each photo
whole (`PROCEDURAL = True`: `vision_jax.data.datasets` prepares it on first use).
Grey-level photos (camera, coins, moon, ...) and drawings (logo, colorwheel, phantom)
are left out; so are the photos scikit-image only downloads (eagle, lily, ...).

Pixels: the file decoded by Pillow (`Image.open(path).convert('RGB')`), uint8 RGB,
stored losslessly as PNG. The JPEG sources (hubble_deep_field, retina, rocket, china,
flower) therefore hold Pillow's decoding of them: the same libjpeg gives the same bytes,
and it is what `skimage.data.<name>()` and `sklearn.datasets.load_sample_image` return.

Splits: FIXED by name, the same on every machine. `validation` holds three everyday
scenes (a cat, a coffee cup, a flower: the kind of content image a style-transfer demo
shows); `train` the other eight. The two motorcycle views (one stereo pair, nearly the
same picture) are both in `train`, so no validation photo has a near-copy in training.
Records are stored in the table's order.

  split       name                  H x W        file (package)             licence
  train       astronaut             512 x 512    astronaut.png (skimage)    public domain, NASA
  train       hubble_deep_field     872 x 1000   hubble_deep_field.jpg (sk) public domain, NASA
  train       immunohistochemistry  512 x 512    ihc.png (skimage)          no known restriction
  train       motorcycle_left       500 x 741    motorcycle_left.png (sk)   Middlebury 2014
  train       motorcycle_right      500 x 741    motorcycle_right.png (sk)  Middlebury 2014
  train       retina                1411 x 1411  retina.jpg (skimage)       CC0
  train       rocket                427 x 640    rocket.jpg (skimage)       public domain, SpaceX
  train       china                 427 x 640    china.jpg (sklearn)        CC BY 2.0
  validation  chelsea               300 x 451    chelsea.png (skimage)      CC0
  validation  coffee                400 x 600    coffee.png (skimage)       CC0
  validation  flower                427 x 640    flower.jpg (sklearn)       CC BY 2.0

(skimage, sk = scikit-image's `skimage/data/`, sklearn = scikit-learn's
`sklearn/datasets/images/`; see those packages' docstrings and README for credits.)
Content differs widely: microscopy (immunohistochemistry), a fundus photograph on black
(retina) and a mostly black deep-sky field (hubble_deep_field) sit next to scenes.

Features
  image    Image [H, W, 3] uint8 RGB, PNG, the photo's own size (varies).
  name     Text: the photo's name (first column above), unique.
  height   int32: H.
  width    int32: W.

Numpy access without TFDS (the same pixels the builder writes): `load_photos`.
"""
import dataclasses
import importlib.resources

import numpy as np
from PIL import Image
import tensorflow_datasets as tfds

SPLITS = ('train', 'validation')


@dataclasses.dataclass(frozen=True)
class Photo:
  """One bundled photo: its name, where it is installed, its split and its size."""
  name: str
  package: str  # importlib.resources anchor of the folder holding `file`.
  file: str
  split: str
  height: int
  width: int


_SKIMAGE, _SKLEARN = 'skimage.data', 'sklearn.datasets.images'
PHOTOS = (
    Photo('astronaut', _SKIMAGE, 'astronaut.png', 'train', 512, 512),
    Photo('hubble_deep_field', _SKIMAGE, 'hubble_deep_field.jpg', 'train', 872, 1000),
    Photo('immunohistochemistry', _SKIMAGE, 'ihc.png', 'train', 512, 512),
    Photo('motorcycle_left', _SKIMAGE, 'motorcycle_left.png', 'train', 500, 741),
    Photo('motorcycle_right', _SKIMAGE, 'motorcycle_right.png', 'train', 500, 741),
    Photo('retina', _SKIMAGE, 'retina.jpg', 'train', 1411, 1411),
    Photo('rocket', _SKIMAGE, 'rocket.jpg', 'train', 427, 640),
    Photo('china', _SKLEARN, 'china.jpg', 'train', 427, 640),
    Photo('chelsea', _SKIMAGE, 'chelsea.png', 'validation', 300, 451),
    Photo('coffee', _SKIMAGE, 'coffee.png', 'validation', 400, 600),
    Photo('flower', _SKLEARN, 'flower.jpg', 'validation', 427, 640),
)


def split_names(split: str) -> tuple[str, ...]:
  """The names of `split`'s photos, in record order."""
  if split not in SPLITS:
    raise ValueError(f'bundled_photos has splits {SPLITS}, not {split!r}')
  return tuple(p.name for p in PHOTOS if p.split == split)


class BundledPhotos(tfds.core.GeneratorBasedBuilder):
  """11 colour photographs shipped inside scikit-image and scikit-learn (8 train, 3 val)."""

  # Bump when the photos, their pixels or the split change: prepared data is keyed by it.
  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}
  # Read by `vision_jax.data.datasets`: prepared on first use, downloads nothing.
  PROCEDURAL = True

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Image(shape=(None, None, 3), encoding_format='png'),
            'name': tfds.features.Text(),
            'height': np.int32,
            'width': np.int32,
        }),
        homepage='https://scikit-image.org/docs/stable/api/skimage.data.html',
        disable_shuffling=True,  # Records stay in the table's order.
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # The photos ship inside the installed packages: nothing to download.
    return {split: self._generate_examples(split) for split in SPLITS}

  def _generate_examples(self, split: str):
    for index, photo in enumerate(PHOTOS):
      if photo.split == split:
        yield index, {'image': load_photo(photo), 'name': photo.name,
                      'height': photo.height, 'width': photo.width}


def load_photo(photo: Photo | str) -> np.ndarray:
  """One photo (a `Photo` or its name) as [H, W, 3] uint8 RGB, read from its file.

  Raises:
    RuntimeError: the installed file is missing or its size is not the documented one.
  """
  if isinstance(photo, str):
    by_name = {p.name: p for p in PHOTOS}
    if photo not in by_name:
      raise ValueError(f'no bundled photo {photo!r}; the photos are {sorted(by_name)}')
    photo = by_name[photo]
  path = importlib.resources.files(photo.package) / photo.file
  if not path.is_file():
    raise RuntimeError(f'{photo.file} is not installed in {photo.package} ({path}): '
                       'bundled_photos needs the scikit-image and scikit-learn wheels')
  with path.open('rb') as f, Image.open(f) as image:
    array = np.asarray(image.convert('RGB'))
  if array.shape != (photo.height, photo.width, 3):
    raise RuntimeError(f'{photo.package} {photo.file} changed: {array.shape}, expected '
                       f'({photo.height}, {photo.width}, 3); bump BundledPhotos.VERSION')
  return array


def load_photos(split: str | None = None) -> dict[str, np.ndarray]:
  """{name: [H, W, 3] uint8} of `split`'s photos (all when None), in record order."""
  if split is not None:
    split_names(split)  # Validates the name.
  return {p.name: load_photo(p) for p in PHOTOS if split in (None, p.split)}
