"""A Markdown table of image-translation runs from their eval_results.json files.

  print(markdown_table(['workdirs/p2p', 'workdirs/p2p_l1'], ['l1_gan', 'l1']))

Columns: judge per-pixel accuracy, per-class accuracy and class IoU, L1, PSNR, SSIM,
sharpness ratio, input dependence. The first row is the judge on the real targets (read
from the first run; every run of one table shares the judge), marked as the upper bound.
"""
import json
import os
from typing import Sequence

JUDGE_KEYS = ('pixel_accuracy', 'class_accuracy', 'class_iou')
IMAGE_KEYS = ('l1', 'psnr', 'ssim', 'sharpness_ratio', 'input_dependence')
HEADER = ('row', 'judge pixel acc.', 'judge class acc.', 'judge class IoU', 'L1', 'PSNR',
          'SSIM', 'sharpness ratio', 'input dependence')


def read_results(workdir: str) -> dict:
  path = os.path.join(workdir, 'eval_results.json')
  if not os.path.exists(path):
    raise FileNotFoundError(f'{path} does not exist: train (or launch.evaluate) that run first')
  with open(path) as f:
    return json.load(f)


def _get(results: dict, key: str, where: str) -> float:
  if key not in results:
    raise KeyError(f'{where} has no {key!r} (keys: {sorted(results)}); is --prefix right?')
  return float(results[key])


def markdown_table(workdirs: Sequence[str], names: Sequence[str] | None = None,
                   prefix: str = '') -> str:
  """The table (see the module docstring) as Markdown text.

  Args:
    workdirs: run directories, one row each, in order.
    names: row names (default: the directories' base names).
    prefix: '' (pix2pix) or 'a2b/' / 'b2a/' (CycleGAN).
  """
  workdirs = list(workdirs)
  names = list(names) if names else [os.path.basename(os.path.normpath(w)) for w in workdirs]
  if len(names) != len(workdirs):
    raise ValueError(f'{len(names)} names for {len(workdirs)} workdirs')
  runs = [(name, read_results(w), w) for name, w in zip(names, workdirs)]
  lines = ['| ' + ' | '.join(HEADER) + ' |', '|' + '---|' * len(HEADER)]
  _, first, where = runs[0]
  real = [_get(first, f'{prefix}judge_real/{k}', where) for k in JUDGE_KEYS]
  lines.append('| real targets (the judge\'s upper bound) | '
               + ' | '.join(f'{v:.3f}' for v in real) + ' |' + ' |' * len(IMAGE_KEYS))
  for name, results, where in runs:
    judged = [_get(results, f'{prefix}judge/{k}', where) for k in JUDGE_KEYS]
    image = [_get(results, f'{prefix}{k}', where) for k in IMAGE_KEYS]
    cells = [f'{v:.3f}' for v in judged] + [
        f'{image[0]:.4f}', f'{image[1]:.2f}', f'{image[2]:.3f}', f'{image[3]:.3f}',
        f'{image[4]:.3f}']
    lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)
