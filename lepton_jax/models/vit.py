"""Vision Transformer: patch embedding, learned positions, pre-norm encoder."""

from typing import Any, Optional

import flax.linen as nn
import jax.numpy as jnp

from lepton_jax import registry

# Dimensions of the presets of Steiner et al. / DeiT; the patch size is separate
# because it follows the image size, not the model size.
VARIANTS = {
    "Ti": dict(width=192, depth=12, num_heads=3, mlp_dim=768),
    "S": dict(width=384, depth=12, num_heads=6, mlp_dim=1536),
}
_DEFAULT_VARIANT = "Ti"


class MlpBlock(nn.Module):
  mlp_dim: int
  dropout_rate: float = 0.0
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    width = x.shape[-1]
    x = nn.Dense(self.mlp_dim, dtype=self.dtype, param_dtype=self.param_dtype, name="fc1")(x)
    x = nn.gelu(x)
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    x = nn.Dense(width, dtype=self.dtype, param_dtype=self.param_dtype, name="fc2")(x)
    return nn.Dropout(self.dropout_rate, deterministic=not train)(x)


class EncoderBlock(nn.Module):
  """Pre-norm block: x + Attn(LN(x)), then x + MLP(LN(x))."""

  num_heads: int
  mlp_dim: int
  dropout_rate: float = 0.0
  attention_dropout_rate: float = 0.0
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    y = nn.LayerNorm(dtype=self.dtype, param_dtype=self.param_dtype, name="ln1")(x)
    y = nn.MultiHeadDotProductAttention(
        num_heads=self.num_heads, dropout_rate=self.attention_dropout_rate,
        deterministic=not train, dtype=self.dtype, param_dtype=self.param_dtype,
        name="attn")(y, y)
    x = x + nn.Dropout(self.dropout_rate, deterministic=not train)(y)
    y = nn.LayerNorm(dtype=self.dtype, param_dtype=self.param_dtype, name="ln2")(x)
    y = MlpBlock(self.mlp_dim, self.dropout_rate, dtype=self.dtype,
                 param_dtype=self.param_dtype, name="mlp")(y, train=train)
    return x + y


@registry.register("model", "vit")
class ViT(nn.Module):
  """Vision Transformer (pre-norm); presets variant='Ti' | 'S' or explicit dims.

  Dimensions: `variant` picks a preset (Ti: width 192, depth 12, 3 heads,
  mlp 768; S: 384, 12, 6, 1536); any of width/depth/num_heads/mlp_dim given
  explicitly overrides the preset. With `variant=None`, unset dimensions fall
  back to Ti's. `pooling='cls'` prepends a learned class token and classifies
  from it; 'mean' averages the patch tokens. The position embedding is sized at
  init from the image, so a model must be applied to the image size it was
  initialised with.

  Parameters (the `params` collection):
    Ti, patch 4, 32x32 images, 10 classes, cls:        5,362,762
    S,  patch 4, 32x32 images, 10 classes, cls:       21,342,346
    Ti, patch 16, 224x224 images, 1000 classes, cls:   5,717,416
    S,  patch 16, 224x224 images, 1000 classes, cls:  22,050,664
  'mean' pooling has 2*width fewer (no class token, one fewer position).
  """

  num_classes: int
  variant: Optional[str] = None
  width: Optional[int] = None
  depth: Optional[int] = None
  num_heads: Optional[int] = None
  mlp_dim: Optional[int] = None
  patch_size: int = 4
  pooling: str = "cls"
  dropout_rate: float = 0.0
  attention_dropout_rate: float = 0.0
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  def dims(self) -> dict:
    """The resolved width/depth/num_heads/mlp_dim."""
    if self.variant is not None and self.variant not in VARIANTS:
      raise ValueError(f"vit: unknown variant {self.variant!r}; choose one of "
                       f"{', '.join(VARIANTS)} or null for explicit dimensions")
    preset = VARIANTS[self.variant if self.variant is not None else _DEFAULT_VARIANT]
    out = {k: getattr(self, k) if getattr(self, k) is not None else v for k, v in preset.items()}
    if out["width"] % out["num_heads"]:
      raise ValueError(f"vit: width {out['width']} is not divisible by num_heads {out['num_heads']}")
    return out

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    if self.pooling not in ("cls", "mean"):
      raise ValueError(f"vit: pooling must be 'cls' or 'mean', not {self.pooling!r}")
    d = self.dims()
    x = x.astype(self.dtype)
    if x.ndim == 3:
      x = x[..., None]
    h, w = x.shape[1:3]
    p = self.patch_size
    if h % p or w % p:
      raise ValueError(f"vit: image size {h}x{w} is not divisible by patch_size {p}")

    x = nn.Conv(d["width"], (p, p), strides=(p, p), padding="VALID",
                dtype=self.dtype, param_dtype=self.param_dtype, name="patch_embed")(x)
    x = x.reshape((x.shape[0], -1, d["width"]))
    if self.pooling == "cls":
      cls = self.param("cls_token", nn.initializers.zeros, (1, 1, d["width"]), self.param_dtype)
      x = jnp.concatenate([jnp.broadcast_to(cls.astype(self.dtype), (x.shape[0], 1, d["width"])), x], 1)
    pos = self.param("pos_embed", nn.initializers.normal(stddev=0.02),
                     (1, x.shape[1], d["width"]), self.param_dtype)
    x = x + pos.astype(self.dtype)
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)

    for i in range(d["depth"]):
      x = EncoderBlock(d["num_heads"], d["mlp_dim"], self.dropout_rate, self.attention_dropout_rate,
                       dtype=self.dtype, param_dtype=self.param_dtype, name=f"block{i}")(x, train=train)
    x = nn.LayerNorm(dtype=self.dtype, param_dtype=self.param_dtype, name="ln_final")(x)
    if self.pooling == "cls":
      x = x[:, 0]
    else:
      x = jnp.mean(x.astype(jnp.float32), axis=1).astype(self.dtype)
    x = nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=self.param_dtype, name="head")(x)
    return x.astype(jnp.float32)
