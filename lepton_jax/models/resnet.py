"""CIFAR-style ResNet: 3x3 stem, no max-pool, BasicBlock stages, batch norm."""

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from lepton_jax import registry


class BasicBlock(nn.Module):
  """Two 3x3 convs with batch norm; projection shortcut when the shape changes."""

  features: int
  strides: int = 1
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    conv = lambda f, k, s, name: nn.Conv(  # noqa: E731
        f, (k, k), strides=(s, s), padding="SAME" if k > 1 else "VALID", use_bias=False,
        dtype=self.dtype, param_dtype=self.param_dtype, name=name)
    norm = lambda name, **kw: nn.BatchNorm(  # noqa: E731
        use_running_average=not train, momentum=0.9, epsilon=1e-5,
        dtype=self.dtype, param_dtype=self.param_dtype, name=name, **kw)

    y = conv(self.features, 3, self.strides, "conv1")(x)
    y = nn.relu(norm("bn1")(y))
    y = conv(self.features, 3, 1, "conv2")(y)
    # Zero-initialising the last scale makes every block start as the identity,
    # which trains deeper stacks noticeably faster (Goyal et al., 2017).
    y = norm("bn2", scale_init=nn.initializers.zeros)(y)

    if x.shape[-1] != self.features or self.strides != 1:
      x = conv(self.features, 1, self.strides, "proj_conv")(x)
      x = norm("proj_bn")(x)
    return nn.relu(x + y)


@registry.register("model", "resnet")
class ResNet(nn.Module):
  """CIFAR ResNet (3x3 stem, BasicBlocks, batch norm); default is ResNet-18.

  Stage i has `width * 2**i` channels and `stage_sizes[i]` blocks; every stage
  but the first halves the resolution. Convolutions have no bias (batch norm
  follows each); shortcuts are 1x1 conv + batch norm where the shape changes.

  Parameters (the `params` collection, 10 classes; `batch_stats` not counted):
    ResNet-18, stage_sizes=(2, 2, 2, 2), width=64:   11,173,962
    small,     stage_sizes=(1, 1, 1),    width=16:       78,042
  The count does not depend on the image size (global average pooling).
  """

  num_classes: int
  stage_sizes: Sequence[int] = (2, 2, 2, 2)
  width: int = 64
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    if not self.stage_sizes:
      raise ValueError("resnet: stage_sizes must name at least one stage, e.g. (2, 2, 2, 2)")
    x = x.astype(self.dtype)
    if x.ndim == 3:  # grayscale images without a channel axis
      x = x[..., None]
    x = nn.Conv(self.width, (3, 3), padding="SAME", use_bias=False,
                dtype=self.dtype, param_dtype=self.param_dtype, name="stem_conv")(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                     dtype=self.dtype, param_dtype=self.param_dtype, name="stem_bn")(x)
    x = nn.relu(x)
    for i, num_blocks in enumerate(self.stage_sizes):
      for j in range(num_blocks):
        x = BasicBlock(self.width * 2**i, strides=2 if (i > 0 and j == 0) else 1,
                       dtype=self.dtype, param_dtype=self.param_dtype,
                       name=f"stage{i}_block{j}")(x, train=train)
    # Pool in float32: a bf16 mean over many positions loses precision.
    x = jnp.mean(x.astype(jnp.float32), axis=(1, 2)).astype(self.dtype)
    x = nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=self.param_dtype, name="head")(x)
    return x.astype(jnp.float32)
