"""The one place that knows how a model is written: today Flax Linen modules.

The core, the train and eval steps, predict, export and sampling call a model only through
`LinenModel.init` and `LinenModel.apply`, which speak in (params, model_state) pytrees: params are
what the optimizer updates, model_state every other collection (e.g. batch_stats), carried in the
train state and updated by training steps. A model written another way (e.g. Flax NNX) needs a
class with the same two methods here, and nothing in the loop changes.
"""

import dataclasses
import inspect
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp

from lepton_jax import registry
from lepton_jax.errors import UserError, first_line

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def dtype(name: str, key: str, backend: str | None = None):
  """The jnp dtype a config names; 'auto' is bfloat16 on accelerators and float32 on CPU."""
  if name == "auto":
    return jnp.float32 if (backend or jax.default_backend()) == "cpu" else jnp.bfloat16
  if name not in DTYPES:
    raise UserError(f"{key}={name!r} is not a dtype; choose one of {', '.join(DTYPES)} or auto")
  return DTYPES[name]


class LinenModel:
  """A Flax Linen module seen as init(rng, x) and apply(params, model_state, x, ...)."""

  def __init__(self, module: nn.Module, name: str = ""):
    self.module = module
    self.name = name or type(module).__name__

  def init(self, param_rng, dropout_rng, x) -> tuple[Any, dict]:
    """(params, model_state) for inputs like `x`; eval-mode init, so no collection is updated."""
    variables = flax.core.unfreeze(
        self.module.init({"params": param_rng, "dropout": dropout_rng}, x, train=False))
    params = variables.pop("params")
    return params, variables

  def apply(self, params, model_state: dict, x, *, train: bool, rng=None):
    """(outputs, new model_state). In training, every collection of model_state is mutable
    and `rng` drives dropout; in eval mode the state is read only and returned unchanged."""
    variables = {"params": params, **model_state}
    if not train:
      return self.module.apply(variables, x, train=False), model_state
    mutable = list(model_state.keys())
    rngs = {"dropout": rng} if rng is not None else None
    out = self.module.apply(variables, x, train=True, rngs=rngs, mutable=mutable or False)
    return out if mutable else (out, model_state)

  def has_field(self, field: str) -> bool:
    return field in _fields(type(self.module))

  def replace(self, **fields) -> "LinenModel":
    """The same model with other constructor fields (e.g. a portable kernel for export);
    parameters are shared, since fields that change the parameters' shapes are not replaced."""
    return LinenModel(self.module.clone(**fields), self.name)


def _fields(cls) -> set[str]:
  if dataclasses.is_dataclass(cls):
    return {f.name for f in dataclasses.fields(cls)}
  return set(inspect.signature(cls).parameters)


def build_model(config, experiment, backend: str | None = None) -> LinenModel:
  """The registered model of config.model, told its outputs by the experiment."""
  cls = registry.get("model", config.model.name)
  kwargs = {k: v for k, v in config.model.items() if k != "name"}
  fields = _fields(cls)
  for key, value in experiment.model_kwargs.items():
    if key in fields:
      kwargs.setdefault(key, value)
  if "dtype" in fields:
    kwargs["dtype"] = dtype(config.dtype, "dtype", backend)
  if "param_dtype" in fields:
    kwargs["param_dtype"] = dtype(config.param_dtype, "param_dtype", backend)
  unknown = sorted(set(kwargs) - fields - {"parent", "name"})
  if unknown:
    allowed = sorted(fields - {"parent", "name"})
    raise UserError(f"model {config.model.name!r} has no argument(s) {', '.join(unknown)}; "
                    f"its arguments are {', '.join(allowed)}")
  kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}
  try:
    return LinenModel(cls(**kwargs), config.model.name)
  except (TypeError, ValueError) as e:
    raise UserError(f"config.model ({config.model.name}): {first_line(e)}") from e
