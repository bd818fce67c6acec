"""`synthetic_shapes_video` (vision_jax's procedural clip builder) for the video contract.

Frames and masks stay PNG-encoded in the records (decoded only for the frames a pair or
clip uses) and the stored flows are not read: the flow between any two frames, at any
input resolution, is recomputed exactly from the clip's `tracks` geometry
(`synthetic_shapes_video.flow_between` with the geometry scaled to the resized grid),
in numpy through `tf.numpy_function` (a pure function of the record: deterministic).
"""
import numpy as np
from pycocotools import mask as mask_api
import tensorflow as tf
import tensorflow_datasets as tfds

from vision_jax.data import detection_sources
from vision_jax.data import synthetic_shapes_video as ssv
from vision_jax.data import video_pipeline

_TRACK_KEYS = ('label', 'centre', 'size', 'angle')
_OBJECT_KEYS = ('frame_index', 'track_id', 'bbox', 'label', 'mask', 'area', 'is_crowd')


def _decoders() -> tfds.decode.PartialDecoding:
  """Reads all but the stored flows; frames and masks stay encoded."""
  return tfds.decode.PartialDecoding(
      {'clip/id': True, 'frames': {'image': True, 'image/id': True},
       'objects': {key: True for key in _OBJECT_KEYS},
       'tracks': {key: True for key in _TRACK_KEYS}},
      decoders={'frames': {'image': tfds.decode.SkipDecoding()},
                'objects': {'mask': tfds.decode.SkipDecoding()}})


def scaled_flow(label: np.ndarray, centre: np.ndarray, size: np.ndarray,
                angle: np.ndarray, t_from, t_to, grid, image_size: int
                ) -> tuple[np.ndarray, np.ndarray]:
  """`flow_between` on a grid x grid resampling of S x S frames (S = image_size).

  The geometry is scaled by grid / S (exactly 1 when grid == S: then the result equals
  the stored flows bit for bit), so the flow is exact on the resized frames' pixel grid
  (pixel-edge coordinates, as `tf.image.resize` samples them) and in their pixels.
  """
  factor = float(grid) / image_size
  tracks = {'label': label, 'centre': np.asarray(centre, np.float64) * factor,
            'size': np.asarray(size, np.float64) * factor, 'angle': angle}
  return ssv.flow_between(tracks, int(grid), int(t_from), int(t_to))


def _original_ground_truth(builder, class_names, category_ids):

  def ground_truth(split: str) -> dict:
    """The split's per-frame COCO ground truth at original resolution (every instance).

    images carry their `clip_id` and `frame_index`; annotations their `track_id`.
    """
    s = builder.builder_config.image_size
    decoders = tfds.decode.PartialDecoding(
        {'clip/id': True, 'frames': {'image/id': True},
         'objects': {key: True for key in _OBJECT_KEYS}})
    ds = builder.as_dataset(split=split, decoders=decoders, shuffle_files=False)
    images, annotations = [], []
    for clip in tfds.as_numpy(ds):
      ids = clip['frames']['image/id']
      for t, image_id in enumerate(ids):
        images.append({'id': int(image_id), 'height': s, 'width': s,
                       'clip_id': int(clip['clip/id']), 'frame_index': t})
      objects = clip['objects']
      for k in range(len(objects['label'])):
        ymin, xmin, ymax, xmax = (float(v) * s for v in objects['bbox'][k])
        rle = mask_api.encode(np.asfortranarray(objects['mask'][k][..., 0]))
        rle['counts'] = rle['counts'].decode('ascii')
        annotations.append({
            'id': len(annotations) + 1,
            'image_id': int(ids[int(objects['frame_index'][k])]),
            'category_id': int(category_ids[int(objects['label'][k])]),
            'bbox': [xmin, ymin, xmax - xmin, ymax - ymin],
            'area': float(objects['area'][k]),
            'iscrowd': int(bool(objects['is_crowd'][k])),
            'segmentation': rle,
            'track_id': int(objects['track_id'][k])})
    return {'info': {'description': f'{builder.name}/{builder.builder_config.name} {split}'},
            'images': images, 'annotations': annotations,
            'categories': [{'id': int(i), 'name': n, 'supercategory': 'object'}
                           for i, n in zip(category_ids, class_names)]}

  return ground_truth


def video_source(builder) -> video_pipeline.VideoSource:
  config = builder.builder_config
  s, num_frames = config.image_size, config.num_frames
  names = tuple(builder.info.features['objects']['label'].names)
  category_ids = tuple(range(1, len(names) + 1))

  def frame(example, t):
    objects = example['objects']
    here = tf.equal(objects['frame_index'], tf.cast(t, tf.int64))
    mine = {key: tf.boolean_mask(objects[key], here) for key in _OBJECT_KEYS}
    image = tf.io.decode_png(tf.gather(example['frames']['image'], t), channels=3)
    masks = detection_sources.decode_masks(mine['mask'])
    return {
        'image': tf.ensure_shape(image, [s, s, 3]),
        **detection_sources.object_fields(mine),
        # With zero instances map_fn cannot know the frame size.
        'masks': tf.reshape(masks, [-1, s, s]),
        'image_id': tf.gather(example['frames']['image/id'], t),
        'track_ids': tf.cast(mine['track_id'], tf.int32),
    }

  def flow(example, t_from, t_to, size):
    tracks = example['tracks']
    grid = size[0]
    with tf.control_dependencies([tf.debugging.assert_equal(
        size[0], size[1], message='synthetic_shapes_video frames are square')]):
      f, v = tf.numpy_function(
          lambda *args: scaled_flow(*args, image_size=s),
          [tracks[key] for key in _TRACK_KEYS] + [t_from, t_to, grid],
          [tf.float32, tf.uint8], stateful=False)
    return tf.reshape(f, [grid, grid, 2]), tf.reshape(v, [grid, grid])

  return video_pipeline.VideoSource(
      builder=builder,
      class_names=names,
      category_ids=category_ids,
      num_frames=num_frames,
      frame_size=(s, s),
      max_tracks=config.max_shapes,
      decoders=_decoders(),
      frame=frame,
      flow=flow,
      clip_id=lambda example: example['clip/id'],
      original_ground_truth=_original_ground_truth(builder, names, category_ids),
  )
