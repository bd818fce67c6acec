"""Datasets (TFDS builders, procedural, no download) and tf.data input pipelines.

Importing this package registers the project's TFDS builders (`synthetic_shapes`,
`synthetic_shapes_video`, `digits`, `coco_format`, ...) and imports no TensorFlow: TF
loads with the modules that build tf.data pipelines, and `datasets.hide_accelerators_from_tf`
keeps it off the GPUs (it only runs tf.data here). Reading a dataset's metadata (class
names) and one user image (`single_image`) need no TF, so prediction never loads it.

Modules
  datasets             get_builder / load_split: prepare procedural builders on first
                       use; catalog data absent -> DatasetNotFoundError (no download).
  synthetic_shapes     the procedural shapes dataset (class ids, keypoint names; the
                       `styles` configs add a second rendering, style B, per scene).
  synthetic_shapes_video  procedural clips of moving shapes: per-frame instances with
                       track ids, exact forward/backward flow with validity masks.
  digits               scikit-learn's real 8x8 handwritten digits at 32x32 (bundled,
                       no download): fixed stratified train 1437 / test 360.
  bundled_photos       the 11 colour photos shipped in scikit-image and scikit-learn
                       (no download): fixed train 8 / validation 3.
  coco_format          a local COCO-format folder (COCO 2017 unzipped, or your own
                       images + annotation json) as a TFDS builder, prepared on first use.
  streams              the family-agnostic core: deterministic indexing and shuffling,
                       per-process shards, exact resume, evaluation padding, uint8.
  sources/             per-dataset adapters, one module per TFDS builder name, each
                       defining `<contract>_source(builder)`.
  detection_pipeline   make_detection_dataset(...) -> iterator of contract batches.
  detection_sources    the detection adapters' type (class names, keypoints, ...).
  detection_transforms per-example TF geometry (flip, scale jitter, crop, pad).
  labelled_images      the labelled-image contract (image + class label) and pipeline.
  image_pairs          the paired (pix2pix: input, target) and unpaired (CycleGAN:
                       domains a, b) image contracts and pipelines.
  photo_pipeline       style-transfer content crops and super-resolution (LR, HR)
                       pairs from photos (bundled_photos, coco/2017, div2k).
  video_pipeline       the video-clip contract: training frame pairs (keyframe, current
                       frame with its instances, exact current -> keyframe flow) and
                       whole evaluation clips; `clip_frames_as_detection_batch`.
  single_image         reading one user image file, and letterboxing it (numpy, no
                       TensorFlow) exactly as evaluation does.

The detection batch contract
----------------------------
Every detection-style pipeline (`synthetic_shapes`, `coco/2017`, local COCO-format
data) yields numpy dicts of fixed shapes. B is the per-process batch size (the global
batch size / process count), (H, W) the configured input size, M = `max_instances`,
K the number of keypoints per instance.

  image          [B, H, W, 3] uint8    RGB, resized (aspect kept) then zero-padded
                                       at the bottom/right to (H, W); the models
                                       convert and normalise on device
                                       (`vision_jax.ops.image`).
  boxes          [B, M, 4]    float32  (x1, y1, x2, y2) in input-image pixels,
                                       pixel-edge convention; 0 on padding.
  classes        [B, M]       int32    0-based thing class; -1 on padding.
  valid          [B, M]       bool     True for real instances (they come first).
  is_crowd       [B, M]       bool
  areas          [B, M]       float32  visible-mask area in original-image pixels
                                       (COCO: the annotation's area); not changed by
                                       training crops.
  keypoints      [B, M, K, 3] float32  (x, y, visibility 0/1/2) in input pixels;
                                       (0, 0, 0) when not visible or cropped away.
                                       Absent when the dataset has no keypoints (K = 0).
  masks          [B, M, H, W] uint8    0/1 visible instance masks (only when requested).
  semantic       [B, H, W]    int32    per-pixel semantic class (datasets that have it,
                                       when requested); -1 on the padding.
  image_id       [B]          int64    the dataset's image id (0 on padding examples).
  scale          [B]          float32  input pixels per original pixel: in evaluation,
                                       orig = input / scale (training crops also shift).
  orig_size      [B, 2]       int32    (height, width) of the original image.
  example_valid  [B]          bool     False on the padding examples of a last
                                       evaluation batch (all-zero, classes -1, scale 1).
"""

# Importing the builder modules registers them with TFDS (they import TFDS, not TF).
from vision_jax.data import bundled_photos  # pylint: disable=unused-import
from vision_jax.data import coco_format  # pylint: disable=unused-import
from vision_jax.data import digits  # pylint: disable=unused-import
from vision_jax.data import synthetic_faces  # pylint: disable=unused-import
from vision_jax.data import synthetic_shapes  # pylint: disable=unused-import
from vision_jax.data import synthetic_shapes_video  # pylint: disable=unused-import
