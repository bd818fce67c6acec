"""Named optimizers from `config.optimizers`, each with its schedule and its parameters.

A config holds one entry per optimizer (`config.optimizers.<name>`); a one-model task
has one entry (named `model` by convention), a GAN one per network, a fine-tuning recipe
may give the backbone its own rate:

  config.optimizers = ml_collections.ConfigDict({'model': dict(
      name='adamw', learning_rate=2e-3, weight_decay=1e-4, warmup_steps=100,
      schedule='cosine', grad_clip_norm=10.0)})

Fields of an entry (only `name` and `learning_rate` are required):
  name            'adam' | 'adamw' | 'sgd' | 'rmsprop'
  learning_rate   peak rate, reached at the end of warmup
  warmup_steps    linear warmup from 0
  schedule        'cosine' (to 0 at the last step) | 'step' | 'constant' |
                  'linear_decay' (pix2pix / CycleGAN: the peak rate, then a straight line
                  to 0 at the last step, starting at decay_start_fraction of the steps)
  decay_steps     for 'step': the steps at which the rate is multiplied by decay_factor
  decay_fractions for 'step', instead of decay_steps: the same as fractions of the
                  total steps (a recipe in epochs stays right when the batch changes)
  decay_factor    for 'step'
  decay_start_fraction  for 'linear_decay': where the decay starts, a fraction of the
                  total steps (default 0.5: the reference's n_epochs = n_epochs_decay);
                  a start inside the warmup starts the decay at the end of warmup
  b1, b2, eps     Adam moments (defaults 0.9, 0.999, 1e-8; GANs use b1=0.5)
  momentum        for sgd (default 0.9); nesterov (default False); rmsprop (default 0)
  rms_decay       rmsprop's squared-gradient average decay (default 0.99, torch's alpha)
  weight_decay    decoupled (adamw) or L2 added to the gradients (sgd); 0 disables
  decay_params    which parameters weight decay touches: 'kernels' (default: leaves of
                  rank >= 2, so norms' scales and every bias are left alone) or 'all'
  grad_clip_norm  clip this optimizer's gradients to this global norm; 0 disables
  params          a regular expression matched (in full) against each parameter's path,
                  its keys joined by '/' (e.g. 'generator/.*', 'backbone/.*'): the
                  parameters this optimizer updates. Default '.*'. Every parameter must
                  be selected by exactly one optimizer; `TrainState.create` names the
                  parameters that are selected twice or not at all.

An exponential moving average of chosen parameters (`config.ema`, optional):
  decay           e.g. 0.999; ema = decay * ema + (1 - decay) * params after each update
  params          regular expression as above (default '.*')
"""
import dataclasses
import re
from typing import Mapping, Sequence

import jax
import optax

from vision_jax.train import config as config_lib

OPTIMIZER_NAMES = ('adam', 'adamw', 'sgd', 'rmsprop')
SCHEDULES = ('cosine', 'step', 'constant', 'linear_decay')
DECAY_PARAMS = ('kernels', 'all')
_ENTRY_FIELDS = frozenset((
    'name', 'learning_rate', 'warmup_steps', 'schedule', 'decay_steps', 'decay_fractions',
    'decay_factor', 'b1', 'b2', 'eps', 'momentum', 'nesterov', 'weight_decay',
    'decay_params', 'grad_clip_norm', 'params', 'rms_decay', 'decay_start_fraction'))


@dataclasses.dataclass(frozen=True, eq=False)
class NamedOptimizer:
  """An optax transformation and the parameters it updates.

  Attributes:
    name: the key in `config.optimizers` (and in `TrainState.opt_states`).
    tx: the transformation, applied to the selected sub-tree of the parameters.
    params: regular expression over '/'-joined parameter paths (full match).
  """
  name: str
  tx: optax.GradientTransformation
  params: str = '.*'

  def selects(self, path: str) -> bool:
    return re.fullmatch(self.params, path) is not None


@dataclasses.dataclass(frozen=True)
class EmaSpec:
  """An exponential moving average of the parameters whose path matches `params`."""
  decay: float
  params: str = '.*'

  def selects(self, path: str) -> bool:
    return re.fullmatch(self.params, path) is not None


def make_schedule(entry, total_steps: int, where: str = 'optimizer') -> optax.Schedule:
  """The learning-rate schedule of one entry (see the module docstring)."""
  peak = float(entry['learning_rate'])
  warmup = int(entry.get('warmup_steps', 0) or 0)
  kind = entry.get('schedule', 'cosine')
  if kind == 'cosine':
    after = optax.cosine_decay_schedule(peak, max(1, total_steps - warmup))
  elif kind == 'step':
    if entry.get('decay_fractions'):
      boundaries = [int(round(f * total_steps)) for f in entry['decay_fractions']]
    else:
      boundaries = [int(s) for s in entry.get('decay_steps') or ()]
    if not boundaries:
      raise config_lib.ConfigError(f"{where}.schedule='step' needs decay_steps or "
                                   'decay_fractions')
    after = optax.piecewise_constant_schedule(
        peak, {b - warmup: entry['decay_factor'] for b in boundaries})
  elif kind == 'constant':
    after = optax.constant_schedule(peak)
  elif kind == 'linear_decay':
    fraction = float(entry.get('decay_start_fraction', 0.5))
    if not 0.0 <= fraction <= 1.0:
      raise config_lib.ConfigError(f'{where}.decay_start_fraction={fraction} must be in '
                                   '[0, 1]')
    start = max(int(round(fraction * total_steps)), warmup)
    # Counted from the end of warmup: peak until `start`, then linearly to 0 at total_steps.
    after = optax.linear_schedule(peak, 0.0, max(1, total_steps - start),
                                  transition_begin=start - warmup)
  else:
    raise config_lib.ConfigError(f'{where}.schedule={kind!r} is not one of {SCHEDULES}')
  if not warmup:
    return after
  return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), after], [warmup])


def _decay_mask(kind: str, where: str):
  """optax's weight-decay mask: None decays every leaf."""
  if kind == 'all':
    return None
  if kind == 'kernels':
    return lambda params: jax.tree.map(lambda p: p.ndim >= 2, params)
  raise config_lib.ConfigError(f'{where}.decay_params={kind!r} is not one of {DECAY_PARAMS}')


def make_transformation(entry, total_steps: int,
                        where: str = 'optimizer') -> optax.GradientTransformation:
  """The optax transformation of one entry (see the module docstring)."""
  unknown = sorted(set(entry.keys()) - _ENTRY_FIELDS)
  if unknown:
    raise config_lib.ConfigError(
        f'{where} has unknown fields {unknown}; known: {sorted(_ENTRY_FIELDS)}')
  if 'learning_rate' not in entry or 'name' not in entry:
    raise config_lib.ConfigError(f'{where} needs at least name and learning_rate')
  schedule = make_schedule(entry, total_steps, where)
  name = entry['name']
  weight_decay = float(entry.get('weight_decay', 0.0) or 0.0)
  mask = _decay_mask(entry.get('decay_params', 'kernels'), where)
  b1, b2 = float(entry.get('b1', 0.9)), float(entry.get('b2', 0.999))
  eps = float(entry.get('eps', 1e-8))
  if name == 'adam':
    if weight_decay:
      raise config_lib.ConfigError(
          f'{where}: adam takes no weight_decay (use adamw for decoupled decay)')
    opt = optax.adam(schedule, b1=b1, b2=b2, eps=eps)
  elif name == 'adamw':
    opt = optax.adamw(schedule, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay, mask=mask)
  elif name == 'sgd':
    decay = (optax.add_decayed_weights(weight_decay, mask=mask) if weight_decay
             else optax.identity())
    opt = optax.chain(decay, optax.sgd(schedule, momentum=entry.get('momentum', 0.9),
                                       nesterov=bool(entry.get('nesterov', False))))
  elif name == 'rmsprop':
    decay = (optax.add_decayed_weights(weight_decay, mask=mask) if weight_decay
             else optax.identity())
    opt = optax.chain(decay, optax.rmsprop(
        schedule, decay=float(entry.get('rms_decay', 0.99)), eps=eps,
        momentum=float(entry.get('momentum', 0.0)) or None))
  else:
    raise config_lib.ConfigError(f'{where}.name={name!r} is not one of {OPTIMIZER_NAMES}')
  clip = float(entry.get('grad_clip_norm', 0.0) or 0.0)
  return optax.chain(optax.clip_by_global_norm(clip), opt) if clip else opt


def make_optimizers(config, total_steps: int, *, required: Sequence[str] | None = None
                    ) -> dict[str, NamedOptimizer]:
  """`config.optimizers` -> {name: NamedOptimizer}.

  Args:
    config: the experiment config (reads `optimizers`).
    total_steps: the schedules' length.
    required: the optimizer names the task needs (e.g. ('generator', 'discriminator'));
      None: any non-empty set.
  Raises:
    ConfigError: no `optimizers`, the legacy single `optimizer`, names that differ from
      `required`, or a bad entry (each message names the key).
  """
  if 'optimizers' not in config:
    if 'optimizer' in config:
      raise config_lib.ConfigError(
          'config.optimizer is replaced by named optimizers: put its fields under '
          'config.optimizers.model (see vision_jax/train/optim.py)')
    raise config_lib.ConfigError('the config has no optimizers: add config.optimizers.<name> '
                                 '(see vision_jax/train/optim.py)')
  entries = config.optimizers
  names = list(entries.keys())
  if not names:
    raise config_lib.ConfigError('config.optimizers is empty')
  if required is not None and sorted(names) != sorted(required):
    missing = sorted(set(required) - set(names))
    extra = sorted(set(names) - set(required))
    raise config_lib.ConfigError(
        f'config.optimizers has {sorted(names)}, but task {config.get("task")!r} needs '
        f'exactly {sorted(required)}' + (f'; missing {missing}' if missing else '')
        + (f'; unknown {extra}' if extra else ''))
  optimizers = {}
  for name in names:
    entry = entries[name]
    optimizers[name] = NamedOptimizer(
        name, make_transformation(entry, total_steps, f'optimizers.{name}'),
        entry.get('params', '.*'))
  return optimizers


def ema_from_config(config) -> EmaSpec | None:
  """`config.ema` (decay, params) -> EmaSpec, or None without one (or decay 0)."""
  ema = config.get('ema')
  if not ema or not ema.get('decay'):
    return None
  decay = float(ema['decay'])
  if not 0.0 < decay < 1.0:
    raise config_lib.ConfigError(f'ema.decay={decay} must be in (0, 1)')
  return EmaSpec(decay, ema.get('params', '.*'))


def single(tx: optax.GradientTransformation, name: str = 'model') -> Mapping[str, NamedOptimizer]:
  """One optimizer over every parameter (for code that builds its own optax chain)."""
  return {name: NamedOptimizer(name, tx)}
