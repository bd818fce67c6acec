"""Where a task's judge network is cached: one msgpack file per judge, keyed by what it
was trained on.

  <eval.judge_cache_dir or <data_dir>/judges>/<name>_<split>_<key>.msgpack

`<data_dir>` is the config's `data.data_dir`, else $TFDS_DATA_DIR, else TFDS' default
`~/tensorflow_datasets`; `<key>` hashes the dataset, split, image size, the judge's
hyper-parameters and whatever else the task adds (the domain a CycleGAN judge reads), so
a judge trained on other data or settings is never picked up.
"""
import hashlib
import json
import os


def judge_cache_path(config, *, split: str, image_size, hparams: dict,
                     extra: tuple = ()) -> str:
  """The cache file of a judge trained on `config.data.dataset`'s `split`.

  Args:
    config: the experiment config (reads data.dataset, data.data_dir,
      eval.judge_cache_dir).
    split: the split the judge trains on.
    image_size: (h, w) it reads.
    hparams: its hyper-parameters (JSON-serialisable).
    extra: more JSON-serialisable parts of the key (the judged domain, ...).
  """
  data = config.data
  folder = config.eval.get('judge_cache_dir') or os.path.join(
      data.get('data_dir') or os.path.expanduser(
          os.environ.get('TFDS_DATA_DIR', '~/tensorflow_datasets')), 'judges')
  key = hashlib.sha256(json.dumps(
      [data.dataset, split, list(image_size), hparams, *extra],
      sort_keys=True).encode()).hexdigest()[:12]
  name = '_'.join([data.dataset.replace('/', '_'), split.replace('[', '_').replace(
      ']', '').replace(':', '-').replace('%', 'pct'), *[str(e) for e in extra]])
  return os.path.join(folder, f'{name}_{key}.msgpack')
