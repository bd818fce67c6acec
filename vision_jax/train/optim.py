"""Optimizers and learning-rate schedules from a config.

config fields (an `ml_collections.ConfigDict`):
  name            'adam' | 'adamw' | 'sgd' (momentum, nesterov off)
  learning_rate   peak rate, reached at the end of warmup
  warmup_steps    linear warmup from 0
  schedule        'cosine' (to 0 at total_steps) | 'step' | 'constant'
  decay_steps     for 'step': the steps at which the rate is multiplied by decay_factor
  decay_factor    for 'step'
  weight_decay    decoupled (adamw) or L2 added to gradients (sgd)
  momentum        for sgd
  grad_clip_norm  0 disables
"""
import optax


def make_schedule(config, total_steps: int) -> optax.Schedule:
  peak = config.learning_rate
  warmup = int(config.get('warmup_steps', 0))
  kind = config.get('schedule', 'cosine')
  if kind == 'cosine':
    after = optax.cosine_decay_schedule(peak, max(1, total_steps - warmup))
  elif kind == 'step':
    after = optax.piecewise_constant_schedule(
        peak, {int(s) - warmup: config.decay_factor for s in config.decay_steps})
  elif kind == 'constant':
    after = optax.constant_schedule(peak)
  else:
    raise ValueError(f"optimizer.schedule {kind!r} is not one of 'cosine', 'step', 'constant'")
  if not warmup:
    return after
  return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), after], [warmup])


def make_optimizer(config, total_steps: int) -> optax.GradientTransformation:
  schedule = make_schedule(config, total_steps)
  name = config.name
  weight_decay = config.get('weight_decay', 0.0)
  if name == 'adam':
    opt = optax.adam(schedule)
  elif name == 'adamw':
    opt = optax.adamw(schedule, weight_decay=weight_decay)
  elif name == 'sgd':
    opt = optax.chain(optax.add_decayed_weights(weight_decay) if weight_decay else optax.identity(),
                      optax.sgd(schedule, momentum=config.get('momentum', 0.9)))
  else:
    raise ValueError(f"optimizer.name {name!r} is not one of 'adam', 'adamw', 'sgd'")
  clip = config.get('grad_clip_norm', 0.0)
  return optax.chain(optax.clip_by_global_norm(clip), opt) if clip else opt
