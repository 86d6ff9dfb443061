"""Decoder-only causal Transformer language model (pre-norm, GPT-style)."""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from lepton_jax import registry


def rotary(x, base: float = 10000.0):
  """Rotary position embedding (Su et al., 2021) of x: (B, T, heads, head_dim).

  Rotates pairs (x[..., i], x[..., i + head_dim/2]) by angle pos * base**(-2i/head_dim).
  The angles are computed in float32 since bf16 cannot represent large positions
  times small frequencies accurately.
  """
  t, dim = x.shape[1], x.shape[-1]
  if dim % 2:
    raise ValueError(f"transformer_lm: rotary positions need an even head dimension, not {dim}")
  freqs = base ** (-jnp.arange(0, dim // 2, dtype=jnp.float32) * 2.0 / dim)
  angles = jnp.arange(t, dtype=jnp.float32)[:, None] * freqs[None, :]  # (T, dim/2)
  cos = jnp.cos(angles)[None, :, None, :]
  sin = jnp.sin(angles)[None, :, None, :]
  x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)
  out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
  return out.astype(x.dtype)


class CausalSelfAttention(nn.Module):
  num_heads: int
  use_rotary: bool = False
  attention_dropout_rate: float = 0.0
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    b, t, width = x.shape
    head_dim = width // self.num_heads
    dense = lambda name, **kw: nn.DenseGeneral(  # noqa: E731
        dtype=self.dtype, param_dtype=self.param_dtype, name=name, **kw)
    q = dense("query", features=(self.num_heads, head_dim))(x)
    k = dense("key", features=(self.num_heads, head_dim))(x)
    v = dense("value", features=(self.num_heads, head_dim))(x)
    if self.use_rotary:
      q, k = rotary(q), rotary(k)
    # Logits and softmax in float32: bf16 softmax over long rows is too coarse.
    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32)
    logits = logits / jnp.sqrt(jnp.float32(head_dim))
    causal = jnp.tril(jnp.ones((t, t), dtype=bool))
    logits = jnp.where(causal[None, None], logits, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(logits, axis=-1).astype(self.dtype)
    probs = nn.Dropout(self.attention_dropout_rate, deterministic=not train)(probs)
    y = jnp.einsum("bhqk,bkhd->bqhd", probs, v)
    return dense("out", features=width, axis=(-2, -1))(y)


class DecoderBlock(nn.Module):
  """Pre-norm block: x + Attn(LN(x)), then x + MLP(LN(x))."""

  num_heads: int
  mlp_dim: int
  use_rotary: bool = False
  dropout_rate: float = 0.0
  attention_dropout_rate: float = 0.0
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    width = x.shape[-1]
    drop = lambda y: nn.Dropout(self.dropout_rate, deterministic=not train)(y)  # noqa: E731
    y = nn.LayerNorm(dtype=self.dtype, param_dtype=self.param_dtype, name="ln1")(x)
    y = CausalSelfAttention(self.num_heads, self.use_rotary, self.attention_dropout_rate,
                            dtype=self.dtype, param_dtype=self.param_dtype, name="attn")(y, train=train)
    x = x + drop(y)
    y = nn.LayerNorm(dtype=self.dtype, param_dtype=self.param_dtype, name="ln2")(x)
    y = nn.Dense(self.mlp_dim, dtype=self.dtype, param_dtype=self.param_dtype, name="fc1")(y)
    y = nn.gelu(y)
    y = nn.Dense(width, dtype=self.dtype, param_dtype=self.param_dtype, name="fc2")(y)
    return x + drop(y)


@registry.register("model", "transformer_lm")
class TransformerLM(nn.Module):
  """Causal Transformer LM: int32 (B, T) tokens -> (B, T, vocab_size) logits.

  Pre-norm decoder blocks, final LayerNorm, `positions='learned'` (a table of
  `max_len` rows) or 'rotary' (applied to queries and keys in every layer, no
  parameters). `tie_embeddings` reuses the token embedding as the output layer.
  Any prefix length t <= max_len works, so the same parameters serve training on
  (B, max_len) and sampling on growing prefixes. Rotary models accept longer
  inputs too, but were trained only up to the lengths they saw.

  Parameters (the `params` collection, vocab_size=256):
    default (width 256, depth 4, 4 heads, mlp 1024, max_len 256,
             learned, tied):                      3,290,624
    same with positions='rotary':                 3,225,088
    same with tie_embeddings=False (learned):     3,356,160
  In general: vocab*width (+ vocab*width untied) (+ max_len*width learned)
  + 2*width (final LN) + depth * (4*width^2 + 4*width + 2*width*mlp_dim
  + mlp_dim + width + 4*width).
  """

  vocab_size: int = 256
  width: int = 256
  depth: int = 4
  num_heads: int = 4
  mlp_dim: int = 1024
  max_len: int = 256
  positions: str = "learned"
  tie_embeddings: bool = True
  dropout_rate: float = 0.0
  attention_dropout_rate: float = 0.0
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    if self.positions not in ("learned", "rotary"):
      raise ValueError(f"transformer_lm: positions must be 'learned' or 'rotary', not {self.positions!r}")
    if self.width % self.num_heads:
      raise ValueError(f"transformer_lm: width {self.width} is not divisible by num_heads {self.num_heads}")
    if x.ndim != 2:
      raise ValueError(f"transformer_lm: expects int token ids of shape (batch, time), got shape {x.shape}")
    t = x.shape[1]
    if self.positions == "learned" and t > self.max_len:
      raise ValueError(f"transformer_lm: sequence length {t} exceeds max_len {self.max_len}")

    embed = nn.Embed(self.vocab_size, self.width, embedding_init=nn.initializers.normal(stddev=0.02),
                     dtype=self.dtype, param_dtype=self.param_dtype, name="token_embed")
    h = embed(x.astype(jnp.int32))
    if self.positions == "learned":
      pos = self.param("pos_embed", nn.initializers.normal(stddev=0.02),
                       (self.max_len, self.width), self.param_dtype)
      h = h + pos[None, :t].astype(self.dtype)
    h = nn.Dropout(self.dropout_rate, deterministic=not train)(h)

    for i in range(self.depth):
      h = DecoderBlock(self.num_heads, self.mlp_dim, self.positions == "rotary", self.dropout_rate,
                       self.attention_dropout_rate, dtype=self.dtype, param_dtype=self.param_dtype,
                       name=f"block{i}")(h, train=train)
    h = nn.LayerNorm(dtype=self.dtype, param_dtype=self.param_dtype, name="ln_final")(h)
    if self.tie_embeddings:
      logits = embed.attend(h)
    else:
      logits = nn.Dense(self.vocab_size, use_bias=False, dtype=self.dtype,
                        param_dtype=self.param_dtype, name="lm_head")(h)
    return logits.astype(jnp.float32)
