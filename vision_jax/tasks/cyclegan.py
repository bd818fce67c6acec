"""CycleGAN (Zhu et al. 2017): unpaired translation between domains A and B, as a trainer
task.

Networks (`config.model`): generators G_ab: A -> B and G_ba: B -> A (ResNet generators,
`nn.resnet_generator`, or U-Nets with model.generator='unet'), discriminators D_a (real
A vs G_ba(b)) and D_b (real B vs G_ab(a)), PatchGANs. Two named Adam optimizers, as the
reference: 'generators' over both G's and 'discriminators' over both D's.

A train step on a batch of A images a and B images b (unpaired):
  fake_b = G_ab(a), rec_a = G_ba(fake_b), fake_a = G_ba(b), rec_b = G_ab(fake_a)
  G: crit(D_b(fake_b), real) + crit(D_a(fake_a), real)
     + loss.cycle_weight (|rec_a - a|_1 + |rec_b - b|_1)
     + loss.identity_weight (|G_ab(b) - b|_1 + |G_ba(a) - a|_1)
  D_b: 0.5 (crit(D_b(b), real) + crit(D_b(pool_b(fake_b)), fake)), D_a likewise,
where pool_x is the 50-image history pool (`ops.image_pool`), carried in the train state
(`model_state['image_pool']`), so a resumed run continues with the same history. The
reference's identity weight is lambda_identity x lambda_cycle (0.5 x 10 = 5); here it is
given directly. Reported: g_loss, d_loss, g_gan, g_cycle, g_identity.

Evaluation (`tasks.translation_eval`): the validation split keeps the pairs, so
G_ab(a) is scored against b and G_ba(b) against a: an FCN-score judge per domain
(trained on that domain's real images), L1, PSNR, SSIM, sharpness ratio, input
dependence, under the prefixes 'a2b/' and 'b2a/'. Pictures: rows a | G_ab(a) |
G_ba(G_ab(a)) | b.
"""
import jax
import jax.numpy as jnp

from vision_jax.data import image_pairs
from vision_jax.losses import gan as gan_losses
from vision_jax.nn import patchgan
from vision_jax.nn import resnet_generator
from vision_jax.nn import unet
from vision_jax.ops import image as image_ops
from vision_jax.ops import image_pool
from vision_jax.tasks import base
from vision_jax.tasks import networks
from vision_jax.tasks import translation_eval
from vision_jax.train import config as config_lib
from vision_jax.train import optim
from vision_jax.train.state import TrainState

OPTIMIZERS = ('generators', 'discriminators')
GENERATORS = ('generator_ab', 'generator_ba')
DISCRIMINATORS = ('discriminator_a', 'discriminator_b')
GENERATOR_KINDS = ('resnet', 'unet')
POOL = 'image_pool'  # model_state key of the two history pools {'fake_a', 'fake_b'}
FAKES = ('_fake_a', '_fake_b')  # G's outputs passed from its step to D's


class CycleGanTask(base.Task):

  def __init__(self, config):
    super().__init__(config)
    data = config.data
    self.source = image_pairs.get_unpaired_image_source(data.dataset, data.get('data_dir'))
    self.image_size = tuple(int(s) for s in data.image_size)
    m = config.model
    dtype = jnp.dtype(m.dtype)
    if m.generator not in GENERATOR_KINDS:
      raise config_lib.ConfigError(f'config.model.generator={m.generator!r} is not one of '
                                   f'{GENERATOR_KINDS}')
    try:
      if m.generator == 'resnet':
        make = lambda: resnet_generator.ResnetGenerator(
            out_channels=3, features=m.generator_features, num_blocks=m.generator_blocks,
            norm=m.norm, dtype=dtype)
        unet.check_divisible('ResnetGenerator', (1, *self.image_size, 3), 4,
                             'num_downsampling (=2)')
      else:
        make = lambda: unet.UNetGenerator(
            out_channels=3, features=m.generator_features, depth=m.generator_depth,
            norm=m.norm, dropout=0.0, dtype=dtype)
        unet.check_divisible('UNetGenerator', (1, *self.image_size, 3),
                             2 ** m.generator_depth,
                             f'model.generator_depth (={m.generator_depth})')
      self.nets = {name: make() for name in GENERATORS}
      for name in DISCRIMINATORS:
        self.nets[name] = patchgan.PatchDiscriminator(
            features=m.discriminator_features, n_layers=m.discriminator_layers,
            norm=m.norm, dtype=dtype)
      gan_losses.gan_criterion(jnp.zeros(1), True, config.loss.kind)
    except ValueError as e:
      raise config_lib.ConfigError(f'config.data.image_size / model / loss: {e}') from e

  # State and training.

  def init_state(self, rng, total_steps):
    x = jnp.zeros((2, *self.image_size, 3))
    params, model_state = networks.init_networks(
        {name: (net, (x,)) for name, net in self.nets.items()}, rng)
    size = int(self.config.model.pool_size)
    model_state[POOL] = {name: image_pool.init_pool(size, (*self.image_size, 3))
                         for name in ('fake_a', 'fake_b')}
    return TrainState.create(
        params, optim.make_optimizers(self.config, total_steps, required=OPTIMIZERS),
        model_state)

  def _run(self, name, params, model_state, x, *, train):
    return networks.apply(self.nets[name], name, params, model_state, x, train=train)

  def _g_loss(self, params, model_state, a, b):
    loss_config = self.config.loss
    kind = loss_config.kind
    updates = {}

    def run(name, x):
      out, new = self._run(name, params, model_state, x, train=True)
      for collection, by_name in new.items():
        updates.setdefault(collection, {}).update(by_name)
      return out

    fake_b = run('generator_ab', a)
    fake_a = run('generator_ba', b)
    rec_a = run('generator_ba', fake_b)
    rec_b = run('generator_ab', fake_a)
    # The discriminators' statistics are not kept from G's step.
    logits_b, _ = self._run('discriminator_b', params, model_state, fake_b, train=True)
    logits_a, _ = self._run('discriminator_a', params, model_state, fake_a, train=True)
    g_gan = (gan_losses.translation_generator_loss(logits_b, kind)
             + gan_losses.translation_generator_loss(logits_a, kind))
    g_cycle = (gan_losses.cycle_consistency_loss(rec_a, a)
               + gan_losses.cycle_consistency_loss(rec_b, b))
    loss = g_gan + loss_config.cycle_weight * g_cycle
    metrics = {'g_gan': g_gan, 'g_cycle': g_cycle}
    if loss_config.identity_weight > 0:
      g_identity = (gan_losses.identity_loss(run('generator_ab', b), b)
                    + gan_losses.identity_loss(run('generator_ba', a), a))
      loss = loss + loss_config.identity_weight * g_identity
      metrics['g_identity'] = g_identity
    metrics['g_loss'] = loss
    # The fakes ride out with the metrics (state.minimize's aux) for D's step.
    return loss, ({**metrics, FAKES[0]: fake_a, FAKES[1]: fake_b}, updates)

  def _d_loss(self, params, model_state, a, b, fake_a, fake_b):
    kind = self.config.loss.kind
    state, total = model_state, 0.0
    for name, real, fake in (('discriminator_a', a, fake_a), ('discriminator_b', b, fake_b)):
      real_logits, updates = self._run(name, params, state, real, train=True)
      state = networks.merge(state, updates)
      fake_logits, updates = self._run(name, params, state, fake, train=True)
      state = networks.merge(state, updates)
      total = total + gan_losses.halved_discriminator_loss(real_logits, fake_logits, kind)
    return total, ({'d_loss': total}, {c: v for c, v in state.items() if c != POOL})

  def train_step(self, state, batch, rng):
    a = image_ops.to_signed_unit(batch['a'])
    b = image_ops.to_signed_unit(batch['b'])
    state, g_metrics = state.minimize(self._g_loss, state.model_state, a, b,
                                      optimizers='generators')
    fake_a, fake_b = (jax.lax.stop_gradient(g_metrics.pop(k)) for k in FAKES)
    pools = state.model_state[POOL]
    key_a, key_b = jax.random.split(rng)
    pool_a, fake_a = image_pool.query_pool(pools['fake_a'], fake_a, key_a)
    pool_b, fake_b = image_pool.query_pool(pools['fake_b'], fake_b, key_b)
    state = state.replace(model_state={**state.model_state,
                                       POOL: {'fake_a': pool_a, 'fake_b': pool_b}})
    state, d_metrics = state.minimize(self._d_loss, state.model_state, a, b, fake_a, fake_b,
                                      optimizers='discriminators')
    return state, {**g_metrics, **d_metrics}

  def loss_names(self, metrics):
    return [name for name in ('d_loss', 'g_loss') if name in metrics]

  def train_data(self, *, start_batch, process_index, process_count):
    data = self.config.data
    return image_pairs.make_unpaired_image_dataset(
        data.dataset, data.train_split, data_dir=data.get('data_dir'),
        batch_size=self.config.train.batch_size, training=True, image_size=self.image_size,
        hflip_prob=data.get('hflip_prob', 0.0), seed=self.config.seed,
        start_batch=start_batch, process_index=process_index, process_count=process_count)

  # Translation.

  def translate(self, state, images, direction: str) -> jax.Array:
    """images [B, H, W, 3] uint8 -> [B, H, W, 3] uint8 through G_ab ('a2b') or G_ba."""
    name = {'a2b': 'generator_ab', 'b2a': 'generator_ba'}[direction]
    out, _ = self._run(name, state.params, state.model_state,
                       image_ops.to_signed_unit(images), train=False)
    return image_ops.signed_unit_to_uint8(out)

  def predict_step(self, state, batch):
    """batch {'image': [B, H, W, 3] uint8} in the domain `predict_direction` reads ->
    {'image': translated, 'reconstruction': translated back}."""
    direction = self.config.get('predict_direction', 'a2b')
    back = 'b2a' if direction == 'a2b' else 'a2b'
    out = self.translate(state, batch['image'], direction)
    return {'image': out, 'reconstruction': self.translate(state, out, back)}

  def prediction_batch(self, request):
    image = base.request_rgb_image(request, self.config.task, (
        'translates an image: pass --image=FILE (domain '
        f'{"A" if self.config.get("predict_direction", "a2b") == "a2b" else "B"}; '
        '--config.predict_direction=b2a for the other way)'))
    return {'image': translation_eval.fit_image(image, self.image_size)[None]}

  def draw_prediction(self, batch, predictions):
    return translation_eval.picture_rows(
        [batch['image'], predictions['image'], predictions['reconstruction']],
        int(self.config.eval.get('draw_upscale', 2)))

  # Evaluation.

  def evaluate(self, context):
    data = self.config.data
    pairs = image_pairs.load_unpaired_arrays(data.dataset, data.eval_split,
                                             data_dir=data.get('data_dir'),
                                             image_size=self.image_size)
    paired = 'semantic' in pairs  # synthetic_shapes styles keep the validation pairs
    batch_size = int(self.config.eval.batch_size)
    translate = jax.jit(self.translate, static_argnums=2)
    judges = translation_eval.judges_for(
        self.config, ('b', 'a'), paired=False, image_size=self.image_size,
        num_classes=self.source.num_semantic_classes)
    outputs, metrics = {}, {}
    for direction, source, target in (('a2b', 'a', 'b'), ('b2a', 'b', 'a')):
      judge = judges[target]
      outputs[direction] = translation_eval.map_batches(
          lambda x, key, d=direction: translate(context.state, x, d), pairs[source],
          context.rng, batch_size)
      metrics.update(translation_eval.score(
          outputs[direction], pairs[target], pairs.get('semantic'), judge, paired=paired,
          prefix=f'{direction}/'))
    shown = int(self.config.eval.get('num_pictures', 8))
    back = translation_eval.map_batches(
        lambda x, key: translate(context.state, x, 'b2a'), outputs['a2b'][:shown],
        context.rng, batch_size)
    columns = [pairs['a'][:shown], outputs['a2b'][:shown], back]
    if paired:
      columns.append(pairs['b'][:shown])
    picture = translation_eval.picture_rows(
        columns,
        int(self.config.eval.get('draw_upscale', 2)))
    return base.EvalResult(metrics, picture[None])


def create(config) -> CycleGanTask:
  return CycleGanTask(config)
