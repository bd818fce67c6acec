"""What a model family provides to the generic trainer.

A task owns its state layout (one or several networks and named optimizers), its steps,
its data and its evaluation; the trainer in `vision_jax.train` only calls the methods
below. Every `vision_jax.tasks.<name>` module exposes `create(config) -> Task`, found by
name from `config.task`.

Evaluation belongs to the task. `Task.evaluate(context)` gets an `EvalContext`: the
state, an RNG, the workdir, the jit-compiled predict step (batch-sharded in and out), the
mesh's shardings for compiling more functions, and ways to move data between host and
device. The default implementation is the per-batch path that detection uses
(eval_data -> predict_step -> Evaluator.add -> Evaluator.evaluate); a GAN samples on
device and asks a judge network, a video model carries state across the frames of a
clip, a panoptic model writes PNG files. Whatever it does, it returns an `EvalResult`,
and the trainer writes `eval_results.json` (once, with the step), the pictures
(`predictions.png` and TensorBoard) and the scalar summaries.

Predictions for one file (`launch.predict`): `prediction_batch(request)` turns what the
user gave (`{'image': [h, w, 3] uint8}`, `{'labels': [3, 7]}`) into a batch of the
task's contract, `predict_step` runs on it, and `draw_prediction` returns the picture.

Export (`launch.export`, `vision_jax.train.export`): `export_functions(state)` names the
functions to serialise with `jax.export`, each with example arguments that fix its
shapes. The default is one function, 'predict': `predict_step` on the batch that
`prediction_batch(example_prediction_request())` makes, so a task that predicts from
files only adds `example_prediction_request`. A family with several entry points (a
video model's keyframe and non-keyframe steps with an explicit carry) returns several.
"""
import abc
import dataclasses
import importlib
from typing import Any, Callable, Iterable, Iterator, NamedTuple, Sequence

import jax
import numpy as np

from vision_jax.evaluation import evaluator as evaluator_lib
from vision_jax.ops import backend


Evaluator = evaluator_lib.Evaluator


class PredictionRequestError(ValueError):
  """`launch.predict` inputs that the task cannot predict from (missing, out of range)."""


@dataclasses.dataclass
class EvalResult:
  """metrics: flat scalar metrics with stable names ('box/AP', 'cgan/frechet_distance');
  pictures: [N, H, W, 3] uint8 to show (predictions.png, TensorBoard), or None."""
  metrics: dict[str, float]
  pictures: np.ndarray | None = None


@dataclasses.dataclass
class EvalContext:
  """What a task's evaluation may use (built by the trainer for one evaluation).

  Attributes:
    state: the train state being evaluated (on device, replicated).
    rng: a key for sampling, fixed per evaluation (same checkpoint -> same samples).
    workdir: where result files go (write them on process 0 only).
    step: the state's step.
    predict: the jit-compiled `task.predict_step(state, batch)`; batch and predictions
      are sharded over the batch axis of the mesh.
    batch_sharding, replicated: the mesh's shardings, for the task's own jit-compiled
      functions (e.g. `jax.jit(sample, out_shardings=context.batch_sharding)`).
    shard: host numpy batch of this process -> global device arrays.
    to_host: device arrays -> numpy arrays of the WHOLE (global) batch, gathered over
      processes; call it on the keys you need only.
    local_rows: device arrays -> numpy arrays of this process's rows (no communication).
    gather_batch: host numpy batch of this process -> the whole global batch.
    process_index, process_count: this process and the number of processes.
  """
  state: Any
  rng: jax.Array
  workdir: str
  step: int
  predict: Callable
  batch_sharding: Any
  replicated: Any
  shard: Callable
  to_host: Callable
  local_rows: Callable
  gather_batch: Callable
  process_index: int = 0
  process_count: int = 1

  @property
  def is_main_process(self) -> bool:
    return self.process_index == 0


class ExportFunction(NamedTuple):
  """One function that `launch.export` serialises (see `Task.export_functions`).

  fn: pure and jit-able; it closes over the parameters, which the artifact embeds as
    constants, and takes `example_args`' positional arguments.
  example_args: example values of fn's arguments: they fix the exported shapes and
    dtypes. Plain pytrees only (dicts with string keys, lists, tuples of numpy arrays),
    so that a process without vision_jax can call the artifact; top-level keys of a
    dict argument that fn never reads are left out of the exported signature.
  arg_names: one name per argument (the names of the inputs in the manifest).
  """
  fn: Callable
  example_args: tuple
  arg_names: tuple[str, ...] = ('batch',)


def _pick(tree: dict, keys: Sequence[str] | None) -> dict:
  return dict(tree) if keys is None else {k: tree[k] for k in keys if k in tree}


class Task(abc.ABC):
  """One family's plug-in: state, steps, data and evaluation."""

  def __init__(self, config):
    self.config = config

  @abc.abstractmethod
  def init_state(self, rng, total_steps: int) -> Any:
    """A fresh state pytree with a scalar int `step` field (pure; jit-able)."""

  def init_state_once(self, rng, total_steps: int, **jit_kwargs) -> Any:
    """`init_state` compiled as a program run once (`backend.run_once`: cheaper to
    compile on XLA:CPU, the same values); `jit_kwargs` (e.g. out_shardings) go to jit."""
    return backend.run_once(lambda key: self.init_state(key, total_steps), rng, **jit_kwargs)

  @abc.abstractmethod
  def train_step(self, state, batch: dict, rng) -> tuple[Any, dict]:
    """One train step (pure; the trainer jits it and then advances `state.step`).

    Returns (new state, scalar metrics); the metrics named by `loss_names` are checked
    to be finite after every step."""

  @abc.abstractmethod
  def train_data(self, *, start_batch: int, process_index: int,
                 process_count: int) -> Iterator[dict]:
    """Infinite, deterministic stream of this process's numpy batches from `start_batch`."""

  def loss_names(self, metrics: Sequence[str]) -> list[str]:
    """The reported metrics that are losses (the NaN/Inf stop checks each of them).

    Default: 'loss' and every name ending in '_loss'."""
    return [name for name in metrics if name == 'loss' or name.endswith('_loss')]

  def eval_data(self, *, process_index: int, process_count: int) -> Iterable[dict] | None:
    """One pass over the evaluation split (static shapes), or None for no evaluation."""
    return None

  def predict_step(self, state, batch: dict) -> dict:
    """Predictions for a batch (pure; jitted). Every output has the batch as axis 0."""
    raise NotImplementedError(f'{type(self).__name__} has no predict_step')

  def make_evaluator(self) -> Evaluator | None:
    return None

  def draw_predictions(self, batch: dict, predictions: dict) -> np.ndarray | None:
    """[N, H, W, 3] uint8 pictures of predictions on (the first examples of) a batch."""
    return None

  def evaluate(self, context: EvalContext) -> EvalResult | None:
    """The whole evaluation; default: the per-batch predict -> Evaluator path.

    The host gathers only the keys the evaluator reads; pictures are drawn from the
    first batch's rows held by process 0.
    """
    evaluator = self.make_evaluator()
    eval_data = self.eval_data(process_index=context.process_index,
                               process_count=context.process_count)
    if evaluator is None or eval_data is None:
      return None
    pictures, drawn = None, False
    for batch in eval_data:
      predictions = context.predict(context.state, context.shard(batch))
      evaluator.add(context.gather_batch(_pick(batch, evaluator.batch_keys)),
                    context.to_host(_pick(predictions, evaluator.prediction_keys)))
      if not drawn and context.is_main_process:
        pictures, drawn = self.draw_predictions(batch, context.local_rows(predictions)), True
    metrics = evaluator.evaluate()
    if context.is_main_process:
      evaluator.write(context.workdir)
    return EvalResult(metrics, pictures)

  def prediction_batch(self, request: dict) -> dict:
    """What `launch.predict` was given -> a batch of one prediction (host numpy).

    request: {'image': [h, w, 3] uint8} or {'labels': [int, ...]} (the launcher's flags).
    """
    raise NotImplementedError(f'{type(self).__name__} does not predict from files')

  def draw_prediction(self, batch: dict, predictions: dict) -> np.ndarray:
    """[H, W, 3] uint8 picture of `prediction_batch`'s predictions."""
    raise NotImplementedError(f'{type(self).__name__} does not draw predictions')

  def example_prediction_request(self) -> dict:
    """A request that `prediction_batch` accepts, made without user files: it fixes the
    shapes of the default export (`export_functions`).

    Default: every field `launch.predict` can fill, with neutral values: a zeros
    [H, W, 3] uint8 'image' of `config.data.image_size` (None without one) and
    'labels' [0]. Each task reads the field it predicts from; a task whose requests
    look otherwise overrides this.
    """
    size = self.config.get('data', {}).get('image_size')
    image = None if size is None else np.zeros((*size, 3), np.uint8)
    return {'image': image, 'labels': [0]}

  def export_functions(self, state) -> dict[str, ExportFunction]:
    """The functions `launch.export` serialises, by name (`<name>.jax_exported`).

    Default: {'predict': predict_step on `state`, over the batch that
    `prediction_batch(example_prediction_request())` makes}.
    """
    batch = self.prediction_batch(self.example_prediction_request())
    return {'predict': ExportFunction(lambda b: self.predict_step(state, b), (batch,))}


def request_rgb_image(request: dict, task: str, missing: str) -> np.ndarray:
  """The [h, w, 3] image of a `launch.predict` request, or a PredictionRequestError.

  missing: what the task does with an image and which one to pass (the message when
    --image is absent), e.g. 'stylises an image: pass --image=photo.jpg'.
  """
  image = request.get('image')
  if image is None:
    raise PredictionRequestError(f'task {task!r} {missing}')
  image = np.asarray(image)
  if image.ndim != 3 or image.shape[-1] != 3:
    raise PredictionRequestError(f'--image: expected an RGB image, got shape {image.shape}')
  return image


class ConfigSplits:
  """A mixin for tasks whose data is one pipeline over two splits of `config.data`.

  The task defines `split_data(split, training, batch_size, **kwargs)` (kwargs:
  start_batch for training, process_index, process_count); this gives the trainer
  `train_data` (config.data.train_split at config.train.batch_size) and `eval_data`
  (config.data.eval_split at config.eval.batch_size).
  """

  def split_data(self, split: str, training: bool, batch_size: int, **kwargs):
    raise NotImplementedError(f'{type(self).__name__} has no split_data')

  def train_data(self, *, start_batch, process_index, process_count):
    return self.split_data(self.config.data.train_split, True, self.config.train.batch_size,
                           start_batch=start_batch, process_index=process_index,
                           process_count=process_count)

  def eval_data(self, *, process_index, process_count):
    return self.split_data(self.config.data.eval_split, False, self.config.eval.batch_size,
                           process_index=process_index, process_count=process_count)


def create_task(config) -> Task:
  """Imports `vision_jax.tasks.<config.task>` and calls its `create(config)`."""
  name = config.task
  try:
    module = importlib.import_module(f'vision_jax.tasks.{name}')
  except ModuleNotFoundError as e:
    if e.name != f'vision_jax.tasks.{name}':
      raise
    raise ValueError(f'config.task={name!r}: there is no module vision_jax/tasks/{name}.py') from e
  return module.create(config)
