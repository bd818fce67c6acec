"""TFDS `cycle_gan/*` (the CycleGAN release: horse2zebra, facades, ...) for the
unpaired-image contract.

Every config holds four splits of single images, `image` (JPEG, any size; 256 x 256 in
the release) and `label` (ClassLabel 'A' / 'B'): trainA, trainB, testA, testB. Split
'train' of the contract reads trainA as domain a and trainB as domain b, split 'test'
reads testA and testB (TFDS slices carry over: 'train[:100]' -> trainA[:100],
trainB[:100]). Images are resized to the pipeline's `image_size` (required: the feature
does not fix a size).

Which domain is which: the installed TFDS builder only says 'A' and 'B'. By the release's
naming `x2y`, A holds x and B holds y (horse2zebra: A horses, B zebras; apple2orange,
summer2winter_yosemite, monet2photo, ...). facades: A holds the facade PHOTOS, B the
colour-coded LABEL MAPS (the CMP Facades annotations drawn as colour images), as
the release's users read it (photos in trainA, label maps in trainB); maps: A aerial
photos, B map renderings. `domain_names` records this.

facades and the paired (pix2pix) contract: NOT possible from TFDS `cycle_gan/facades`.
Its records keep neither the file names nor the release's order (TFDS shuffles records
by a hash of the file name, and trainA / trainB are separate splits), so a photo cannot
be matched with its label map, and the label maps are colour images, not class ids
(no `semantic`). What IS possible: unpaired translation photo <-> label map here (the
CycleGAN paper's facades experiment), and paired label map -> photo only from pix2pix's
own aligned release (facades.tar.gz: each file the photo and its label map side by
side), which is not in the TFDS catalog and would need its own builder.
"""
import tensorflow as tf
import tensorflow_datasets as tfds

from vision_jax.data import image_pairs

# Domain names (a, b) where the config's name x2y does not say them.
_DOMAIN_NAMES = {'facades': ('photo', 'label_map'), 'maps': ('photo', 'map')}
_CONTRACT_SPLITS = ('train', 'test')


def domain_names(config_name: str) -> tuple[str, str]:
  """What trainA/testA (a) and trainB/testB (b) hold: ('horse', 'zebra'), ..."""
  if config_name in _DOMAIN_NAMES:
    return _DOMAIN_NAMES[config_name]
  x, sep, y = config_name.partition('2')
  return (x, y.split('_')[0]) if sep else ('A', 'B')


def unpaired_image_source(builder) -> image_pairs.UnpairedImageSource:

  def domain_records(split, domain):
    base, bracket, rest = split.partition('[')
    if base not in _CONTRACT_SPLITS:
      raise ValueError(
          f'cycle_gan/{builder.builder_config.name}: unpaired split {split!r} must be '
          f"'train' (trainA + trainB) or 'test' (testA + testB), optionally sliced")
    return f'{base}{domain.upper()}{bracket}{rest}', None

  def canonical(example, domain):
    del domain  # The split says it.
    image = tf.io.decode_image(example['image'], channels=3, expand_animations=False)
    return tf.ensure_shape(image, [None, None, 3])

  return image_pairs.UnpairedImageSource(
      builder=builder, domain_names=domain_names(builder.builder_config.name),
      image_shape=None, decoders={'image': tfds.decode.SkipDecoding()},
      domain_records=domain_records, canonical=canonical)
