"""The FCN-score judge: a small segmentation network trained deterministically on real
images, which segments generated ones (the FCN-score of pix2pix, Isola et al. 2017, §4.2).

  hparams = dict(num_classes=5, seed=0)
  variables = load_or_train_segmentation_judge('/tmp/judges/scenes.msgpack', real_x,
                                               real_semantic, **hparams)
  predicted = predict_segmentation(variables, fake_x, **hparams)       # [N, H, W] int32
  scores = segmentation_scores(predicted, semantic, num_classes=5)     # the FCN-scores
  upper = segmentation_scores(predict_segmentation(variables, real_x, **hparams),
                              semantic, num_classes=5)                  # on real images

A generator that translates semantic maps into images scores well when the judge, which
only ever saw real images, finds the input's classes in its output; the judge's score on
the real images of the same maps is the upper bound, reported beside it.

Conventions
  images     [N, H, W, C] float32 in [0, 1] (a tanh output x maps to (x + 1) / 2);
             H and W divisible by 2 ** len(widths) (8 by default); all images of one
             judge share C.
  semantic   [N, H, W] int in [0, num_classes), one class per pixel.
  logits     [N, H, W, num_classes] float32.
The same keyword hyperparameters (`SegmentationJudgeHParams` fields) go to training,
caching and prediction; prediction uses the architecture ones and ignores the others.

Network (`SegmentationFCN`, widths (16, 32, 64), ~115k params for 3 channels and 5
classes): a U-Net without norms. Input mapped to [-1, 1]; per width a 4x4 stride-2 conv
(padding 1) + ReLU (64 -> 32 -> 16 -> 8 px); a 3x3 conv + ReLU at the bottom; then per
level a nearest-neighbour 2x upsampling, concatenation with the encoder feature of that
resolution and a 3x3 conv + ReLU, the last level concatenating the input image itself and
giving the logits (3x3 conv, no ReLU). Receptive field ~60 px at 64x64, so a pixel's
class may depend on the whole shape around it (circle vs square vs triangle). No batch
norm, no dropout, no max pool: the variables are {'params'} only.

Training (`train_segmentation_judge`): per-pixel softmax cross-entropy, AdamW (weight
decay 1e-4), 5% linear warm-up then cosine decay from 3e-3; `steps` steps of
`batch_size` images from per-epoch permutations, each image flipped left-right with
probability 1/2 (with its map; no vertical flip, which would put the sky under the
ground). A Python loop over one jitted step (compiled once per hyperparameters, image
shape and data size, per process). Randomness comes only from `seed`, so the same inputs
and seed give bit-identical params on the same machine and software (tested on CPU; on
GPU, XLA needs XLA_FLAGS=--xla_gpu_deterministic_ops=true).
Measured on `synthetic_shapes/styles` (64x64; trained on 1,500 train scenes, scored on 500
validation scenes; pixel / class accuracy / class IoU): the shapes configs' 600 steps of
32 (lr 3e-3, class_balance 0.5) give 0.948 / 0.737 / 0.616 on style A; 1500 steps of 16
at lr 6e-3 with class_balance 1.0 give 0.981 / 0.937 / 0.845 (about 90 s of CPU). The
remaining error is telling the small (6 px) circles, squares and triangles apart.

Caching (`load_or_train_segmentation_judge`): the classifier judge's machinery
(`judge.load_or_train_cached`): a msgpack file with the variables and a fingerprint
(sha256 of FORMAT_VERSION, the training images' and maps' shapes, dtypes and bytes after
conversion to float32 / int32, and the hyperparameters); missing or stale -> trained and
written atomically; unreadable or not fitting the network -> `JudgeCacheError`.

FCN-scores (`segmentation_scores`), as pix2pix's Cityscapes evaluation: one confusion
matrix accumulated over all pixels of all images, then per-pixel accuracy, mean per-class
accuracy and mean class IoU (definitions and absent-class conventions in its docstring).
"""
import dataclasses
import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from vision_jax.evaluation import judge

FORMAT_VERSION = 1
JudgeCacheError = judge.JudgeCacheError


@dataclasses.dataclass(frozen=True)
class SegmentationJudgeHParams:
  """Everything that determines a segmentation judge's variables (besides its data).

  Attributes:
    num_classes: number of semantic classes.
    seed: the one source of randomness (init, batch order, flips).
    steps: optimizer steps.
    batch_size: images per step (at most the number of training images).
    learning_rate: peak AdamW learning rate.
    weight_decay: AdamW's decoupled weight decay.
    warmup_fraction: fraction of `steps` of linear warm-up before the cosine decay.
    flip: random left-right flips of image and map (augmentation).
    class_balance: exponent b of the class weights of the loss, w_c ~ frequency_c ** -b
      over the training maps, normalised to a mean pixel weight of 1 (0: plain
      cross-entropy; 0.5 lifts small classes such as the shapes against sky and ground).
    widths: channels of the encoder stages (each halves the side).
  """
  num_classes: int
  seed: int = 0
  steps: int = 400
  batch_size: int = 32
  learning_rate: float = 3e-3
  weight_decay: float = 1e-4
  warmup_fraction: float = 0.05
  flip: bool = True
  class_balance: float = 0.5
  widths: Sequence[int] = (16, 32, 64)
  norm: bool = False

  def __post_init__(self):
    object.__setattr__(self, 'widths', tuple(int(w) for w in self.widths))
    if not self.widths:
      raise ValueError('widths must name at least one encoder stage')

  def model(self) -> 'SegmentationFCN':
    return SegmentationFCN(num_classes=self.num_classes, widths=self.widths, norm=self.norm)


def _upsample2(x):
  """[N, H, W, C] -> [N, 2H, 2W, C], nearest neighbour."""
  return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


class SegmentationFCN(nn.Module):
  """The judge network (see the module docstring); float32 throughout."""
  num_classes: int
  widths: Sequence[int] = (16, 32, 64)
  norm: bool = False

  @nn.compact
  def __call__(self, images):
    """images: [N, H, W, C] float32 in [0, 1] -> logits [N, H, W, num_classes] float32."""
    def act(h, name):
      if self.norm:
        h = nn.GroupNorm(num_groups=min(8, h.shape[-1]), name=f'{name}_norm')(h)
      return nn.relu(h)

    x = (jnp.asarray(images, jnp.float32) - 0.5) * 2.0
    skips = [x]
    h = x
    for i, width in enumerate(self.widths):
      h = act(nn.Conv(width, (4, 4), strides=(2, 2), padding=((1, 1), (1, 1)),
                      name=f'down{i}')(h), f'down{i}')
      skips.append(h)
    h = act(nn.Conv(self.widths[-1], (3, 3), padding=1, name='middle')(h), 'middle')
    for i in reversed(range(len(self.widths))):  # up to the resolution of skips[i]
      h = jnp.concatenate([_upsample2(h), skips[i]], axis=-1)
      if i:
        h = act(nn.Conv(self.widths[i - 1], (3, 3), padding=1, name=f'up{i}')(h), f'up{i}')
    return nn.Conv(self.num_classes, (3, 3), padding=1, name='logits')(h)


def _hparams(**hparams) -> SegmentationJudgeHParams:
  known = {f.name for f in dataclasses.fields(SegmentationJudgeHParams)}
  unknown = sorted(set(hparams) - known)
  if unknown:
    raise TypeError(f'unknown segmentation judge hyperparameters {unknown}; known: '
                    f'{sorted(known)}')
  return SegmentationJudgeHParams(**hparams)


def _check_images(images, hp: SegmentationJudgeHParams) -> np.ndarray:
  x = judge._check_images(images)  # pylint: disable=protected-access
  factor = 2 ** len(hp.widths)
  if x.shape[1] % factor or x.shape[2] % factor:
    raise ValueError(f'segmentation judge images need H and W divisible by {factor} '
                     f'(2 ** len(widths)), got {x.shape}')
  return x


def _check_semantic(semantic, num_classes: int, shape: tuple[int, ...]) -> np.ndarray:
  s = np.asarray(semantic)
  if s.shape != tuple(shape) or not np.issubdtype(s.dtype, np.integer):
    raise ValueError(f'semantic maps must be {list(shape)} int, got {s.dtype} {s.shape}')
  if s.size and (s.min() < 0 or s.max() >= num_classes):
    raise ValueError(f'semantic maps must lie in [0, {num_classes}), got '
                     f'[{s.min()}, {s.max()}]')
  return s.astype(np.int32)


@functools.lru_cache(maxsize=4)
def _optimizer_and_step(hp: SegmentationJudgeHParams, n: int):
  """(jitted init, optax transform, jitted train step) for hyperparameters without seed.

  Cached, so that judges trained again in one process (another seed, a stale cache)
  reuse the compiled step; a Python loop over it, as the classifier judge (a
  lax.scan of the same step is much slower on XLA:CPU).
  """
  model = hp.model()
  warmup = int(hp.warmup_fraction * hp.steps)
  schedule = optax.warmup_cosine_decay_schedule(
      0.0, hp.learning_rate, warmup_steps=warmup, decay_steps=max(hp.steps, warmup + 1))
  tx = optax.adamw(schedule, weight_decay=hp.weight_decay)
  steps_per_epoch = n // hp.batch_size

  def loss_fn(params, xb, sb, class_weights):
    logits = model.apply({'params': params}, xb)
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, sb)
    return (losses * class_weights[sb]).mean()

  @jax.jit
  def step(params, opt_state, x, s, class_weights, order_key, flip_key, i):
    epoch_key = jax.random.fold_in(order_key, i // steps_per_epoch)
    order = jax.random.permutation(epoch_key, n)
    idx = jax.lax.dynamic_slice(order, ((i % steps_per_epoch) * hp.batch_size,),
                                (hp.batch_size,))
    xb, sb = x[idx], s[idx]
    if hp.flip:
      flip = jax.random.bernoulli(jax.random.fold_in(flip_key, i), 0.5, (hp.batch_size,))
      xb = jnp.where(flip[:, None, None, None], xb[:, :, ::-1], xb)
      sb = jnp.where(flip[:, None, None], sb[:, :, ::-1], sb)
    loss, grads = jax.value_and_grad(loss_fn)(params, xb, sb, class_weights)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  return jax.jit(model.init), tx, step


def class_weights(semantic, num_classes: int, balance: float) -> np.ndarray:
  """[num_classes] float32 loss weights w_c ~ f_c ** -balance, sum_c f_c w_c = 1.

  f_c is the fraction of pixels of class c in `semantic` (int, any shape); a class with
  no pixel gets weight 0. balance 0 gives all ones.
  """
  counts = np.bincount(np.asarray(semantic).ravel(), minlength=num_classes)[:num_classes]
  freq = counts / max(counts.sum(), 1)
  w = np.where(counts > 0, np.power(np.maximum(freq, 1e-12), -float(balance)), 0.0)
  return (w / max(float(np.sum(freq * w)), 1e-12)).astype(np.float32)


def train_segmentation_judge(images, semantic, *, num_classes: int,
                             **hparams) -> dict[str, Any]:
  """Trains a segmentation judge; deterministic in (images, semantic, hyperparameters).

  Args:
    images: [N, H, W, C] float in [0, 1], real training images (H, W divisible by 8
      with the default widths).
    semantic: [N, H, W] int in [0, num_classes), their semantic maps.
    num_classes: number of classes.
    **hparams: the other `SegmentationJudgeHParams` fields (seed, steps, ...).
  Returns:
    The variables {'params': ...} (float32 jax arrays) for `SegmentationFCN` /
    `predict_segmentation`.
  """
  hp = _hparams(num_classes=num_classes, **hparams)
  x = _check_images(images, hp)
  s = _check_semantic(semantic, num_classes, x.shape[:3])
  n = len(x)
  judge.check_schedule(hp, n)
  init_key, order_key, flip_key = jax.random.split(jax.random.key(hp.seed), 3)
  init, tx, step = _optimizer_and_step(dataclasses.replace(hp, seed=0), n)
  params = init(init_key, x[:1])['params']
  weights = jnp.asarray(class_weights(s, num_classes, hp.class_balance))
  params = judge.run_training('segmentation judge', hp, tx, step, params,
                              (jnp.asarray(x), jnp.asarray(s), weights, order_key,
                               flip_key))
  return {'params': params}


@functools.lru_cache(maxsize=8)
def _jitted_predict(num_classes: int, widths: tuple[int, ...], norm: bool):
  model = SegmentationFCN(num_classes=num_classes, widths=widths, norm=norm)
  return jax.jit(lambda variables, x: jnp.argmax(model.apply(variables, x), axis=-1)
                 .astype(jnp.int32))


def predict_segmentation(variables, images, *, num_classes: int, chunk_size: int = 256,
                         **hparams) -> np.ndarray:
  """The judge's per-pixel classes, in fixed-size chunks (one compilation per shape).

  Args:
    variables: from `train_segmentation_judge` / `load_or_train_segmentation_judge`.
    images: [N, H, W, C] float in [0, 1] (C as in training).
    num_classes: as in training.
    chunk_size: images per device call (the last chunk is zero-padded).
    **hparams: the training hyperparameters; only widths is used.
  Returns:
    [N, H, W] int32 numpy, the argmax class of each pixel.
  """
  hp = _hparams(num_classes=num_classes, **hparams)
  x = _check_images(images, hp)
  predict = _jitted_predict(hp.num_classes, hp.widths, hp.norm)
  out = []
  for start in range(0, len(x), chunk_size):
    chunk = x[start:start + chunk_size]
    pad = chunk_size - len(chunk)
    if pad:
      chunk = np.concatenate([chunk, np.zeros((pad,) + chunk.shape[1:], chunk.dtype)])
    out.append(np.asarray(predict(variables, chunk))[:chunk_size - pad])
  if not out:
    return np.zeros(x.shape[:3], np.int32)
  return np.concatenate(out)


def fingerprint(images, semantic, **hparams) -> str:
  """sha256 hex of FORMAT_VERSION, the training data and the hyperparameters."""
  hp = _hparams(**hparams)
  x = _check_images(images, hp)
  s = _check_semantic(semantic, hp.num_classes, x.shape[:3])
  return judge.data_fingerprint(
      f'vision_jax.evaluation.segmentation_judge format {FORMAT_VERSION}', (x, s),
      dataclasses.asdict(hp))


def load_or_train_segmentation_judge(cache_path: str, images, semantic,
                                     **hparams) -> dict[str, Any]:
  """The judge's variables from `cache_path`, training and writing them when needed.

  Args:
    cache_path: a local file path (its folder is created).
    images: [N, H, W, C] float in [0, 1], real training images.
    semantic: [N, H, W] int in [0, num_classes), their semantic maps.
    **hparams: `SegmentationJudgeHParams` fields; num_classes is required.
  Returns:
    The variables {'params': ...}, as `train_segmentation_judge` returns them.
  Raises:
    JudgeCacheError: the file exists but cannot be read or parsed, or holds variables
      that do not fit the network (its message names the file and the fix).
  """
  hp = _hparams(**hparams)
  expected = fingerprint(images, semantic, **hparams)
  x = np.asarray(images)
  return judge.load_or_train_cached(
      cache_path,
      expected_fingerprint=expected,
      train=lambda: train_segmentation_judge(images, semantic, **hparams),
      abstract_variables=lambda: jax.eval_shape(
          hp.model().init, jax.random.key(0),
          jax.ShapeDtypeStruct((1,) + x.shape[1:], jnp.float32)),
      hparams=dataclasses.asdict(hp), format_version=FORMAT_VERSION,
      kind='segmentation judge')


# The FCN-scores.


def confusion_matrix(predicted, truth, num_classes: int) -> np.ndarray:
  """Pixel counts over all images: [num_classes, num_classes] int64, [truth, predicted].

  Args:
    predicted: [...] int in [0, num_classes), e.g. [N, H, W] from `predict_segmentation`.
    truth: int in [0, num_classes), the same shape.
    num_classes: number of classes.
  """
  p, t = np.asarray(predicted), np.asarray(truth)
  if p.shape != t.shape:
    raise ValueError(f'predicted and truth must share a shape, got {p.shape} and {t.shape}')
  for name, a in (('predicted', p), ('truth', t)):
    if not np.issubdtype(a.dtype, np.integer):
      raise ValueError(f'{name} must be int class maps, got {a.dtype}')
    if a.size and (a.min() < 0 or a.max() >= num_classes):
      raise ValueError(f'{name} must lie in [0, {num_classes}), got [{a.min()}, {a.max()}]')
  flat = t.astype(np.int64).ravel() * num_classes + p.astype(np.int64).ravel()
  return np.bincount(flat, minlength=num_classes * num_classes).reshape(
      num_classes, num_classes)


def segmentation_scores(predicted, truth, num_classes: int) -> dict[str, float]:
  """The three FCN-scores of pix2pix / Cityscapes, over all pixels of all images.

  With the confusion matrix M[t, p] (pixel counts, `confusion_matrix`):
    pixel_accuracy = trace(M) / sum(M)
    class_accuracy = mean over classes c present in the truth (M[c, :].sum() > 0) of
                     M[c, c] / M[c, :].sum()  (per-class recall)
    class_iou      = mean over classes c present in the truth or the prediction
                     (union > 0) of M[c, c] / (M[c, :].sum() + M[:, c].sum() - M[c, c])
  Absent classes: a class in neither the truth nor the prediction is left out of both
  means (its ratios are 0/0), as numpy.nanmean does in pix2pix's evaluate.py; a class
  predicted but absent from the truth is left out of class_accuracy and counts as IoU 0.
  No pixels at all gives NaN for all three.

  Args:
    predicted: [N, H, W] (any shape) int in [0, num_classes), the judge's classes.
    truth: the same shape, int in [0, num_classes), the semantic maps.
    num_classes: number of classes.
  Returns:
    {'pixel_accuracy', 'class_accuracy', 'class_iou'}: python floats in [0, 1].
  """
  m = confusion_matrix(predicted, truth, num_classes).astype(np.float64)
  diag, truth_count, pred_count = np.diag(m), m.sum(1), m.sum(0)
  union = truth_count + pred_count - diag
  nan = float('nan')
  return {
      'pixel_accuracy': float(diag.sum() / m.sum()) if m.sum() else nan,
      'class_accuracy': (float(np.mean(diag[truth_count > 0] / truth_count[truth_count > 0]))
                         if (truth_count > 0).any() else nan),
      'class_iou': (float(np.mean(diag[union > 0] / union[union > 0]))
                    if (union > 0).any() else nan),
  }
