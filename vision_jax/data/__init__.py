"""Datasets (TFDS builders, procedural, no download) and tf.data input pipelines.

Importing this package registers the project's TFDS builders (`synthetic_shapes`).

The detection batch contract
----------------------------
Every detection-style pipeline (`synthetic_shapes`, `coco/2017`, local COCO-format
data) yields numpy dicts of fixed shapes. B is the per-process batch size, (H, W) the
configured input size, M = `max_instances`, K the number of keypoints per instance.

  image          [B, H, W, 3] float32  RGB in [0, 1], resized (aspect kept) then
                                       zero-padded at the bottom/right to (H, W).
  boxes          [B, M, 4]    float32  (x1, y1, x2, y2) in input-image pixels.
  classes        [B, M]       int32    0-based thing class; -1 on padding.
  valid          [B, M]       bool     True for real instances.
  is_crowd       [B, M]       bool
  areas          [B, M]       float32  visible-mask area in original-image pixels.
  keypoints      [B, M, K, 3] float32  (x, y, visibility 0/1/2) in input pixels.
  masks          [B, M, H, W] uint8    visible instance masks (only when requested).
  semantic       [B, H, W]    int32    per-pixel semantic class (datasets that have it).
  image_id       [B]          int64    the dataset's image id.
  scale          [B]          float32  input pixels per original pixel.
  orig_size      [B, 2]       int32    (height, width) of the original image.
  example_valid  [B]          bool     False on the padding examples of a last
                                       evaluation batch.
"""
