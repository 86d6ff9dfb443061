"""Registered Optax optimizers and learning-rate schedules.

    config.optimizer.name = "adamw"            # sgd, momentum, nesterov, adam, adamw
    config.optimizer.learning_rate = 1e-3      # peak learning rate
    config.optimizer.schedule = "warmup_cosine"  # constant, warmup_cosine, step_decay
    config.optimizer.grad_clip_norm = 1.0      # 0: off
    config.optimizer.accumulation_steps = 4    # micro-batches per step (1: off; see steps.py)

Weight decay applies only to parameters with two or more dimensions (kernels
and embeddings), never to biases and normalization scales.
"""

import jax
import optax

from lepton_jax import registry
from lepton_jax.errors import UserError


# --- schedules: fn(opt_config, total_steps) -> optax schedule -------------------------


@registry.register("schedule", "constant")
def constant(cfg, total_steps):
  """learning_rate throughout, after an optional linear warmup."""
  if cfg.get("warmup_steps", 0):
    return optax.join_schedules(
        [optax.linear_schedule(0.0, cfg.learning_rate, cfg.warmup_steps),
         optax.constant_schedule(cfg.learning_rate)], [cfg.warmup_steps])
  return optax.constant_schedule(cfg.learning_rate)


@registry.register("schedule", "warmup_cosine")
def warmup_cosine(cfg, total_steps):
  """Linear warmup to learning_rate, then cosine decay to end_learning_rate."""
  warmup = int(cfg.get("warmup_steps", 0))
  if warmup >= total_steps:
    raise UserError(f"optimizer.warmup_steps={warmup} must be below the {total_steps} training steps")
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=cfg.learning_rate, warmup_steps=warmup,
      decay_steps=total_steps, end_value=cfg.get("end_learning_rate", 0.0))


@registry.register("schedule", "step_decay")
def step_decay(cfg, total_steps):
  """learning_rate multiplied by decay_factor at each of decay_boundaries (fractions of training)."""
  boundaries = cfg.get("decay_boundaries", (0.5, 0.75))
  factor = cfg.get("decay_factor", 0.1)
  steps = {int(b * total_steps) if b < 1 else int(b): factor for b in boundaries}
  return optax.piecewise_constant_schedule(cfg.learning_rate, steps)


# --- optimizers: fn(opt_config, schedule) -> optax.GradientTransformation ----------------


def decay_mask(params):
  """True for parameters that get weight decay: kernels/embeddings, not biases/scales."""
  return jax.tree.map(lambda p: p.ndim > 1, params)


@registry.register("optimizer", "sgd")
def sgd(cfg, schedule):
  """Plain stochastic gradient descent."""
  return optax.sgd(schedule)


@registry.register("optimizer", "momentum")
def momentum(cfg, schedule):
  """SGD with heavy-ball momentum (optimizer.momentum)."""
  return optax.sgd(schedule, momentum=cfg.get("momentum", 0.9))


@registry.register("optimizer", "nesterov")
def nesterov(cfg, schedule):
  """SGD with Nesterov momentum (optimizer.momentum)."""
  return optax.sgd(schedule, momentum=cfg.get("momentum", 0.9), nesterov=True)


@registry.register("optimizer", "adam")
def adam(cfg, schedule):
  """Adam (optimizer.b1, b2, eps)."""
  return optax.adam(schedule, b1=cfg.get("b1", 0.9), b2=cfg.get("b2", 0.999), eps=cfg.get("eps", 1e-8))


@registry.register("optimizer", "adamw")
def adamw(cfg, schedule):
  """AdamW with decoupled weight decay on kernels only (optimizer.weight_decay)."""
  return optax.adamw(schedule, b1=cfg.get("b1", 0.9), b2=cfg.get("b2", 0.999),
                     eps=cfg.get("eps", 1e-8), weight_decay=cfg.get("weight_decay", 1e-4),
                     mask=decay_mask)


def build(cfg, total_steps: int):
  """The full transformation of config.optimizer, and its learning-rate schedule."""
  if cfg.learning_rate <= 0:
    raise UserError(f"optimizer.learning_rate must be positive, got {cfg.learning_rate}")
  schedule = registry.get("schedule", cfg.get("schedule", "constant"))(cfg, total_steps)
  tx = registry.get("optimizer", cfg.name)(cfg, schedule)
  parts = []
  if cfg.get("grad_clip_norm", 0.0):
    parts.append(optax.clip_by_global_norm(cfg.grad_clip_norm))
  if cfg.get("weight_decay", 0.0) and cfg.name != "adamw":
    parts.append(optax.add_decayed_weights(cfg.weight_decay, mask=decay_mask))
  tx = optax.chain(*parts, tx) if parts else tx
  return tx, schedule
