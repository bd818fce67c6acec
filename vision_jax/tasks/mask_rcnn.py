"""Mask R-CNN / Keypoint R-CNN as a trainer task (config.task = 'mask_rcnn').

One jit'd train step holds the whole two-stage pipeline with static shapes: backbone +
FPN, RPN losses on sampled anchors, proposals (top-k, NMS), RoI sampling with the ground
truth appended, box-head losses, and the mask / keypoint losses on the positive RoIs.
Prediction runs `rcnn_inference.predict` (detections, pasted masks, keypoints);
evaluation pastes each mask at the image's original resolution (`mask_probs`).
"""
import functools

from absl import logging
import jax
import jax.numpy as jnp

from vision_jax.losses import rcnn as rcnn_losses
from vision_jax.models import mask_rcnn
from vision_jax.models import mask_rcnn_torchvision
from vision_jax.models import rcnn_inference
from vision_jax.ops import switch
from vision_jax.tasks import detection_base
from vision_jax.train import config as config_lib

MASK_SIZE = 28  # mask head output side
# Heads that train on the positive RoIs only (their names in the parameter tree).
POSITIVE_ROI_HEADS = ('mask_predictor', 'keypoint_predictor')
LOSS_NAMES = ('rpn_objectness', 'rpn_box', 'box_cls', 'box_reg', 'mask', 'keypoint')


class MaskRCNNTask(detection_base.DetectionTask):

  def __init__(self, config):
    super().__init__(config)
    try:
      self.model_config, self.model = self.build_model(config.model)
    except (TypeError, ValueError) as e:
      raise config_lib.ConfigError(f'config.model: {e}') from e
    if self.model_config.keypoint_head and not self.source.num_keypoints:
      raise config_lib.ConfigError(f'model.keypoint_head is set but {config.data.dataset} '
                                   'has no keypoints')
    self.anchors = mask_rcnn.anchors(self.model_config, self.image_size)
    self.loss_weights = detection_base.loss_weights(config, self.default_loss_weights(),
                                                    self.other_loss_keys())

  def build_model(self, model_config):
    """(the model's config, the flax module) from `config.model`."""
    cfg = mask_rcnn.from_config_dict(model_config, self.source.num_classes,
                                     self.source.num_keypoints)
    return cfg, mask_rcnn.MaskRCNN(cfg)

  def default_loss_weights(self) -> dict[str, float]:
    return {name: 1.0 for name in LOSS_NAMES}

  def other_loss_keys(self) -> tuple[str, ...]:
    """`config.loss` keys that are not `<term>_weight`."""
    return ()

  def initial_variables(self, rng):
    variables = super().initial_variables(rng)
    if (self.model_config.norm == 'frozen_batch'
        and not self.config.get('init', {}).get('torchvision_checkpoint')):
      logging.warning('model.norm=frozen_batch without init.torchvision_checkpoint: the '
                      'backbone norms stay identities (pretrained statistics expected); '
                      'set init.torchvision_checkpoint or use model.norm=batch / group')
    return variables

  def variables_from_torchvision(self, variables, state_dict):
    """A whole torchvision R-CNN checkpoint, or an ImageNet ResNet for the backbone."""
    return mask_rcnn_torchvision.init_from_torchvision(variables, state_dict,
                                                       self.model_config)

  def losses(self, params, model_state, batch, rng):
    """All Mask R-CNN losses of one batch -> (weighted total, (metrics, state updates))."""
    loss, metrics, updates, _ = self.rcnn_losses(params, model_state, batch, rng)
    return loss, (metrics, updates)

  def rcnn_losses(self, params, model_state, batch, rng):
    """(weighted total, metrics, batch-norm updates, the FPN pyramid) of one batch: the
    pyramid is there for heads built on top (UPSNet's)."""
    cfg = self.model_config
    model = self.model
    variables = {'params': params, **model_state}
    rpn_key, roi_key = jax.random.split(rng)
    pyramid, updates = model.apply(variables, batch['image'], train=True,
                                   method=mask_rcnn.MaskRCNN.features, mutable=['batch_stats'])
    rpn_logits, rpn_deltas = model.apply(variables, pyramid, method=mask_rcnn.MaskRCNN.rpn)
    gt_boxes = batch['boxes']
    gt_valid = batch['valid'] & ~batch['is_crowd']
    terms = {}
    terms['rpn_objectness'], terms['rpn_box'] = rcnn_losses.rpn_losses(
        cfg, jnp.concatenate(self.anchors), rpn_logits, rpn_deltas, gt_boxes, gt_valid,
        rpn_key)

    proposals, _, proposal_valid = rcnn_inference.propose(
        cfg, self.anchors, rpn_logits, rpn_deltas, detection_base.image_sizes(batch, self.image_size),
        train=True)
    sample = rcnn_losses.sample_rois(cfg, roi_key, proposals, proposal_valid, gt_boxes,
                                     batch['classes'], gt_valid)
    class_logits, box_deltas = model.apply(variables, pyramid, sample.boxes,
                                           method=mask_rcnn.MaskRCNN.box_head)
    terms['box_cls'], terms['box_reg'] = rcnn_losses.box_head_losses(
        cfg, class_logits, box_deltas, sample)

    loss = self._weighted_sum(terms)
    if cfg.mask_head or cfg.keypoint_head:
      # The heads see the leading RoI slots, where the positives are; they run on the
      # smallest compiled slot count that holds every image's positives (the losses
      # equal those over all slots: the extra slots are not positive). `switch_loss`
      # keeps the untaken branches from costing anything under autodiff.
      buckets = rcnn_losses.positive_slot_buckets(cfg)
      most = jnp.max(jnp.sum(sample.positive, axis=1))
      branch = jnp.searchsorted(jnp.asarray(buckets), most)
      branches = [functools.partial(self._positive_roi_losses, slots=k) for k in buckets]
      head_params = {name: params[name] for name in POSITIVE_ROI_HEADS if name in params}
      head_loss, head_terms = switch.switch_loss(branch, branches, (head_params, pyramid),
                                                 (batch, sample))
      loss = loss + head_loss
      terms.update(head_terms)
    metrics = {'loss': loss, **{f'{name}_loss': value for name, value in terms.items()},
               'positive_rois': jnp.sum(sample.positive) / sample.positive.shape[0],
               'proposals': jnp.sum(proposal_valid) / proposal_valid.shape[0]}
    return loss, metrics, updates, pyramid

  def _positive_roi_losses(self, head_inputs, data, *, slots):
    """Mask / keypoint losses on the first `slots` RoIs of each image (positives lead).

    Args:
      head_inputs: (the heads' params {POSITIVE_ROI_HEADS name: ...}, FPN pyramid).
      data: (batch, RoiSample).
      slots: static RoI count per image.

    Returns:
      (weighted sum of the terms, {'mask': ..., 'keypoint': ...}).
    """
    (head_params, pyramid), (batch, sample) = head_inputs, data
    cfg, model = self.model_config, self.model
    variables = {'params': head_params}
    rois, positive = sample.boxes[:, :slots], sample.positive[:, :slots]
    gt_index, labels = sample.gt_index[:, :slots], sample.labels[:, :slots]
    terms = {}
    if cfg.mask_head:
      mask_logits = model.apply(variables, pyramid, rois, method=mask_rcnn.MaskRCNN.mask_head)
      targets = rcnn_losses.crop_masks(batch['masks'], gt_index, rois, mask_logits.shape[2])
      terms['mask'] = rcnn_losses.mask_loss(mask_logits, labels,
                                            (targets >= 0.5).astype(jnp.float32), positive)
    if cfg.keypoint_head:
      heatmaps = model.apply(variables, pyramid, rois, method=mask_rcnn.MaskRCNN.keypoint_head)
      keypoints = jnp.take_along_axis(batch['keypoints'], gt_index[:, :, None, None], axis=1)
      index, valid = rcnn_losses.keypoint_targets(keypoints, rois, heatmaps.shape[2])
      terms['keypoint'] = rcnn_losses.keypoint_loss(heatmaps, index, valid & positive[..., None])
    return self._weighted_sum(terms), terms

  def _weighted_sum(self, terms):
    return sum(self.loss_weights[name] * value for name, value in terms.items())

  def train_step(self, state, batch, rng):
    return state.minimize(self.losses, state.model_state, batch, rng)

  def predict_step(self, state, batch):
    sizes = detection_base.image_sizes(batch, self.image_size) if 'orig_size' in batch else None
    return rcnn_inference.predict(self.model, state.variables, batch['image'], sizes)

  def data_options(self):
    cfg = self.model_config
    return {'with_masks': cfg.mask_head,
            'num_keypoints': self.source.num_keypoints if cfg.keypoint_head else 0}

  def evaluator_options(self):
    cfg = self.model_config
    iou_types = ['bbox']
    if cfg.mask_head:
      iou_types.append('segm')
    options = {'max_detections': cfg.detections_per_image, 'mask_key': 'mask_probs'}
    if cfg.keypoint_head:
      iou_types.append('keypoints')
      sigmas = self.config.eval.get('keypoint_sigmas')
      options.update(keypoint_names=self.source.keypoint_names,
                     keypoint_skeleton=self.source.keypoint_skeleton,
                     keypoint_sigmas=tuple(sigmas) if sigmas else None)
    return {'iou_types': iou_types, **options}


def create(config) -> MaskRCNNTask:
  return MaskRCNNTask(config)
