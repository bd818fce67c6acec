"""The evaluation that pix2pix and CycleGAN share: translate a whole validation split in
fixed-size batches, score the outputs with a cached FCN-score judge and image metrics,
and draw rows of input | output | ... pictures.

The judge of a domain is a segmenter (`evaluation.segmentation_judge`) trained
deterministically on that domain's REAL images of the train split against their semantic
maps; `config.eval.judge` holds its hyper-parameters, and it is cached under
`eval.judge_cache_dir` (default `<data_dir>/judges`, `tasks.judge_cache`).
"""
from typing import Callable, NamedTuple, Sequence

import jax
import numpy as np
from PIL import Image

from vision_jax.data import image_pairs
from vision_jax.evaluation import segmentation_judge
from vision_jax.evaluation import translation
from vision_jax.tasks import judge_cache
from vision_jax.viz import grid as grid_lib


class Judge(NamedTuple):
  """A trained segmentation judge: its variables and hyper-parameters (with num_classes)."""
  variables: dict
  hparams: dict


def judge_hparams(config, num_classes: int) -> dict:
  """The judge's hyper-parameters: config.eval.judge plus the number of classes."""
  hparams = dict(config.eval.judge.to_dict()) if 'judge' in config.eval else {}
  hparams['num_classes'] = int(num_classes)
  return hparams


def judges_for(config, domains: Sequence[str], *, paired: bool,
               image_size: Sequence[int], num_classes: int) -> dict[str, Judge | None]:
  """The cached (or freshly trained) judge of each domain's real images; None for each
  when the dataset has no semantic maps (num_classes 0: only the image metrics are
  reported). The judges' split is read once for all domains.

  Args:
    config: the experiment config (data.dataset, data.judge_split (default the train
      split), eval.judge, ...).
    domains: which images each judge reads: 'target' of the paired contract (pix2pix),
      or 'a' / 'b' of the unpaired one (CycleGAN; its records must keep the scene pairs).
    paired: which contract the domains belong to.
    image_size: (h, w).
    num_classes: semantic classes of the dataset.
  """
  if not num_classes:
    return {domain: None for domain in domains}
  data = config.data
  split = data.get('judge_split') or data.train_split
  load = image_pairs.load_paired_arrays if paired else image_pairs.load_unpaired_arrays
  arrays = load(data.dataset, split, data_dir=data.get('data_dir'), image_size=image_size)
  hparams = judge_hparams(config, num_classes)
  judges = {}
  for domain in domains:
    path = judge_cache.judge_cache_path(config, split=split, image_size=image_size,
                                        hparams=hparams, extra=(domain,))
    variables = segmentation_judge.load_or_train_segmentation_judge(
        path, arrays[domain].astype(np.float32) / 255.0, arrays['semantic'], **hparams)
    judges[domain] = Judge(variables, hparams)
  return judges


def map_batches(fn: Callable, images: np.ndarray, rng: jax.Array, batch_size: int
                ) -> np.ndarray:
  """fn(batch [b, H, W, C] uint8, key) -> [b, H, W, C] over all images in order.

  The last batch is padded to `batch_size` (one compiled shape) and cut back; batch i
  gets `fold_in(rng, i)`.
  """
  outputs = []
  for i, start in enumerate(range(0, len(images), batch_size)):
    chunk = images[start:start + batch_size]
    n = len(chunk)
    if n < batch_size:
      chunk = np.concatenate([chunk, np.zeros((batch_size - n, *chunk.shape[1:]),
                                              chunk.dtype)])
    outputs.append(np.asarray(jax.device_get(fn(chunk, jax.random.fold_in(rng, i))))[:n])
  return np.concatenate(outputs)


def score(generated: np.ndarray, targets: np.ndarray, semantic: np.ndarray | None,
          judge: Judge | None, *, paired: bool = True, prefix: str = '') -> dict[str, float]:
  """The metrics of one translation direction, keys under `prefix`.

  With a judge and pairs: every key of `evaluation.translation.TRANSLATION_KEYS`.
  Without pairs (a catalog dataset such as cycle_gan/horse2zebra, whose test domains are
  separate photos) only the set-level sharpness_ratio and input_dependence (against the
  first min(N, M) real images of the target domain) are defined.

  Args:
    generated: [N, H, W, 3] uint8 outputs.
    targets: [N, H, W, 3] uint8 paired targets, or [M, H, W, 3] real target-domain images.
    semantic: [N, H, W] uint8 maps of the inputs, or None.
    judge: from `judges_for` (None without semantic maps).
  """
  if paired and judge is not None and semantic is not None:
    return translation.translation_metrics(generated, targets, semantic, judge.variables,
                                           prefix=prefix, **judge.hparams)
  n = min(len(generated), len(targets))
  metrics = {'sharpness_ratio': translation.sharpness_ratio(generated, targets),
             'input_dependence': translation.input_dependence(generated[:n], targets[:n])}
  if paired:
    metrics.update(l1=translation.l1(generated, targets),
                   psnr=translation.psnr(generated, targets),
                   ssim=translation.ssim(generated, targets))
  return {prefix + k: v for k, v in metrics.items()}


def picture_rows(columns: Sequence[np.ndarray], upscale: int = 2) -> np.ndarray:
  """[H', W', 3] uint8: row i shows columns[0][i] | columns[1][i] | ...

  columns: arrays [N, H, W, 3] uint8 of equal shapes (input, output, target, ...).
  """
  stacked = np.stack([np.asarray(c) for c in columns], axis=1)  # [N, K, H, W, 3]
  n, k = stacked.shape[:2]
  images = stacked.reshape(n * k, *stacked.shape[2:])
  images = np.repeat(np.repeat(images, upscale, axis=1), upscale, axis=2)
  return grid_lib.image_grid(images, columns=k)


def fit_image(image: np.ndarray, size: Sequence[int], nearest: bool = False) -> np.ndarray:
  """A user's [h, w, 3] uint8 image resized to `size` (h, w): bilinear for photos,
  nearest for label maps (`nearest`), so their colours stay the palette's."""
  image = np.asarray(image, np.uint8)
  if image.shape[:2] == tuple(size):
    return image
  resample = Image.NEAREST if nearest else Image.BILINEAR
  return np.asarray(Image.fromarray(image).resize((int(size[1]), int(size[0])), resample))
