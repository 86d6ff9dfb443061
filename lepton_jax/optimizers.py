"""Registered Optax optimizers and learning-rate schedules.

    config.optimizer.name = "adamw"            # sgd, momentum, nesterov, adam, adamw
    config.optimizer.learning_rate = 1e-3      # peak learning rate
    config.optimizer.schedule = "warmup_cosine"  # constant, warmup_cosine, step_decay
    config.optimizer.grad_clip_norm = 1.0      # 0: off
    config.optimizer.accumulation_steps = 4    # micro-batches per step (1: off; see steps.py)

Weight decay applies only to parameters with two or more dimensions (kernels
and embeddings), never to biases and normalization scales. Every value is read
from the config as it is: the defaults live in config_defaults.base_config only.

A warmup that would not end before training does (e.g. the quickstart's 20
warmup steps in a run shortened to 20 steps) is scaled down to a tenth of
training; `warmup_note` says so, for the train loop to print.
"""

import math

import jax
import optax

from lepton_jax import registry
from lepton_jax.errors import UserError


# --- schedules: fn(opt_config, total_steps) -> optax schedule -------------------------

# The schedules that read optimizer.warmup_steps.
WARMUP_SCHEDULES = ("constant", "warmup_cosine")
# A warmup as long as training or longer becomes this share of training.
SHORT_RUN_WARMUP_FRACTION = 0.1


def warmup_steps(cfg, total_steps: int) -> int:
  """optimizer.warmup_steps, or a tenth of training where it would not end before training does."""
  warmup = int(cfg.warmup_steps)
  if warmup >= total_steps:
    return int(total_steps * SHORT_RUN_WARMUP_FRACTION)
  return warmup


def warmup_note(cfg, total_steps: int) -> str | None:
  """One line saying the warmup was shortened to fit training, or None where it was not."""
  if cfg.schedule not in WARMUP_SCHEDULES or warmup_steps(cfg, total_steps) == cfg.warmup_steps:
    return None
  return (f"note: optimizer.warmup_steps={cfg.warmup_steps} is not below the {total_steps} training "
          f"steps: warming up over {warmup_steps(cfg, total_steps)} steps (a tenth of training) "
          "instead")


@registry.register("schedule", "constant")
def constant(cfg, total_steps):
  """learning_rate throughout, after an optional linear warmup."""
  warmup = warmup_steps(cfg, total_steps)
  if warmup:
    return optax.join_schedules(
        [optax.linear_schedule(0.0, cfg.learning_rate, warmup),
         optax.constant_schedule(cfg.learning_rate)], [warmup])
  return optax.constant_schedule(cfg.learning_rate)


@registry.register("schedule", "warmup_cosine")
def warmup_cosine(cfg, total_steps):
  """Linear warmup to learning_rate, then cosine decay to end_learning_rate."""
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=cfg.learning_rate, warmup_steps=warmup_steps(cfg, total_steps),
      decay_steps=total_steps, end_value=cfg.end_learning_rate)


@registry.register("schedule", "step_decay")
def step_decay(cfg, total_steps):
  """learning_rate multiplied by decay_factor at each of decay_boundaries (fractions of training)."""
  boundaries = cfg.decay_boundaries
  factor = cfg.decay_factor
  steps = {int(b * total_steps) if b < 1 else int(b): factor for b in boundaries}
  return optax.piecewise_constant_schedule(cfg.learning_rate, steps)


# --- optimizers: fn(opt_config, schedule) -> optax.GradientTransformation ----------------


NO_DECAY = ("bias", "scale")  # biases and normalization scales


def decay_mask(params):
  """True for parameters that get weight decay: kernels and embeddings, not biases or norm scales.
  Decided by name as well as shape: scanned layers stack biases into 2-D arrays."""
  def decays(path, p):
    last = path[-1]
    name = str(getattr(last, "key", getattr(last, "name", last)))
    return p.ndim > 1 and name not in NO_DECAY
  return jax.tree_util.tree_map_with_path(decays, params)


@registry.register("optimizer", "sgd")
def sgd(cfg, schedule):
  """Plain stochastic gradient descent."""
  return optax.sgd(schedule)


@registry.register("optimizer", "momentum")
def momentum(cfg, schedule):
  """SGD with heavy-ball momentum (optimizer.momentum)."""
  return optax.sgd(schedule, momentum=cfg.momentum)


@registry.register("optimizer", "nesterov")
def nesterov(cfg, schedule):
  """SGD with Nesterov momentum (optimizer.momentum)."""
  return optax.sgd(schedule, momentum=cfg.momentum, nesterov=True)


@registry.register("optimizer", "adam")
def adam(cfg, schedule):
  """Adam (optimizer.b1, b2, eps)."""
  return optax.adam(schedule, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps)


@registry.register("optimizer", "adamw")
def adamw(cfg, schedule):
  """AdamW with decoupled weight decay on kernels only (optimizer.weight_decay)."""
  return optax.adamw(schedule, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=cfg.weight_decay,
                     mask=decay_mask)


def build(cfg, total_steps: int):
  """The full transformation of config.optimizer, and its learning-rate schedule."""
  lr = cfg.learning_rate
  if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
    raise UserError(f"optimizer.learning_rate must be a positive finite number, got {lr!r}")
  schedule = registry.get("schedule", cfg.schedule)(cfg, total_steps)
  tx = registry.get("optimizer", cfg.name)(cfg, schedule)
  parts = []
  if cfg.grad_clip_norm:
    parts.append(optax.clip_by_global_norm(cfg.grad_clip_norm))
  if cfg.weight_decay and cfg.name != "adamw":
    parts.append(optax.add_decayed_weights(cfg.weight_decay, mask=decay_mask))
  tx = optax.chain(*parts, tx) if parts else tx
  return tx, schedule
