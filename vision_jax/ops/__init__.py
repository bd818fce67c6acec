"""Pure array ops for detection and generation (no flax): boxes, anchors, RoIAlign,
matching and sampling, NMS (greedy, Fast, Soft), corner / center pooling, Gram matrices,
instance masks. Feature warping is the module `vision_jax.ops.warp` (`warp.warp`,
`warp.resize_flow`), not re-exported here: its function shares the module's name.

Conventions: NHWC features; boxes (x1, y1, x2, y2) float32 in input-image pixels; static
shapes with validity masks where counts vary.
"""
from vision_jax.ops.anchors import cell_anchors
from vision_jax.ops.anchors import grid_anchors
from vision_jax.ops.anchors import multilevel_anchors
from vision_jax.ops.anchors import num_cell_anchors
from vision_jax.ops.boxes import box_area
from vision_jax.ops.boxes import box_convert
from vision_jax.ops.boxes import box_ioa
from vision_jax.ops.boxes import box_iou
from vision_jax.ops.boxes import BoxCoder
from vision_jax.ops.boxes import clip_boxes
from vision_jax.ops.boxes import cxcywh_to_xyxy
from vision_jax.ops.boxes import decode_boxes
from vision_jax.ops.boxes import encode_boxes
from vision_jax.ops.boxes import generalized_box_iou
from vision_jax.ops.boxes import nonempty
from vision_jax.ops.boxes import paired_box_iou
from vision_jax.ops.boxes import paired_generalized_box_iou
from vision_jax.ops.boxes import xywh_to_xyxy
from vision_jax.ops.boxes import xyxy_to_cxcywh
from vision_jax.ops.boxes import xyxy_to_xywh
from vision_jax.ops.boxes import yxyx_to_xyxy
from vision_jax.ops.corner_pooling import cascade_corner_pool
from vision_jax.ops.corner_pooling import center_pool
from vision_jax.ops.corner_pooling import corner_pool
from vision_jax.ops.deform_conv import deform_conv2d
from vision_jax.ops.gram import gram_matrix
from vision_jax.ops.masks import assemble_masks
from vision_jax.ops.masks import box_region
from vision_jax.ops.masks import downsample_masks
from vision_jax.ops.matching import match
from vision_jax.ops.matching import Matches
from vision_jax.ops.matching import Sample
from vision_jax.ops.matching import sample_balanced
from vision_jax.ops.suppression import batched_nms
from vision_jax.ops.suppression import fast_nms
from vision_jax.ops.suppression import FastNmsResult
from vision_jax.ops.suppression import nms
from vision_jax.ops.suppression import NmsResult
from vision_jax.ops.suppression import soft_nms
from vision_jax.ops.suppression import SoftNmsResult
from vision_jax.ops.suppression import vote
from vision_jax.ops.pooling import assign_fpn_levels
from vision_jax.ops.pooling import multilevel_roi_align
from vision_jax.ops.pooling import roi_align
