"""Configurable convolutional stack: conv blocks, optional pooling, dense head."""

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from lepton_jax import registry
from lepton_jax.models.mlp import activation
from lepton_jax.kernels import conv, pooling


@registry.register("model", "cnn")
class CNN(nn.Module):
  """Conv stack (+ 2x2 max-pools) -> flatten -> Dense(hidden_sizes...) -> Dense(num_classes).

  The seeds' MNIST net (conv_features=(32,), pool=(True,), hidden_sizes=(64,),
  28x28x1 input, SAME padding) has 320 + 401,472 + 650 = 402,442 parameters.
  The seeds' CIFAR-10 net is conv_features=(32, 64, 64), pool=(True, True, False),
  hidden_sizes=(64,).
  """

  num_classes: int
  conv_features: Sequence[int] = (32,)
  kernel_size: int = 3
  padding: str = "SAME"
  pool: Sequence[bool] = (True,)
  hidden_sizes: Sequence[int] = (64,)
  activation: str = "relu"
  dropout_rate: float = 0.0
  pool_impl: str = "auto"  # lepton_jax.kernels.pooling: fast gradients on XLA:CPU
  conv_impl: str = "auto"  # lepton_jax.kernels.conv: shifted multiply-adds for few input channels on CPU
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    if len(self.pool) != len(self.conv_features):
      raise ValueError(
          f"cnn: pool has {len(self.pool)} entries but conv_features has {len(self.conv_features)}; "
          "give one True/False per conv layer")
    act = activation(self.activation)
    x = x.astype(self.dtype)
    if x.ndim == 3:  # grayscale images without a channel axis
      x = x[..., None]
    for i, (features, pool) in enumerate(zip(self.conv_features, self.pool)):
      x = conv.Conv(features, (self.kernel_size, self.kernel_size), padding=self.padding,
                    dtype=self.dtype, param_dtype=self.param_dtype, impl=self.conv_impl,
                    name=f"conv_{i}")(x)
      x = act(x)
      if pool:
        x = pooling.max_pool(x, (2, 2), strides=(2, 2), impl=self.pool_impl)
    x = x.reshape((x.shape[0], -1))
    for i, width in enumerate(self.hidden_sizes):
      x = act(nn.Dense(width, dtype=self.dtype, param_dtype=self.param_dtype, name=f"dense_{i}")(x))
      if self.dropout_rate:
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    x = nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=self.param_dtype, name="head")(x)
    return x.astype(jnp.float32)
