"""`digits`: scikit-learn's bundled handwritten digits as a TFDS dataset (no download).

Source: `sklearn.datasets.load_digits()`, a copy of the test set of the UCI "Optical
Recognition of Handwritten Digits" data (E. Alpaydin, C. Kaynak, 1998; CC BY 4.0):
1,797 real scans written by 13 people, 10 classes. NIST's 32x32 binary bitmaps were cut
into 4x4 blocks and the "on" pixels counted, so each scan is 8x8 with integer values
0..16. The arrays ship inside scikit-learn: preparing reads them, nothing is downloaded
(`PROCEDURAL = True`: `vision_jax.data.datasets` prepares it on first use).

Pixels
  image_8x8   the scan scaled exactly: v * 255 / 16 rounded half to even (0 -> 0,
              8 -> 128, 16 -> 255), uint8, white ink on black like the source.
  image       `image_8x8` resized to S x S (S = the config's `image_size`, 32) with
              PIL's BICUBIC filter (Keys a = -0.5, pixel centres at half-pixels) on the
              8-bit image, i.e. `Image.fromarray(x8).resize((S, S), Image.BICUBIC)`;
              PIL rounds and clips to 0..255 itself. Deterministic: the same Pillow
              gives the same bytes (it resamples 8-bit images in fixed point).

Splits: a FIXED stratified split, the same on every machine and library version:
within each class the scans are ordered by sha256(f'{SPLIT_SEED}:{index}') and the
first ones go to `test`. `test` holds ceil(20% of 1,797) = 360 scans, shared among the
classes by largest remainder (35..37 per class); `train` holds the other 1,437.
Records are stored in increasing `index` order. Note that the 13 writers appear in
both splits (the source does not say who wrote which scan).

  split  size   per class (0..9)
  train  1437   142 145 142 146 145 146 145 143 139 144
  test    360    36  37  35  37  36  36  36  36  35  36

Features (S = `image_size`)
  image       Image [S, S, 1] uint8, PNG: the resized scan, 0..255.
  image_8x8   Image [8, 8, 1] uint8, PNG: the scan itself, 0..255.
  label       ClassLabel(names='0'..'9'): the digit.
  index       int64: the scan's row in `load_digits()`'s arrays (unique over splits).

Numpy access without TFDS (the same values the builder writes): `load_split_arrays`.
"""
import dataclasses
import hashlib
import io

import numpy as np
from PIL import Image
import tensorflow_datasets as tfds

CLASS_NAMES = tuple(str(d) for d in range(10))
NUM_SCANS = 1797
SCAN_SIZE = 8
SCAN_MAX = 16  # sklearn's values are block counts 0..16.
SPLIT_SEED = 'vision_jax/digits/v1'
TEST_FRACTION = 0.2
SPLITS = ('train', 'test')


@dataclasses.dataclass
class DigitsConfig(tfds.core.BuilderConfig):
  """Attributes: image_size: S, the stored `image` is S x S (bicubic from 8 x 8)."""
  image_size: int = 32


class Digits(tfds.core.GeneratorBasedBuilder):
  """scikit-learn's 1,797 real 8x8 handwritten digit scans, resized to 32x32."""

  # Bump when the pixels or the split change: prepared data is keyed by version.
  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}
  BUILDER_CONFIGS = [
      DigitsConfig(name='default', description='32x32 (bicubic), 1437 train / 360 test.'),
  ]
  # Read by `vision_jax.data.datasets`: prepared on first use, downloads nothing.
  PROCEDURAL = True

  def _info(self) -> tfds.core.DatasetInfo:
    s = self.builder_config.image_size
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Image(shape=(s, s, 1), encoding_format='png'),
            'image_8x8': tfds.features.Image(shape=(SCAN_SIZE, SCAN_SIZE, 1),
                                             encoding_format='png'),
            'label': tfds.features.ClassLabel(names=list(CLASS_NAMES)),
            'index': np.int64,
        }),
        supervised_keys=('image', 'label'),
        homepage='https://archive.ics.uci.edu/dataset/80',
        citation=_CITATION,
        disable_shuffling=True,  # Records stay in `index` order.
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # The scans ship inside scikit-learn: nothing to download.
    return {split: self._generate_examples(split) for split in SPLITS}

  def _generate_examples(self, split: str):
    arrays = load_split_arrays(split, self.builder_config.image_size)
    for image, scan, label, index in zip(arrays['image'], arrays['image_8x8'],
                                         arrays['label'], arrays['index']):
      yield int(index), {
          'image': _png(image),
          'image_8x8': _png(scan),
          'label': int(label),
          'index': int(index),
      }


def load_scans() -> tuple[np.ndarray, np.ndarray]:
  """All 1,797 scans as ([N, 8, 8] uint8 in 0..255, [N] int64 labels 0..9), sklearn order."""
  from sklearn import datasets as sk_datasets  # pylint: disable=g-import-not-at-top
  digits = sk_datasets.load_digits()
  values = np.asarray(digits.images, np.float64)
  if values.shape != (NUM_SCANS, SCAN_SIZE, SCAN_SIZE) or values.max() != SCAN_MAX:
    raise RuntimeError(f'scikit-learn\'s digits changed: shape {values.shape}, max '
                       f'{values.max()}; expected ({NUM_SCANS}, 8, 8) in 0..{SCAN_MAX}')
  scans = np.round(values * (255 / SCAN_MAX)).astype(np.uint8)
  return scans, np.asarray(digits.target, np.int64)


def upscale(scans: np.ndarray, image_size: int = 32) -> np.ndarray:
  """[N, 8, 8] uint8 -> [N, S, S] uint8 with PIL BICUBIC (see the module docstring)."""
  out = np.empty((len(scans), image_size, image_size), np.uint8)
  for i, scan in enumerate(scans):
    resized = Image.fromarray(np.ascontiguousarray(scan), mode='L').resize(
        (image_size, image_size), Image.Resampling.BICUBIC)
    out[i] = np.asarray(resized)
  return out


def split_indices(labels: np.ndarray, split: str) -> np.ndarray:
  """Sorted int64 indices (rows of sklearn's arrays) of `split` ('train' or 'test').

  Args:
    labels: [N] int labels of all scans (`load_scans()[1]`).
    split: 'train' or 'test'.
  """
  if split not in SPLITS:
    raise ValueError(f'digits has splits {SPLITS}, not {split!r}')
  labels = np.asarray(labels)
  counts = np.bincount(labels, minlength=len(CLASS_NAMES))
  per_class_test = _largest_remainder(counts, int(np.ceil(TEST_FRACTION * len(labels))))
  test = []
  for c, n_test in enumerate(per_class_test):
    members = np.flatnonzero(labels == c)
    order = sorted(members, key=lambda i: hashlib.sha256(
        f'{SPLIT_SEED}:{i}'.encode()).digest())
    test.extend(order[:n_test])
  is_test = np.zeros(len(labels), bool)
  is_test[np.asarray(test, np.int64)] = True
  return np.flatnonzero(is_test if split == 'test' else ~is_test).astype(np.int64)


def load_split_arrays(split: str, image_size: int = 32) -> dict[str, np.ndarray]:
  """One split as numpy arrays, exactly the records the builder writes, in index order.

  Returns:
    {'image': [n, S, S, 1] uint8 0..255, 'image_8x8': [n, 8, 8, 1] uint8 0..255,
     'label': [n] int64 0..9, 'index': [n] int64 rows of sklearn's arrays}.
  """
  scans, labels = load_scans()
  index = split_indices(labels, split)
  return {
      'image': upscale(scans[index], image_size)[..., None],
      'image_8x8': scans[index][..., None],
      'label': labels[index],
      'index': index,
  }


def _largest_remainder(counts: np.ndarray, total: int) -> np.ndarray:
  """Integers n_c summing to `total`, n_c ~ total * counts_c / sum(counts) (Hamilton)."""
  quotas = total * counts / counts.sum()
  base = np.floor(quotas).astype(np.int64)
  # Largest fractional parts first; ties by class id (stable sort).
  order = np.argsort(-(quotas - base), kind='stable')
  base[order[:total - base.sum()]] += 1
  return base


def _png(array: np.ndarray) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(array[..., 0], mode='L').save(buffer, format='PNG')
  return buffer.getvalue()


_CITATION = """\
@misc{alpaydin1998optical,
  author = {Alpaydin, E. and Kaynak, C.},
  title = {{Optical Recognition of Handwritten Digits}},
  year = {1998},
  howpublished = {UCI Machine Learning Repository},
  doi = {10.24432/C50P49},
}"""
