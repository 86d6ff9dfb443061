"""Multi-layer perceptron on flat features (or flattened images)."""

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from lepton_jax import registry

ACTIVATIONS = {
    "relu": nn.relu,
    "gelu": nn.gelu,
    "tanh": jnp.tanh,
    "sigmoid": nn.sigmoid,
    "silu": nn.silu,
}


def activation(name: str):
  if name not in ACTIVATIONS:
    raise ValueError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}")
  return ACTIVATIONS[name]


@registry.register("model", "mlp")
class MLP(nn.Module):
  """MLP: Dense(hidden_sizes...) with `activation`, then Dense(num_classes).

  Parameters: sum over layers of (fan_in + 1) * fan_out; the breast-cancer net
  30 -> 5 -> 1 has (30+1)*5 + (5+1)*1 = 161.
  """

  num_classes: int
  hidden_sizes: Sequence[int] = (128,)
  activation: str = "relu"
  dropout_rate: float = 0.0
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    act = activation(self.activation)
    x = x.reshape((x.shape[0], -1)).astype(self.dtype)
    for i, width in enumerate(self.hidden_sizes):
      x = act(nn.Dense(width, dtype=self.dtype, param_dtype=self.param_dtype, name=f"hidden_{i}")(x))
      if self.dropout_rate:
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    x = nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=self.param_dtype, name="head")(x)
    return x.astype(jnp.float32)
