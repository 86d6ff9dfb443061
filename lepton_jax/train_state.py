"""The train state: a plain pytree, created sharded under jit."""

from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np


@flax.struct.dataclass
class TrainState:
  step: jax.Array  # int32 scalar: optimizer steps taken
  params: Any
  opt_state: Any
  model_state: Any  # non-parameter collections, e.g. {'batch_stats': ...}; {} if none
  rng: jax.Array  # uint32[2]: the run's key; each step folds in its step number
  ema_params: Any = None  # exponential moving average of params, when config.ema_decay > 0

  def eval_params(self):
    """The parameters evaluation and predict use: the EMA when there is one."""
    return self.ema_params if self.ema_params is not None else self.params


def make_init_fn(model, tx, example_x, use_ema: bool):
  """init(rng) -> TrainState; jit it with out_shardings to create it sharded."""

  def init(rng):
    param_rng, dropout_rng, state_rng = jax.random.split(rng, 3)
    params, model_state = model.init(param_rng, dropout_rng, example_x)
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=tx.init(params),
        model_state=model_state,
        rng=state_rng,
        ema_params=params if use_ema else None,
    )

  return init


def param_count(params) -> int:
  return int(sum(np.prod(x.shape) for x in jax.tree.leaves(params)))
