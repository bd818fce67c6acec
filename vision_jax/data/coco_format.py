"""`coco_format`: a local COCO-format folder (e.g. COCO 2017 unzipped) as a TFDS dataset.

Nothing is downloaded: the builder reads the folder and writes TFDS records into the
data_dir on first use (`datasets.get_builder` prepares it like a procedural builder).

Folder layout (defaults; see `resolve` for the templates that change it)
  <root>/annotations/instances_<split>.json     `coco_annotations='instances'`
  <root>/annotations/person_keypoints_<split>.json  `coco_annotations='person_keypoints'`
  <root>/<split>/<file_name>                     the json images' `file_name`
so COCO 2017 unzipped into <root> serves the splits `train2017` and `val2017`.

How a config points at a folder (keys of `config.data`, read by
`detection_pipeline.make_detection_dataset_from_config`):
  data.dataset = 'coco_format'
  data.coco_root = '/data/coco'              # required
  data.coco_annotations = 'instances'        # or 'person_keypoints', or 'x/{split}.json'
  data.coco_images = '{split}'               # image folder under the root
  data.coco_splits = ('val2017',)            # splits to prepare (default: all found)
  data.train_split, data.eval_split = 'train2017', 'val2017'
`resolve` turns these into a TFDS name 'coco_format/<config>' whose config name is the
root's basename plus a hash of (absolute root, templates, splits, annotation files'
sizes and mtimes): different folders (or edited annotations) never share records.
The records live in <data_dir>/coco_format/<config>/<version>/.

Features
  image           Image [h, w, 3]: the file's JPEG/PNG bytes as they are (other formats
                  re-encoded as PNG).
  image/id        int64, the json image id. Records are in image id order.
  image/filename  Text, the json `file_name`.
  objects         Sequence, one entry per annotation of the image, in json order (images
                  without annotations have an empty sequence):
    id            int64, the annotation id (-1 when absent).
    bbox          BBoxFeature: relative (ymin, xmin, ymax, xmax) = (y, x, y + h, x + w)
                  of the json bbox [x, y, w, h] divided by the image height/width,
                  clipped to [0, 1].
    label         ClassLabel: the json categories sorted by id (0-based).
    category_id   int64, the json category id.
    area          float32, the json `area` (the mask's area when absent).
    is_crowd      bool, the json `iscrowd`.
    mask          Image [h, w, 1] uint8 PNG, values 0/1: pycocotools `annToMask`
                  (polygons, RLE, uncompressed RLE); the filled box when the
                  annotation has no segmentation.
    keypoints     Tensor [K, 3] float32 (x / width, y / height, visibility), only when
                  the categories define `keypoints` (K names, shared by all categories
                  that define them); zeros for annotations without keypoints.
"""
import contextlib
import dataclasses
import functools
import glob
import hashlib
import io
import json
import os
import re
import time

import numpy as np
from PIL import Image
from pycocotools import coco as coco_api
import tensorflow_datasets as tfds

from vision_jax.data import datasets

NAME = 'coco_format'
DEFAULT_ANNOTATIONS = 'instances'
DEFAULT_IMAGES = '{split}'

# COCO person keypoints (person_keypoints_*.json) and their horizontal-flip permutation.
COCO_PERSON_KEYPOINT_NAMES = (
    'nose', 'left_eye', 'right_eye', 'left_ear', 'right_ear', 'left_shoulder',
    'right_shoulder', 'left_elbow', 'right_elbow', 'left_wrist', 'right_wrist', 'left_hip',
    'right_hip', 'left_knee', 'right_knee', 'left_ankle', 'right_ankle')
COCO_PERSON_KEYPOINT_FLIP_PERM = (0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15)

_JPEG_MAGIC, _PNG_MAGIC = b'\xff\xd8\xff', b'\x89PNG\r\n\x1a\n'
_SPLIT_NAME = re.compile(r'^[A-Za-z0-9_]+$')
# Configs made by `resolve` in this process, by config name.
_REGISTRY: dict[str, 'CocoFormatConfig'] = {}


class CocoFormatError(ValueError):
  """A COCO-format annotation file with invalid content (the message names the file)."""


@dataclasses.dataclass
class CocoFormatConfig(tfds.core.BuilderConfig):
  """One COCO-format folder. Made by `resolve`, not by hand.

  Attributes:
    root: absolute root folder.
    annotations: annotation file template ('{split}' replaced), relative to root.
    images: image folder template ('{split}' replaced), relative to root.
    splits: the splits prepared.
    categories: the json categories sorted by id, each {'id', 'name', 'keypoints'
      (tuple of names), 'skeleton' (tuple of 1-based pairs)}.
  """
  root: str = ''
  annotations: str = 'annotations/instances_{split}.json'
  images: str = DEFAULT_IMAGES
  splits: tuple[str, ...] = ()
  categories: tuple[dict, ...] = dataclasses.field(default=(), repr=False)

  def annotation_path(self, split: str) -> str:
    return os.path.join(self.root, self.annotations.replace('{split}', split))

  def image_dir(self, split: str) -> str:
    return os.path.join(self.root, self.images.replace('{split}', split))

  @property
  def category_ids(self) -> tuple[int, ...]:
    return tuple(c['id'] for c in self.categories)

  @property
  def class_names(self) -> tuple[str, ...]:
    """Category names, made unique and single-line (TFDS ClassLabel needs both)."""
    names = [' '.join(str(c['name']).split()) or f'category_{c["id"]}'
             for c in self.categories]
    return tuple(f'{n} ({c["id"]})' if names.count(n) > 1 else n
                 for n, c in zip(names, self.categories))

  @property
  def keypoint_names(self) -> tuple[str, ...]:
    return next((c['keypoints'] for c in self.categories if c['keypoints']), ())

  @property
  def keypoint_skeleton(self) -> tuple[tuple[int, int], ...]:
    """0-based pairs (the json's are 1-based)."""
    skeleton = next((c['skeleton'] for c in self.categories if c['keypoints']), ())
    return tuple((int(a) - 1, int(b) - 1) for a, b in skeleton)


def keypoint_flip_perm(names) -> tuple[int, ...]:
  """[K] new index -> old index under a horizontal flip, from keypoint names.

  COCO person keypoints get the standard permutation. Otherwise a name swaps with its
  mirror: 'left' <-> 'right' anywhere (any case), or the tokens 'l' <-> 'r' delimited by
  '_' / '-' / ' ' ('l_hand' <-> 'r_hand', 'hand_l' <-> 'hand_r'); names without a
  mirror among `names` stay in place.
  """
  names = tuple(names)
  if names == COCO_PERSON_KEYPOINT_NAMES:
    return COCO_PERSON_KEYPOINT_FLIP_PERM
  index = {name: i for i, name in enumerate(names)}
  return tuple(index.get(_mirror(name), i) for i, name in enumerate(names))


def _mirror(name: str) -> str:
  swap = {'left': 'right', 'right': 'left', 'Left': 'Right', 'Right': 'Left',
          'LEFT': 'RIGHT', 'RIGHT': 'LEFT'}
  mirrored = re.sub(r'left|right|Left|Right|LEFT|RIGHT', lambda m: swap[m.group()], name)
  if mirrored != name:
    return mirrored
  tokens = {'l': 'r', 'r': 'l', 'L': 'R', 'R': 'L'}
  return re.sub(r'(?<![^_\- ])[lrLR](?![^_\- ])', lambda m: tokens[m.group()], name)


def layout_hint(root: str, annotations: str, images: str, split: str) -> str:
  """'expected <json> and images under <dir>/; ...' for error messages."""
  json_path = os.path.join(root, annotations.replace('{split}', split))
  image_dir = os.path.join(root, images.replace('{split}', split))
  return (f'expected {json_path} and images under {image_dir}{os.sep}; unzip COCO 2017 '
          f'there (annotations/ and {split}/ side by side) or point data.coco_root at '
          f'your folder')


def _annotation_template(coco_annotations: str | None) -> str:
  """'instances' -> 'annotations/instances_{split}.json'; '*.json' paths stay."""
  value = coco_annotations or DEFAULT_ANNOTATIONS
  if value.endswith('.json'):
    return value
  return os.path.join('annotations', f'{value}_{{split}}.json')


def _base_splits(split: str | None) -> list[str]:
  """TFDS split expression -> the split names in it ('a[:10]+b' -> ['a', 'b'])."""
  if not split:
    return []
  return [part.split('[')[0].strip() for part in split.split('+')]


def resolve(dataset: str, split: str | None = None, *, coco_root: str | None = None,
            coco_annotations: str | None = None, coco_images: str | None = None,
            coco_splits=None) -> str:
  """The TFDS name to load for `dataset`; registers local COCO-format folders.

  Other datasets' names come back unchanged. For 'coco_format' the folder is checked
  (nothing is read beyond the categories of the smallest annotation file) and the name
  'coco_format/<config>' is returned, which `datasets.get_builder` / `load_split`
  accept (and prepare on first use) in this process.

  Args:
    dataset: 'coco_format' (or a name returned by this function), or any other name.
    split: the split expression that will be read ('val2017', 'train2017[:10%]'), to
      check that it exists; None: no check.
    coco_root: the root folder (required for 'coco_format').
    coco_annotations: 'instances' (default), 'person_keypoints' or another prefix P for
      <root>/annotations/P_<split>.json; or a path ending in '.json', relative to the
      root, where '{split}' stands for the split name.
    coco_images: image folder relative to the root, '{split}' standing for the split
      name (default '{split}').
    coco_splits: splits to prepare (default: every split whose annotation file and
      image folder exist; required when the annotation path has no '{split}').
  Raises:
    DatasetNotFoundError: no root given, or missing folder / annotation file / image
      folder (the message names it and the expected layout).
    CocoFormatError: invalid categories in the annotation file.
  """
  base = dataset.split('/')[0].split(':')[0]
  if base != NAME:
    if coco_root is not None:
      raise ValueError(f'coco_root={coco_root!r} is only read with dataset {NAME!r}, '
                       f'not {dataset!r}')
    return dataset
  if dataset != NAME:  # 'coco_format/<config>': already resolved in this process.
    config = registered_config(dataset)
    _check_requested(config, _base_splits(split), explicit=True)
    return dataset
  annotations = _annotation_template(coco_annotations)
  images = coco_images or DEFAULT_IMAGES
  if coco_root is None:
    raise datasets.DatasetNotFoundError(
        f'dataset {NAME!r} reads a local COCO-format folder: set data.coco_root (or pass '
        f'coco_root=DIR); {layout_hint("<root>", annotations, images, "val2017")}')
  config = _make_config(coco_root, annotations, images, coco_splits, _base_splits(split))
  _REGISTRY[config.name] = config
  return f'{NAME}/{config.name}'


def registered_config(name: str) -> CocoFormatConfig:
  """The config of a name returned by `resolve` (DatasetNotFoundError otherwise)."""
  config = _REGISTRY.get(name.split('/', 1)[1] if '/' in name else '')
  if config is None:
    raise datasets.DatasetNotFoundError(
        f'dataset {name!r}: {NAME} datasets are named from their folder: use '
        f"dataset='{NAME}' with data.coco_root=DIR (coco_format.resolve), not a "
        f'config name')
  return config


def make_builder(name: str, data_dir: str | None = None) -> 'CocoFormat':
  """The (maybe unprepared) builder of a name returned by `resolve`."""
  if name == NAME:
    resolve(name)  # Raises: no root given.
  return CocoFormat(config=registered_config(name), data_dir=data_dir)


def _make_config(coco_root, annotations, images, coco_splits, requested) -> CocoFormatConfig:
  root = os.path.abspath(os.path.expanduser(os.fspath(coco_root)))
  if not os.path.isdir(root):
    split = requested[0] if requested else 'val2017'
    raise datasets.DatasetNotFoundError(
        f'COCO-format root {root} does not exist (data.coco_root={coco_root!r}); '
        f'{layout_hint(root, annotations, images, split)}')
  config = CocoFormatConfig(name='unnamed', root=root, annotations=annotations,
                            images=images)
  if coco_splits:
    splits = (coco_splits,) if isinstance(coco_splits, str) else tuple(coco_splits)
    explicit = True
  elif '{split}' not in annotations:
    raise datasets.DatasetNotFoundError(
        f'{config.annotation_path("")} holds one split: name it with data.coco_splits')
  else:
    splits = _discover_splits(config)
    explicit = False
  config = dataclasses.replace(config, splits=tuple(sorted(set(splits))))
  _check_requested(config, requested, explicit)
  for split in config.splits:
    if not _SPLIT_NAME.match(split):
      raise ValueError(f'split name {split!r} of {root}: use letters, digits and _ only')
    for path in (config.annotation_path(split), config.image_dir(split)):
      if not os.path.exists(path):
        raise datasets.DatasetNotFoundError(
            f'{path} does not exist: {layout_hint(root, annotations, images, split)}')
  if not config.splits:
    raise datasets.DatasetNotFoundError(
        f'no COCO-format split found in {root}: '
        f'{layout_hint(root, annotations, images, requested[0] if requested else "val2017")}')
  files = [config.annotation_path(split) for split in config.splits]
  stats = [(os.path.getsize(f), int(os.path.getmtime(f))) for f in files]
  smallest = files[int(np.argmin([size for size, _ in stats]))]
  categories = _read_categories(smallest, *stats[files.index(smallest)])
  key = json.dumps([root, annotations, images, config.splits, stats])
  digest = hashlib.sha1(key.encode()).hexdigest()[:10]
  slug = re.sub(r'[^a-z0-9]+', '_', os.path.basename(root).lower()).strip('_')[:40]
  return dataclasses.replace(
      config, name=f'{slug or "root"}_{digest}', categories=categories,
      description=f'COCO-format folder {root} ({annotations}, images {images}), '
                  f'splits {", ".join(config.splits)}')


def _discover_splits(config: CocoFormatConfig) -> list[str]:
  """Splits whose annotation file and image folder both exist."""
  pattern = config.annotation_path('\0')
  head, tail = pattern.split('\0', 1)
  found = []
  for path in glob.glob(glob.escape(head) + '*' + glob.escape(tail)):
    split = path[len(head):len(path) - len(tail)]
    if _SPLIT_NAME.match(split) and os.path.isdir(config.image_dir(split)):
      found.append(split)
  return found


def _check_requested(config: CocoFormatConfig, requested, explicit: bool) -> None:
  for split in requested:
    if split in config.splits:
      continue
    if explicit:
      raise datasets.DatasetNotFoundError(
          f'split {split!r} of {config.root} is not among the splits prepared '
          f'{list(config.splits)} (data.coco_splits)')
    if not _SPLIT_NAME.match(split):
      raise ValueError(f'split name {split!r}: use letters, digits and _ only')
    missing = [p for p in (config.annotation_path(split), config.image_dir(split))
               if not os.path.exists(p)]
    raise datasets.DatasetNotFoundError(
        f'split {split!r}: {" and ".join(missing)} not found: '
        f'{layout_hint(config.root, config.annotations, config.images, split)}')


@functools.lru_cache(maxsize=16)
def _read_categories(path: str, size: int, mtime: int) -> tuple[dict, ...]:
  """The validated categories of an annotation file, sorted by id (cached by stat)."""
  del size, mtime  # Cache key only.
  return _categories(_load_json(path), path)


def _load_json(path: str) -> dict:
  try:
    with open(path) as f:
      data = json.load(f)
  except json.JSONDecodeError as e:
    raise CocoFormatError(f'{path}: not valid JSON ({e})') from e
  if not isinstance(data, dict):
    raise CocoFormatError(f'{path}: the top level must be an object with keys images, '
                          f'annotations, categories')
  for key in ('images', 'categories'):
    if not isinstance(data.get(key), list):
      raise CocoFormatError(f'{path}: missing key {key!r} (a list); a COCO-format file '
                            f'has images, annotations and categories')
  if not isinstance(data.get('annotations', []), list):
    raise CocoFormatError(f'{path}: "annotations" must be a list')
  return data


def _require(item: dict, keys, what: str, path: str) -> None:
  if not isinstance(item, dict):
    raise CocoFormatError(f'{path}: {what} is not an object: {str(item)[:100]}')
  missing = [k for k in keys if k not in item]
  if missing:
    raise CocoFormatError(f'{path}: {what} lacks key(s) {missing}: {str(item)[:200]}')


def _categories(data: dict, path: str) -> tuple[dict, ...]:
  categories = []
  for i, c in enumerate(data['categories']):
    _require(c, ('id', 'name'), f'category #{i}', path)
    categories.append({'id': int(c['id']), 'name': str(c['name']),
                       'keypoints': tuple(str(k) for k in c.get('keypoints') or ()),
                       'skeleton': tuple((int(a), int(b)) for a, b in c.get('skeleton') or ())})
  if not categories:
    raise CocoFormatError(f'{path}: "categories" is empty')
  ids = [c['id'] for c in categories]
  if len(set(ids)) != len(ids):
    raise CocoFormatError(f'{path}: duplicate category ids in {sorted(ids)}')
  lists = {c['keypoints'] for c in categories if c['keypoints']}
  if len(lists) > 1:
    raise CocoFormatError(f'{path}: categories define different keypoint lists {lists}; '
                          f'one list shared by all categories is supported')
  return tuple(sorted(categories, key=lambda c: c['id']))


class CocoFormat(tfds.core.GeneratorBasedBuilder):
  """A local COCO-format folder; one config per folder, made by `resolve`."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}
  BUILDER_CONFIGS = []  # Configs come from `resolve` (one per folder).
  # Read by `vision_jax.data.datasets`: prepared on first use, downloads nothing, and
  # built from this class with the config `resolve` registered.
  PROCEDURAL = True
  RUNTIME_CONFIGS = True

  @classmethod
  def get_builder_config(cls, name, version=None):
    """Also finds the configs registered by `resolve` (TFDS then accepts them as known)."""
    return _REGISTRY.get(name) or super().get_builder_config(name, version)

  def _info(self) -> tfds.core.DatasetInfo:
    config = self.builder_config
    objects = {
        'id': np.int64,
        'bbox': tfds.features.BBoxFeature(),
        'label': tfds.features.ClassLabel(names=list(config.class_names)),
        'category_id': np.int64,
        'area': np.float32,
        'is_crowd': np.bool_,
        'mask': tfds.features.Image(shape=(None, None, 1), encoding_format='png'),
    }
    if config.keypoint_names:
      objects['keypoints'] = tfds.features.Tensor(
          shape=(len(config.keypoint_names), 3), dtype=np.float32)
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Image(shape=(None, None, 3)),
            'image/id': np.int64,
            'image/filename': tfds.features.Text(),
            'objects': tfds.features.Sequence(objects),
        }),
        disable_shuffling=True,  # Records stay in image id order.
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Local files only.
    return {split: self._generate_examples(split) for split in self.builder_config.splits}

  def _generate_examples(self, split: str):
    config = self.builder_config
    path, image_dir = config.annotation_path(split), config.image_dir(split)
    start = time.time()
    data = _load_json(path)
    images, by_image = _validated(data, path, config, image_dir)
    with _quiet():
      index = coco_api.COCO()
      index.dataset = data
      index.createIndex()
    print(f'{NAME}/{config.name}: writing {len(images)} {split} images from {path} ...',
          flush=True)
    num_keypoints = len(config.keypoint_names)
    labels = {cat_id: i for i, cat_id in enumerate(config.category_ids)}
    for count, image in enumerate(images):
      file_path = os.path.join(image_dir, image['file_name'])
      annotations = by_image.get(image['id'], [])
      yield int(image['id']), {
          'image': _image_bytes(file_path, image, path),
          'image/id': int(image['id']),
          'image/filename': str(image['file_name']),
          'objects': _objects(annotations, image, index, labels, num_keypoints, path),
      }
      if (count + 1) % 5000 == 0:
        print(f'{NAME}/{config.name}: {split} {count + 1}/{len(images)} images, '
              f'{time.time() - start:.0f} s', flush=True)
    print(f'{NAME}/{config.name}: {split} written in {time.time() - start:.1f} s', flush=True)


def _validated(data: dict, path: str, config: CocoFormatConfig, image_dir: str):
  """Checks the json against the config; -> (images sorted by id, {image id: anns})."""
  if _categories(data, path) != config.categories:
    raise CocoFormatError(
        f'{path}: its categories differ from those of the other splits of {config.root}')
  images = {}
  for i, image in enumerate(data['images']):
    _require(image, ('id', 'file_name', 'width', 'height'), f'image #{i}', path)
    if not isinstance(image['id'], int) or isinstance(image['id'], bool):
      raise CocoFormatError(f'{path}: image #{i} has id {image["id"]!r}; ids must be '
                            f'integers')
    if image['id'] in images:
      raise CocoFormatError(f'{path}: image id {image["id"]} appears twice')
    images[image['id']] = image
  num_keypoints = len(config.keypoint_names)
  by_image = {}
  for i, ann in enumerate(data.get('annotations', [])):
    what = f'annotation #{i} (id {ann.get("id")})' if isinstance(ann, dict) else f'#{i}'
    _require(ann, ('image_id', 'category_id', 'bbox'), what, path)
    if ann['category_id'] not in config.category_ids:
      raise CocoFormatError(f'{path}: {what} has category_id {ann["category_id"]}, which '
                            f'is not a category id {list(config.category_ids)}')
    if ann['image_id'] not in images:
      raise CocoFormatError(f'{path}: {what} has image_id {ann["image_id"]}, which is not '
                            f'an image id of the file')
    bbox = ann['bbox']
    if (not isinstance(bbox, (list, tuple)) or len(bbox) != 4 or
        not np.all(np.isfinite(np.asarray(bbox, np.float64))) or min(bbox[2:]) < 0):
      raise CocoFormatError(f'{path}: {what} has bbox {bbox}; expected [x, y, w, h], '
                            f'w, h >= 0')
    keypoints = ann.get('keypoints')
    if keypoints and len(keypoints) != 3 * num_keypoints:
      raise CocoFormatError(f'{path}: {what} has {len(keypoints)} keypoint values; its '
                            f'categories define {num_keypoints} keypoints (x, y, v each)')
    by_image.setdefault(ann['image_id'], []).append(ann)
  missing = [image['file_name'] for image in images.values()
             if not os.path.isfile(os.path.join(image_dir, image['file_name']))]
  if missing:
    raise datasets.DatasetNotFoundError(
        f'{len(missing)} image file(s) of {path} missing under {image_dir}{os.sep}, e.g. '
        f'{os.path.join(image_dir, missing[0])}')
  return [images[k] for k in sorted(images)], by_image


def _image_bytes(file_path: str, image: dict, json_path: str) -> bytes:
  """The file's JPEG/PNG bytes (other formats re-encoded as PNG); checks its size."""
  with open(file_path, 'rb') as f:
    encoded = f.read()
  try:
    pil = Image.open(io.BytesIO(encoded))
    size = pil.size
  except Exception as e:  # pylint: disable=broad-except
    raise CocoFormatError(f'{file_path}: not a readable image ({e})') from e
  if size != (int(image['width']), int(image['height'])):
    raise CocoFormatError(
        f'{file_path} is {size[0]}x{size[1]} (width x height) but {json_path} says '
        f'{image["width"]}x{image["height"]} for image id {image["id"]}')
  if encoded.startswith(_JPEG_MAGIC) or encoded.startswith(_PNG_MAGIC):
    return encoded
  return _png(np.asarray(pil.convert('RGB')))


def _objects(annotations, image, index, labels, num_keypoints, path) -> dict:
  """The `objects` feature value of one image's annotations."""
  h, w = int(image['height']), int(image['width'])
  bboxes, masks, areas = [], [], []
  keypoints = np.zeros((len(annotations), num_keypoints, 3), np.float32)
  for i, ann in enumerate(annotations):
    x, y, bw, bh = (float(v) for v in ann['bbox'])
    ymin, xmin, ymax, xmax = np.clip([y / h, x / w, (y + bh) / h, (x + bw) / w], 0.0, 1.0)
    bboxes.append(tfds.features.BBox(ymin=float(ymin), xmin=float(xmin), ymax=float(ymax),
                                     xmax=float(xmax)))
    mask = _instance_mask(ann, index, h, w, path)
    masks.append(_png(mask))
    areas.append(float(ann['area']) if 'area' in ann else float(mask.sum()))
    if num_keypoints and ann.get('keypoints'):
      keypoints[i] = np.reshape(np.asarray(ann['keypoints'], np.float32), (-1, 3))
      keypoints[i, :, 0] /= w
      keypoints[i, :, 1] /= h
  objects = {
      'id': np.array([int(ann.get('id', -1)) for ann in annotations], np.int64),
      'bbox': bboxes,
      'label': np.array([labels[ann['category_id']] for ann in annotations], np.int64),
      'category_id': np.array([int(ann['category_id']) for ann in annotations], np.int64),
      'area': np.array(areas, np.float32),
      'is_crowd': np.array([bool(ann.get('iscrowd', 0)) for ann in annotations], np.bool_),
      'mask': masks,
  }
  if num_keypoints:
    objects['keypoints'] = keypoints
  return objects


def original_ground_truth(config: CocoFormatConfig, split: str) -> dict:
  """The split's annotation json as a COCO ground truth dict, exactly as stored.

  Every annotation is kept (no `max_instances` limit), at original resolution. Fields the
  json may omit get the values the records were built with: `iscrowd` 0, `area` the
  mask's area, `segmentation` the box as a polygon.

  Args:
    config: the folder's config (`registered_config(name).`).
    split: a split name, or a TFDS slice of one ('val2017[:100]'); the whole split's
      json is returned (evaluators restrict it to the images they saw).
  """
  base = split.split('[')[0]
  path = config.annotation_path(base)
  data = _load_json(path)
  images = {image['id']: image for image in data['images']}
  with _quiet():
    index = coco_api.COCO()
    index.dataset = data
    index.createIndex()
  annotations = []
  for number, ann in enumerate(data.get('annotations', []), start=1):
    ann = dict(ann, id=ann.get('id', number), iscrowd=int(ann.get('iscrowd', 0)))
    image = images[ann['image_id']]
    if 'area' not in ann:
      ann['area'] = float(_instance_mask(ann, index, int(image['height']),
                                         int(image['width']), path).sum())
    if not ann.get('segmentation'):
      x, y, bw, bh = (float(v) for v in ann['bbox'])
      ann['segmentation'] = [[x, y, x + bw, y, x + bw, y + bh, x, y + bh]]
    annotations.append(ann)
  return {'info': {'description': f'{path} (original annotations)'},
          'images': [dict(image) for image in data['images']], 'annotations': annotations,
          'categories': [dict(c) for c in data['categories']]}


def _instance_mask(ann: dict, index, h: int, w: int, path: str) -> np.ndarray:
  """[h, w] uint8 0/1: pycocotools annToMask, or the filled box without segmentation."""
  if not ann.get('segmentation'):
    x, y, bw, bh = (float(v) for v in ann['bbox'])
    mask = np.zeros((h, w), np.uint8)
    mask[max(0, int(np.floor(y))):int(np.ceil(y + bh)),
         max(0, int(np.floor(x))):int(np.ceil(x + bw))] = 1
    return mask
  try:
    mask = index.annToMask(ann)
  except Exception as e:  # pylint: disable=broad-except
    raise CocoFormatError(f'{path}: annotation id {ann.get("id")}: cannot decode its '
                          f'segmentation ({e})') from e
  if mask.shape != (h, w):
    raise CocoFormatError(f'{path}: annotation id {ann.get("id")}: segmentation of size '
                          f'{mask.shape}, image {ann["image_id"]} is {(h, w)}')
  return mask.astype(np.uint8)


def _png(array: np.ndarray) -> bytes:
  """[h, w] or [h, w, 3] uint8 -> PNG bytes (fast compression)."""
  buffer = io.BytesIO()
  Image.fromarray(array).save(buffer, format='PNG', compress_level=1)
  return buffer.getvalue()


def _quiet():
  """Silences pycocotools' prints."""
  return contextlib.redirect_stdout(io.StringIO())
