"""torchvision's Mask R-CNN / Keypoint R-CNN, timed as a reference for ours: the train
step (`mask_rcnn_train_step_seconds`) and inference (`mask_rcnn_inference_seconds`).

  from vision_jax.benchmarks import torchvision_reference as tvr
  if tvr.available():
    print(tvr.mask_rcnn_train_step_seconds(image_size=(512, 512), batch_size=2,
                                           num_classes=3, max_instances=8))

Inference is timed by `vision_jax.benchmarks.inference` (predict mode of
`launch/benchmark.py`) on the images our predict steps ran on; see
`mask_rcnn_inference_seconds`. The rest of this docstring is about the train step.

`launch/benchmark.py` calls this (through `train_step.run_with_reference`) after timing
our train step, on the batches ours ran on, when the experiment config sets
`benchmark.torchvision_reference = 'mask_rcnn'`, and reports the ratio of the two.
torch and torchvision are imported lazily, inside the functions, so this module imports
without them (e.g. in the project venv; a reference venv with torch and PYTHONPATH
pointing at this checkout runs both).

The model is `maskrcnn_resnet50_fpn` (or `keypointrcnn_resnet50_fpn`) with random
weights, in train mode, stepped with SGD: forward with losses, backward, optimizer step.
Every step gets its own images and targets, as in training: our own batches when given
(`batches`: the detection batch contract of `vision_jax.data`, e.g. the batches our
timed steps ran on; `images_and_targets` converts them), otherwise distinct synthetic
ones per step; all are built before the timed loop. torchvision's transform resizes
every image so its short side is `min_size` (capped by `max_size` on the long side); both
are set to the image's own sides, so it runs at scale 1 on the same pixels as ours (it
still pads to a multiple of 32, as ours does for the FPN).

The SGD step runs with learning rate 0, so the weights keep their initial values and
a step's work depends on its batch only. With random weights and a real learning rate
(0.02) torchvision's losses reach NaN after one step (its random frozen-BN backbone makes
the mask loss ~270 at step 0); its NaN proposals are then dropped, the heads see only
the appended ground-truth boxes, and the step gets ~1 s cheaper than a real one. The
results say how many RoIs reached the box head and whether every timed loss was finite.
"""

from vision_jax.benchmarks import threads as threads_lib


def import_error() -> str | None:
  """None when torch and torchvision import; otherwise why not (the ImportError)."""
  try:
    import torch  # pylint: disable=g-import-not-at-top,unused-import
    import torchvision  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError as e:
    return f'{type(e).__name__}: {e}'
  return None


def available() -> bool:
  """True when torch and torchvision are importable."""
  return import_error() is None


def _targets(torch, rng, *, batch_size, image_size, num_classes, objects, keypoints):
  """Synthetic targets, `objects` per image, as torchvision's train mode takes them.

  Per image: 'boxes' [n, 4] float (x1, y1, x2, y2) pixels, 1/8 .. 1/2 of each side;
  'labels' [n] int64 in 1..num_classes (0 is background); with keypoints == 0, 'masks'
  [n, H, W] uint8, each box's ellipse; else 'keypoints' [n, K, 3] (x, y, visibility 2)
  uniformly inside the box.
  """
  h, w = image_size
  ys, xs = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing='ij')
  targets = []
  for _ in range(batch_size):
    sizes = rng.uniform(1 / 8, 1 / 2, size=(objects, 2)) * [w, h]
    corners = rng.uniform(0, 1, size=(objects, 2)) * ([w, h] - sizes)
    boxes = torch.tensor(list(zip(corners[:, 0], corners[:, 1], corners[:, 0] + sizes[:, 0],
                                  corners[:, 1] + sizes[:, 1])), dtype=torch.float32)
    target = {'boxes': boxes,
              'labels': torch.tensor(rng.integers(1, num_classes + 1, size=objects))}
    if keypoints:
      u = torch.tensor(rng.uniform(0, 1, size=(objects, keypoints, 2)), dtype=torch.float32)
      xy = boxes[:, None, :2] + u * (boxes[:, None, 2:] - boxes[:, None, :2])
      target['keypoints'] = torch.cat([xy, torch.full_like(xy[..., :1], 2.0)], dim=-1)
    else:
      cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
      rx, ry = (boxes[:, 2] - boxes[:, 0]) / 2, (boxes[:, 3] - boxes[:, 1]) / 2
      inside = (((xs[None] - cx[:, None, None]) / rx[:, None, None]) ** 2
                + ((ys[None] - cy[:, None, None]) / ry[:, None, None]) ** 2) <= 1.0
      target['masks'] = inside.to(torch.uint8)
    targets.append(target)
  return targets


def images_and_targets(torch, batch: dict, *, keypoints: int = 0):
  """One of our detection batches (numpy, `vision_jax.data`'s contract) as torchvision's
  train-mode inputs: images [3, H, W] float in 0..1, targets with 'boxes' (x1, y1, x2, y2
  pixels, as ours), 'labels' (our class + 1; 0 is background) and 'masks' [n, H, W] uint8
  (or 'keypoints' [n, K, 3] with keypoints > 0) of the valid, non-crowd instances. Boxes
  without area (torchvision refuses them) are left out.
  """
  import numpy as np  # pylint: disable=g-import-not-at-top
  images, targets = [], []
  for i in range(len(batch['image'])):
    images.append(torch.tensor(np.asarray(batch['image'][i])).permute(2, 0, 1)
                  .float().div(255.0).contiguous())
    boxes = np.asarray(batch['boxes'][i], np.float32)
    keep = np.asarray(batch['valid'][i], bool) & ~np.asarray(batch['is_crowd'][i], bool)
    keep &= (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    target = {'boxes': torch.from_numpy(boxes[keep].copy()),
              'labels': torch.from_numpy(np.asarray(batch['classes'][i])[keep].astype(np.int64) + 1)}
    if keypoints:
      if 'keypoints' not in batch:
        raise ValueError('a Keypoint R-CNN reference needs batches with keypoints')
      target['keypoints'] = torch.from_numpy(
          np.asarray(batch['keypoints'][i], np.float32)[keep].copy())
    else:
      if 'masks' not in batch:
        raise ValueError('a Mask R-CNN reference needs batches with masks')
      target['masks'] = torch.from_numpy(np.asarray(batch['masks'][i], np.uint8)[keep].copy())
    targets.append(target)
  return images, targets


def _model(torchvision, *, num_classes, keypoints, trainable_backbone_layers, **kwargs):
  """(model, trainable layers, backbone norm name)."""
  detection = torchvision.models.detection
  if trainable_backbone_layers is None:
    # torchvision's own default for an untrained model: every layer trainable and plain
    # BatchNorm2d (it freezes layers and BN only for pretrained weights).
    builder = (detection.keypointrcnn_resnet50_fpn if keypoints
               else detection.maskrcnn_resnet50_fpn)
    extra = dict(num_keypoints=keypoints) if keypoints else {}
    model = builder(weights=None, weights_backbone=None, num_classes=num_classes + 1,
                    **extra, **kwargs)
    return model, 5, 'BatchNorm2d'
  # The backbone torchvision builds for pretrained weights (FrozenBatchNorm2d, the first
  # 5 - n layers frozen), here with random weights.
  backbone = detection.backbone_utils.resnet_fpn_backbone(
      backbone_name='resnet50', weights=None,
      norm_layer=torchvision.ops.misc.FrozenBatchNorm2d,
      trainable_layers=trainable_backbone_layers)
  if keypoints:
    model = detection.KeypointRCNN(backbone, num_classes=num_classes + 1,
                                   num_keypoints=keypoints, **kwargs)
  else:
    model = detection.MaskRCNN(backbone, num_classes=num_classes + 1, **kwargs)
  return model, trainable_backbone_layers, 'FrozenBatchNorm2d'


def mask_rcnn_train_step_seconds(*, image_size, batch_size: int, num_classes: int,
                                 rpn_pre_nms_top_n_train: int = 2000,
                                 rpn_post_nms_top_n_train: int = 2000,
                                 rpn_batch_size_per_image: int = 256,
                                 box_batch_size_per_image: int = 512,
                                 box_positive_fraction: float = 0.25,
                                 max_instances: int = 8, objects_per_image: int = 3,
                                 keypoints: int = 0,
                                 trainable_backbone_layers: int | None = None,
                                 steps: int = 5, warmup: int = 2, seed: int = 0,
                                 batches=None, threads: int | None = None) -> dict:
  """Times torchvision's R50-FPN Mask R-CNN (or Keypoint R-CNN) train step on this CPU.

  Args:
    image_size: (H, W) of every image; the model runs at this size (scale 1).
    batch_size: B images per step.
    num_classes: thing classes, background excluded (the model gets num_classes + 1).
    rpn_pre_nms_top_n_train: proposals kept per FPN level before NMS (torchvision's
      default 2000).
    rpn_post_nms_top_n_train: proposals kept per image after NMS (default 2000).
    rpn_batch_size_per_image: anchors sampled per image for the RPN loss (default 256).
    box_batch_size_per_image: RoIs sampled per image for the heads (default 512).
    box_positive_fraction: positive share of those RoIs (default 0.25).
    max_instances: cap on objects per image (the data's padding size).
    objects_per_image: objects in each synthetic image, at most max_instances.
    keypoints: K > 0 builds keypointrcnn_resnet50_fpn with K keypoints (no mask head)
      instead of maskrcnn_resnet50_fpn.
    trainable_backbone_layers: None keeps torchvision's default for random weights (all
      5 ResNet stages trainable, BatchNorm2d in train mode); n in 0..5 builds the backbone
      torchvision uses with pretrained weights instead (FrozenBatchNorm2d, n trainable
      stages; 3 is its default there).
    steps: timed steps, after `warmup` untimed ones.
    seed: seeds torch (weights) and the synthetic data.
    batches: None, or a sequence of our detection batches (numpy dicts, at least `steps`
      of them, `batch_size` images of `image_size` each): the timed steps run on the last
      `steps`, in order, the warm-up steps on those before (the first of the timed ones
      when there are none). None: `warmup + steps` distinct synthetic batches, one per
      step, `objects_per_image` objects each.
    threads: torch's thread count for the run; None: every core this process may run
      on (a process pinned to one core runs at 1).

  Returns:
    {'seconds_per_step', 'steps_per_s', 'images_per_s' (mean over the timed steps),
     'cpu_per_wall', 'busy_threads', 'cpu_s_per_step' (the timed loop's CPU use:
     `threads.CpuUsage`),
     'torch_threads' (set for the run), 'data' (where the batches came from),
     'distinct_batches' (how many the timed steps ran on), 'torch_version',
     'torchvision_version', 'trainable_backbone_layers', 'backbone_norm', 'model',
     'image_size', 'batch_size', 'objects_per_image', 'head_rois_per_image' and
     'box_head_rois_per_image' (RoIs per image reaching the mask / keypoint head and the
     box head, mean over the timed steps), 'losses_finite' (every timed step's loss)}.
  """
  import numpy as np  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  import torchvision  # pylint: disable=g-import-not-at-top

  if steps < 1:
    raise ValueError(f'steps must be >= 1, got {steps}')
  h, w = (int(s) for s in image_size)
  objects = max(1, min(int(objects_per_image), int(max_instances)))
  previous_threads = torch.get_num_threads()
  if threads is None:
    threads = len(threads_lib.available_cores())
  torch.set_num_threads(int(threads))
  if batches is not None and len(batches) < steps:
    raise ValueError(f'{len(batches)} batches for {steps} timed steps')
  try:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model, trainable, norm = _model(
        torchvision, num_classes=num_classes, keypoints=keypoints,
        trainable_backbone_layers=trainable_backbone_layers, min_size=min(h, w),
        max_size=max(h, w), rpn_pre_nms_top_n_train=rpn_pre_nms_top_n_train,
        rpn_post_nms_top_n_train=rpn_post_nms_top_n_train,
        rpn_batch_size_per_image=rpn_batch_size_per_image,
        box_batch_size_per_image=box_batch_size_per_image,
        box_positive_fraction=box_positive_fraction)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    # lr 0: the optimizer's work is done, the weights stay put (module docstring).
    optimizer = torch.optim.SGD(params, lr=0.0, momentum=0.9)
    # (images, targets) of each step, warm-up first; built before anything is timed.
    if batches is not None:
      converted = [images_and_targets(torch, b, keypoints=keypoints) for b in batches]
      timed, before = converted[len(converted) - steps:], converted[:len(converted) - steps]
      before = before or timed[:1]
      inputs = [before[i % len(before)] for i in range(warmup)] + timed
      data = 'the given batches'
    else:
      generator = torch.Generator().manual_seed(seed)
      inputs = [(list(torch.rand(batch_size, 3, h, w, generator=generator)),
                 _targets(torch, rng, batch_size=batch_size, image_size=(h, w),
                          num_classes=num_classes, objects=objects, keypoints=keypoints))
                for _ in range(warmup + steps)]
      data = 'synthetic, one batch per step'
    for images, _ in inputs:
      if len(images) != batch_size or any(tuple(im.shape[1:]) != (h, w) for im in images):
        raise ValueError(f'batches must hold {batch_size} images of {h}x{w}')
    timed_objects = [sum(len(t['boxes']) for t in targets) / batch_size
                     for _, targets in inputs[warmup:]]

    # RoIs reaching the mask (keypoint) head: torchvision runs it on the positives only.
    head_rois, box_rois, losses_finite = [], [], []
    pooler = model.roi_heads.keypoint_roi_pool if keypoints else model.roi_heads.mask_roi_pool
    pooler.register_forward_pre_hook(
        lambda module, args: head_rois.append(sum(len(b) for b in args[1])))
    model.roi_heads.box_roi_pool.register_forward_pre_hook(
        lambda module, args: box_rois.append(sum(len(b) for b in args[1])))

    def step(images, targets):
      losses = model(images, targets)
      loss = sum(losses.values())
      optimizer.zero_grad(set_to_none=True)
      loss.backward()
      optimizer.step()
      losses_finite.append(bool(torch.isfinite(loss.detach())))

    for images, targets in inputs[:warmup]:
      step(images, targets)
    with threads_lib.CpuUsage(calls=steps) as usage:
      for images, targets in inputs[warmup:]:
        step(images, targets)
    seconds = usage.result['wall_s'] / steps
    threads_used = torch.get_num_threads()
    timed_rois = head_rois[-steps:]
    timed_box_rois = box_rois[-steps:]
  finally:
    torch.set_num_threads(previous_threads)
  return {
      'seconds_per_step': seconds,
      'steps_per_s': 1.0 / seconds,
      'images_per_s': batch_size / seconds,
      'cpu_per_wall': usage.result['cpu_per_wall'],
      'busy_threads': usage.result['busy_threads'],
      'cpu_s_per_step': usage.result['cpu_s_per_call'],
      'torch_threads': threads_used,
      'data': data,
      'distinct_batches': len({id(pair) for pair in inputs[warmup:]}),
      'torch_version': torch.__version__,
      'torchvision_version': torchvision.__version__,
      'trainable_backbone_layers': trainable,
      'backbone_norm': norm,
      'model': 'keypointrcnn_resnet50_fpn' if keypoints else 'maskrcnn_resnet50_fpn',
      'image_size': (h, w),
      'batch_size': batch_size,
      'objects_per_image': float(np.mean(timed_objects)),
      'head_rois_per_image': float(np.mean(timed_rois)) / batch_size if timed_rois else 0.0,
      'box_head_rois_per_image': float(np.mean(timed_box_rois)) / batch_size,
      'losses_finite': all(losses_finite[-steps:]),
  }


def mask_rcnn_inference_seconds(*, batches, num_classes: int,
                                rpn_pre_nms_top_n_test: int = 1000,
                                rpn_post_nms_top_n_test: int = 1000,
                                rpn_nms_thresh: float = 0.7, box_score_thresh: float = 0.05,
                                box_nms_thresh: float = 0.5, box_detections_per_img: int = 100,
                                warmup: int = 1, seed: int = 0,
                                threads: int | None = None) -> dict:
  """Times torchvision's R50-FPN Mask R-CNN inference (eval mode, no_grad) on this CPU.

  The model is `maskrcnn_resnet50_fpn` with random weights (its BatchNorm2d layers in
  eval mode: running mean 0, variance 1), told not to resize (min_size and max_size are
  the images' sides: scale 1; its transform still normalises, calls interpolate at
  scale 1 and pads to a multiple of 32). A call is what a user times:
  `model([image.float() / 255 for image in batch])`, from uint8 images to detections
  with full-image mask probabilities (`paste_masks_in_image`), the uint8 -> float
  conversion included (ours normalises uint8 images inside its jit'd predict too).

  Args:
    batches: a sequence of uint8 arrays [B, H, W, 3] (numpy, RGB), e.g. the batches our
      predict steps ran on: the first `warmup` calls run on the first batches (cycled),
      the timed calls on the others, one call per batch, in order (the first one too
      when there is only one).
    num_classes: thing classes, background excluded (the model gets num_classes + 1).
    rpn_pre_nms_top_n_test: proposals kept per FPN level before NMS (default 1000).
    rpn_post_nms_top_n_test: proposals kept per image after NMS (default 1000).
    rpn_nms_thresh, box_score_thresh, box_nms_thresh, box_detections_per_img:
      torchvision's test settings (its defaults 0.7, 0.05, 0.5, 100).
    warmup: untimed calls before the timed ones.
    seed: seeds torch (the random weights).
    threads: torch's thread count for the run; None: every core this process may run
      on (a process pinned to one core runs at 1).

  Returns:
    {'seconds_per_batch', 'images_per_s' (mean over the timed calls), 'cpu_per_wall',
     'busy_threads', 'cpu_s_per_batch' (the timed loop's CPU use: `threads.CpuUsage`),
     'timed_batches', 'torch_threads', 'torch_version', 'torchvision_version', 'model',
     'image_size', 'batch_size', 'box_head_rois_per_image' (proposals reaching the box
     head: at most rpn_post_nms_top_n_test, fewer when the RPN's NMS leaves fewer),
     'detections_per_image' (reaching the mask head: at most box_detections_per_img,
     fewer when the score threshold and NMS leave fewer), both means over the timed
     calls, and 'outputs_finite' (every timed call's scores)}.
  """
  import numpy as np  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  import torchvision  # pylint: disable=g-import-not-at-top

  batches = [np.asarray(b) for b in batches]
  if not batches:
    raise ValueError('no batches to time')
  shapes = {b.shape for b in batches}
  if len(shapes) != 1 or len(next(iter(shapes))) != 4 or batches[0].shape[-1] != 3:
    raise ValueError(f'batches must be uint8 [B, H, W, 3] of one shape, got {sorted(shapes)}')
  batch_size, h, w, _ = batches[0].shape
  timed = batches[1:] or batches[:1]
  previous_threads = torch.get_num_threads()
  if threads is None:
    threads = len(threads_lib.available_cores())
  torch.set_num_threads(int(threads))
  try:
    torch.manual_seed(seed)
    model = torchvision.models.detection.maskrcnn_resnet50_fpn(
        weights=None, weights_backbone=None, num_classes=num_classes + 1,
        min_size=min(h, w), max_size=max(h, w),
        rpn_pre_nms_top_n_test=rpn_pre_nms_top_n_test,
        rpn_post_nms_top_n_test=rpn_post_nms_top_n_test, rpn_nms_thresh=rpn_nms_thresh,
        box_score_thresh=box_score_thresh, box_nms_thresh=box_nms_thresh,
        box_detections_per_img=box_detections_per_img)
    model.eval()
    # [3, H, W] uint8 tensors of every batch, built before anything is timed.
    inputs = [[torch.from_numpy(np.array(image, np.uint8)).permute(2, 0, 1).contiguous()
               for image in batch] for batch in batches]
    timed_inputs = inputs[1:] or inputs[:1]
    box_rois, mask_rois, finite = [], [], []
    model.roi_heads.box_roi_pool.register_forward_pre_hook(
        lambda module, args: box_rois.append(sum(len(b) for b in args[1])))
    model.roi_heads.mask_roi_pool.register_forward_pre_hook(
        lambda module, args: mask_rois.append(sum(len(b) for b in args[1])))

    def call(images):
      with torch.no_grad():
        outputs = model([image.float().div(255.0) for image in images])
      finite.append(all(bool(torch.isfinite(o['scores']).all()) for o in outputs))

    for i in range(warmup):
      call(inputs[i % len(inputs)])
    box_start, mask_start = len(box_rois), len(mask_rois)
    with threads_lib.CpuUsage(calls=len(timed_inputs)) as usage:
      for images in timed_inputs:
        call(images)
    seconds = usage.result['wall_s'] / len(timed_inputs)
    threads_used = torch.get_num_threads()
  finally:
    torch.set_num_threads(previous_threads)
  return {
      'seconds_per_batch': seconds,
      'images_per_s': batch_size / seconds,
      'cpu_per_wall': usage.result['cpu_per_wall'],
      'busy_threads': usage.result['busy_threads'],
      'cpu_s_per_batch': usage.result['cpu_s_per_call'],
      'timed_batches': len(timed),
      'torch_threads': threads_used,
      'torch_version': torch.__version__,
      'torchvision_version': torchvision.__version__,
      'model': 'maskrcnn_resnet50_fpn (eval, no_grad)',
      'image_size': (h, w),
      'batch_size': batch_size,
      'box_head_rois_per_image': float(np.mean(box_rois[box_start:])) / batch_size,
      'detections_per_image': float(np.mean(mask_rois[mask_start:])) / batch_size,
      'outputs_finite': all(finite[-len(timed_inputs):]),
  }
