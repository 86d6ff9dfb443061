"""The train state: a plain pytree, created sharded under jit."""

import dataclasses
import inspect
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lepton_jax import registry
from lepton_jax.errors import UserError

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


@flax.struct.dataclass
class TrainState:
  step: jax.Array  # int32 scalar: optimizer steps taken
  params: Any
  opt_state: Any
  model_state: Any  # non-parameter collections, e.g. {'batch_stats': ...}; {} if none
  rng: jax.Array  # uint32[2]: the run's key; each step folds in its step number
  ema_params: Any = None  # exponential moving average of params, when config.ema_decay > 0


def dtype(name: str, key: str):
  if name not in DTYPES:
    raise UserError(f"{key}={name!r} is not a dtype; choose one of {', '.join(DTYPES)}")
  return DTYPES[name]


def build_model(config, experiment) -> nn.Module:
  """The registered model of config.model, told its outputs by the experiment."""
  cls = registry.get("model", config.model.name)
  kwargs = {k: v for k, v in config.model.items() if k != "name"}
  fields = {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else set(
      inspect.signature(cls).parameters)
  for key, value in experiment.model_kwargs.items():
    if key in fields:
      kwargs.setdefault(key, value)
  if "dtype" in fields:
    kwargs["dtype"] = dtype(config.dtype, "dtype")
  if "param_dtype" in fields:
    kwargs["param_dtype"] = dtype(config.param_dtype, "param_dtype")
  unknown = sorted(set(kwargs) - fields - {"parent", "name"})
  if unknown:
    allowed = sorted(fields - {"parent", "name"})
    raise UserError(f"model {config.model.name!r} has no argument(s) {', '.join(unknown)}; "
                    f"its arguments are {', '.join(allowed)}")
  kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}
  return cls(**kwargs)


def example_input(info, preprocess) -> jax.Array:
  """A one-example batch shaped and typed as the model will see it."""
  x = jnp.zeros((1,) + tuple(info.input_shape), np.dtype(info.input_dtype))
  return preprocess(x, jax.random.PRNGKey(0))


def make_init_fn(model, tx, info, preprocess, use_ema: bool):
  """init(rng) -> TrainState; jit it with out_shardings to create it sharded."""

  def init(rng):
    param_rng, dropout_rng, state_rng = jax.random.split(rng, 3)
    variables = model.init({"params": param_rng, "dropout": dropout_rng},
                           example_input(info, preprocess), train=False)
    variables = flax.core.unfreeze(variables)
    params = variables.pop("params")
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=tx.init(params),
        model_state=variables,
        rng=state_rng,
        ema_params=params if use_ema else None,
    )

  return init


def param_count(params) -> int:
  return int(sum(np.prod(x.shape) for x in jax.tree.leaves(params)))
