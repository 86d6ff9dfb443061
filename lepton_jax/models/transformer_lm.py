"""Decoder-only causal Transformer language models: GPT-2 style (`transformer_lm`) and, with
other fields, Llama style (`llama`, in llama.py): one implementation.

Speed: attention runs through `attention.causal_attention` (cuDNN flash attention on NVIDIA
GPUs, the Pallas splash kernel on TPU, XLA elsewhere); the decoder blocks are one `nn.scan`
(compile time does not grow with depth), optionally rematerialised; logits come back in the
compute dtype (the LM loss upcasts to f32 inside its reductions).

Decoding: `apply(..., decode=True, positions=..., mutable=['cache'])` runs a chunk of tokens
against a key/value cache (`init_cache`); `sampling.generate` drives it.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from lepton_jax import registry
from lepton_jax.errors import UserError
from lepton_jax.models import attention as attn_lib

REMAT_POLICIES = {
    "none": None,
    # Saves the outputs of the weight matmuls, recomputes the rest (norms, activations,
    # attention): most of the memory saving for a fraction of the recompute.
    "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
    "full": jax.checkpoint_policies.nothing_saveable,
}


def rotary(x, positions=None, base: float = 10000.0):
  """Rotary position embedding (Su et al., 2021) of x: (B, T, heads, head_dim).

  Rotates pairs (x[..., i], x[..., i + head_dim/2]) by angle pos * base**(-2i/head_dim),
  pos the token's position: `positions` (B, T), default 0..T-1. The angles are computed
  in float32 since bf16 cannot represent large positions times small frequencies accurately.
  """
  t, dim = x.shape[1], x.shape[-1]
  if dim % 2:
    raise UserError(f"rotary positions need an even head dimension (width / num_heads), not {dim}")
  if positions is None:
    positions = jnp.arange(t)[None, :]
  freqs = base ** (-jnp.arange(0, dim // 2, dtype=jnp.float32) * 2.0 / dim)
  angles = positions.astype(jnp.float32)[:, :, None] * freqs  # (B, T, dim/2)
  cos = jnp.cos(angles)[:, :, None, :]
  sin = jnp.sin(angles)[:, :, None, :]
  x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)
  out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
  return out.astype(x.dtype)


def _visibility(query_slots, key_slots, key_positions):
  """mask (B, 1, S, L): key j is visible to query i iff it is no padding (position >= 0)
  and not after it (slot_j <= slot_i)."""
  causal = key_slots[None, None, :] <= query_slots[None, :, None]
  return (causal & (key_positions >= 0)[:, None, :])[:, None]


class CausalSelfAttention(nn.Module):
  """Multi-head (or grouped-query: num_kv_heads < num_heads) causal self-attention.

  Not `masked`: plain causal attention by the chosen kernel. `masked`: `positions`
  mark padding (< 0) and an explicit mask is used. Decoding (`kv` given): this chunk's
  keys and values are written into layer `layer` of the stacked cache `kv` at slot
  `index`, and the queries attend to every cached slot (`cache_positions`) up to their own.
  Returns (output, kv).
  """

  num_heads: int
  num_kv_heads: int
  use_bias: bool = True
  rope_base: float | None = None  # None: no rotary positions
  attention: str = "auto"
  dropout_rate: float = 0.0
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  train: bool = False
  masked: bool = False

  @nn.compact
  def __call__(self, x, positions, layer=None, kv=None, cache_positions=None, index=None):
    width = x.shape[-1]
    head_dim = width // self.num_heads
    dense = lambda name, heads: nn.DenseGeneral(  # noqa: E731
        (heads, head_dim), use_bias=self.use_bias, dtype=self.dtype,
        param_dtype=self.param_dtype, name=name)
    q = dense("query", self.num_heads)(x)
    k = dense("key", self.num_kv_heads)(x)
    v = dense("value", self.num_kv_heads)(x)
    if self.rope_base is not None:
      q, k = rotary(q, positions, self.rope_base), rotary(k, positions, self.rope_base)
    slots = jnp.arange(q.shape[1])
    mask = _visibility(slots, slots, positions) if self.masked else None
    if kv is not None:
      k, v, kv = _write_and_read(kv, k, v, layer, index)
      # Unwritten slots lie after every query's own slot, so causality hides them too.
      mask = _visibility(index + slots, jnp.arange(k.shape[1]), cache_positions)
    y = self._attend(q, k, v, mask)
    return nn.DenseGeneral(width, axis=(-2, -1), use_bias=self.use_bias, dtype=self.dtype,
                           param_dtype=self.param_dtype, name="out")(y), kv

  def _attend(self, q, k, v, mask):
    if self.train and self.dropout_rate > 0:
      drop = nn.Dropout(self.dropout_rate, deterministic=False)
      return attn_lib.explicit_attention(q, k, v, mask, drop)
    if mask is not None:
      return attn_lib.masked_attention(q, k, v, mask)
    kernel = attn_lib.choose(self.attention, self.dtype, q.shape[-1], q.shape[1])
    return attn_lib.causal_attention(q, k, v, kernel)


def _write_and_read(kv, k, v, layer, index):
  """Writes k, v (B, S, kv_heads, D) into layer `layer` of the stacked cache kv (two
  (depth, B, L, kv_heads, D) arrays) at slot `index`; returns that layer's keys and values
  and the updated cache. The cache is carried through the layer loop and updated in place,
  rather than sliced per layer and restacked, which would copy all of it every token."""
  k_all, v_all = kv
  start = (layer, 0, index, 0, 0)
  k_all = jax.lax.dynamic_update_slice(k_all, k[None].astype(k_all.dtype), start)
  v_all = jax.lax.dynamic_update_slice(v_all, v[None].astype(v_all.dtype), start)
  read = lambda a: jax.lax.dynamic_index_in_dim(a, layer, keepdims=False)  # noqa: E731
  return read(k_all), read(v_all), (k_all, v_all)


class Mlp(nn.Module):
  """'gelu': fc2(gelu(fc1(x))); 'swiglu': down(silu(gate(x)) * up(x))."""

  kind: str
  hidden: int
  use_bias: bool = True
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    dense = lambda n, name: nn.Dense(n, use_bias=self.use_bias, dtype=self.dtype,  # noqa: E731
                                     param_dtype=self.param_dtype, name=name)
    if self.kind == "swiglu":
      y = nn.silu(dense(self.hidden, "gate")(x)) * dense(self.hidden, "up")(x)
      return dense(x.shape[-1], "down")(y)
    return dense(x.shape[-1], "fc2")(nn.gelu(dense(self.hidden, "fc1")(x)))


def _norm(kind: str, use_bias: bool, dtype, param_dtype, name: str):
  if kind == "rmsnorm":
    return nn.RMSNorm(epsilon=1e-5, dtype=dtype, param_dtype=param_dtype, name=name)
  return nn.LayerNorm(use_bias=use_bias, dtype=dtype, param_dtype=param_dtype, name=name)


class DecoderBlock(nn.Module):
  """Pre-norm block: x + Attn(Norm(x)), then x + Mlp(Norm(x)). Carries (x, kv cache or
  None) and returns ((x, kv), None): the (carry, output) pair of a scanned layer."""

  num_heads: int
  num_kv_heads: int
  mlp_dim: int
  norm: str = "layernorm"
  mlp: str = "gelu"
  use_bias: bool = True
  rope_base: float | None = None
  attention: str = "auto"
  dropout_rate: float = 0.0
  attention_dropout_rate: float = 0.0
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  train: bool = False
  masked: bool = False

  @nn.compact
  def __call__(self, carry, layer, positions, cache_positions=None, index=None):
    x, kv = carry
    drop = lambda y: nn.Dropout(self.dropout_rate, deterministic=not self.train)(y)  # noqa: E731
    norm = lambda name: _norm(self.norm, self.use_bias, self.dtype, self.param_dtype, name)  # noqa: E731
    y, kv = CausalSelfAttention(
        self.num_heads, self.num_kv_heads, self.use_bias, self.rope_base, self.attention,
        self.attention_dropout_rate, self.dtype, self.param_dtype, self.train, self.masked,
        name="attn")(norm("ln1")(x), positions, layer, kv, cache_positions, index)
    x = x + drop(y)
    y = Mlp(self.mlp, self.mlp_dim, self.use_bias, self.dtype, self.param_dtype,
            name="mlp")(norm("ln2")(x))
    return (x + drop(y), kv), None


@registry.register("model", "transformer_lm")
class TransformerLM(nn.Module):
  """Causal Transformer LM: int32 (B, T) tokens -> (B, T, vocab_size) logits (compute dtype).

  Pre-norm decoder blocks and a final norm. Defaults are GPT-2's design: LayerNorm,
  GELU MLP, biases, learned positions (a table of `max_len` rows), output layer tied to
  the token embedding. Other fields give Llama's (see `llama`): norm='rmsnorm',
  mlp='swiglu' (gate, up, down), positions='rotary' (base `rope_base`, no parameters),
  num_kv_heads < num_heads (grouped-query attention; 0 = num_heads), use_bias=False,
  tie_embeddings=False. attention: 'auto' | 'xla' | 'cudnn' | 'pallas' (the kernel, see
  models/attention.py; attention dropout in training always takes the written-out path).
  scan_layers: the blocks are one nn.scan, their parameters under 'blocks' with a leading
  depth axis (else 'block0', 'block1', ...). remat: 'none' | 'dots' (keep matmul outputs,
  recompute the rest in the backward pass) | 'full' (recompute each block).

  Any prefix length t <= max_len works, so the same parameters serve training on
  (B, max_len) and sampling on growing prefixes. Rotary models accept longer inputs too,
  but were trained only up to the lengths they saw.

  Parameters (the `params` collection, vocab_size=256):
    default (width 256, depth 4, 4 heads, mlp 1024, max_len 256,
             learned, tied):                      3,290,624
    same with positions='rotary':                 3,225,088
    same with tie_embeddings=False (learned):     3,356,160
  In general (GPT-2 style): vocab*width (+ vocab*width untied) (+ max_len*width learned)
  + 2*width (final LN) + depth * (4*width^2 + 4*width + 2*width*mlp_dim
  + mlp_dim + width + 4*width).
  """

  vocab_size: int = 256
  width: int = 256
  depth: int = 4
  num_heads: int = 4
  num_kv_heads: int = 0
  mlp_dim: int = 1024
  max_len: int = 256
  positions: str = "learned"
  rope_base: float = 10000.0
  norm: str = "layernorm"
  mlp: str = "gelu"
  use_bias: bool = True
  tie_embeddings: bool = True
  dropout_rate: float = 0.0
  attention_dropout_rate: float = 0.0
  attention: str = "auto"
  scan_layers: bool = True
  remat: str = "none"
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  # The registered name, for error messages.
  kind = "transformer_lm"
  # sampling.generate may drive this model with a key/value cache.
  supports_decode = True

  def check(self) -> None:
    """UserError on fields that do not make a model."""
    for field, choices in (("positions", ("learned", "rotary")), ("norm", ("layernorm", "rmsnorm")),
                           ("mlp", ("gelu", "swiglu")), ("remat", tuple(REMAT_POLICIES)),
                           ("attention", attn_lib.IMPLEMENTATIONS)):
      attn_lib.check_choice(field, getattr(self, field), choices, self.kind)
    if self.num_heads <= 0 or self.width % self.num_heads:
      raise UserError(f"{self.kind}: width {self.width} is not divisible by num_heads "
                      f"{self.num_heads}; change model.width or model.num_heads")
    if self.kv_heads < 0 or self.num_heads % self.kv_heads:
      raise UserError(f"{self.kind}: num_heads {self.num_heads} is not a multiple of num_kv_heads "
                      f"{self.num_kv_heads}; use a divisor of num_heads (0: num_heads)")

  @property
  def kv_heads(self) -> int:
    return self.num_kv_heads or self.num_heads

  @nn.compact
  def __call__(self, x, *, train: bool = False, decode: bool = False, positions=None):
    """Logits of tokens x (B, T). `positions` (B, T): each token's position (default
    0..T-1); a negative one marks padding, which no token attends to. decode=True: the
    tokens follow those already in the 'cache' collection (see `init_cache`)."""
    self.check()
    if x.ndim != 2:
      raise UserError(f"{self.kind}: expects int token ids of shape (batch, time), got shape {x.shape}")
    t = x.shape[1]
    if self.positions == "learned" and t > self.max_len and not decode:
      raise UserError(f"{self.kind}: sequence length {t} exceeds max_len {self.max_len}; "
                      "raise model.max_len or lower the sequence length")
    masked = decode or positions is not None
    if positions is None:
      positions = jnp.broadcast_to(jnp.arange(t, dtype=jnp.int32), x.shape)

    embed = nn.Embed(self.vocab_size, self.width, embedding_init=nn.initializers.normal(stddev=0.02),
                     dtype=self.dtype, param_dtype=self.param_dtype, name="token_embed")
    h = embed(x.astype(jnp.int32))
    if self.positions == "learned":
      table = self.param("pos_embed", nn.initializers.normal(stddev=0.02),
                         (self.max_len, self.width), self.param_dtype)
      rows = table[:t][None] if not masked else jnp.take(table, jnp.maximum(positions, 0), axis=0)
      h = h + rows.astype(self.dtype)
    h = nn.Dropout(self.dropout_rate, deterministic=not train)(h)
    if decode:
      h = self._decode_blocks(h, positions)
    else:
      h, _ = self._blocks(h, positions, train, masked)
    h = _norm(self.norm, self.use_bias, self.dtype, self.param_dtype, "ln_final")(h)
    if self.tie_embeddings:
      return embed.attend(h)
    return nn.Dense(self.vocab_size, use_bias=False, dtype=self.dtype,
                    param_dtype=self.param_dtype, name="lm_head")(h)

  def _blocks(self, h, positions, train: bool, masked: bool, kv=None, cache_positions=None,
              index=None):
    """(h, kv) after the decoder blocks: one nn.scan (parameters stacked on a leading layer
    axis) or a loop. kv, the key/value cache, is carried through them (see _decode_blocks)."""
    block = DecoderBlock
    if self.remat != "none" and kv is None:
      block = nn.remat(block, policy=REMAT_POLICIES[self.remat], prevent_cse=not self.scan_layers)
    kwargs = dict(
        num_heads=self.num_heads, num_kv_heads=self.kv_heads, mlp_dim=self.mlp_dim, norm=self.norm,
        mlp=self.mlp, use_bias=self.use_bias,
        rope_base=self.rope_base if self.positions == "rotary" else None,
        attention=self.attention, dropout_rate=self.dropout_rate,
        attention_dropout_rate=self.attention_dropout_rate, dtype=self.dtype,
        param_dtype=self.param_dtype, train=train, masked=masked)
    carry = (h, kv)
    if self.scan_layers:
      scanned = nn.scan(block, variable_axes={"params": 0}, split_rngs={"params": True, "dropout": True},
                        in_axes=(0, nn.broadcast, nn.broadcast, nn.broadcast), length=self.depth)
      carry, _ = scanned(**kwargs, name="blocks")(carry, jnp.arange(self.depth), positions,
                                                  cache_positions, index)
      return carry
    for i in range(self.depth):
      carry, _ = block(**kwargs, name=f"block{i}")(carry, i, positions, cache_positions, index)
    return carry

  def _decode_blocks(self, h, positions):
    """The blocks on a chunk of tokens that follows those in the 'cache' collection, which
    is created (zeros, as long as the input) when the model is initialised with
    decode=True; its length bounds the tokens one sequence can hold. The cache holds keys
    and values of every layer stacked, (depth, B, L, kv_heads, head_dim), each slot's
    position (B, L) and the next free slot."""
    batch, chunk = positions.shape  # at init: the whole cache
    shape = (self.depth, batch, chunk, self.kv_heads, self.width // self.num_heads)
    initialized = self.has_variable("cache", "key")
    keys = self.variable("cache", "key", jnp.zeros, shape, self.dtype)
    values = self.variable("cache", "value", jnp.zeros, shape, self.dtype)
    cache_positions = self.variable("cache", "positions", jnp.zeros, (batch, chunk), jnp.int32)
    index = self.variable("cache", "index", lambda: jnp.zeros((), jnp.int32))
    if not initialized:
      return self._blocks(h, positions, False, True)[0]
    i = index.value
    cache_positions.value = jax.lax.dynamic_update_slice(
        cache_positions.value, positions.astype(jnp.int32), (0, i))
    h, (keys.value, values.value) = self._blocks(
        h, positions, False, True, (keys.value, values.value), cache_positions.value, i)
    index.value = i + chunk
    return h

  def init_cache(self, batch_size: int, length: int):
    """An empty key/value cache (the 'cache' collection) for `batch_size` sequences of at
    most `length` tokens; zeros, built without running the model."""
    tokens = jnp.zeros((batch_size, length), jnp.int32)
    shapes = jax.eval_shape(lambda: self.init(jax.random.key(0), tokens, decode=True))["cache"]
    return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


# Sharding rules (lepton_jax.parallel.sharding's (regex, spec) format) of these models on
# the (data, fsdp, model) mesh: Megatron-style tensor parallelism over 'model' (attention
# by heads, the MLP by its hidden units, the vocabulary), parameters spread over 'fsdp'
# along the other large dimension, norms and the remaining biases replicated. Scanned
# blocks ('blocks/...') carry a leading, unsharded layer axis; unscanned ones ('block0/...')
# do not. Every sharded dimension must divide over its axes (pad vocab_size, e.g. GPT-2's
# 50257 to 50304, when the model axis is used).
_LAYER_RULES = (
    (r"attn/(query|key|value)/kernel$", "fsdp,model,None"),
    (r"attn/(query|key|value)/bias$", "model,None"),
    (r"attn/out/kernel$", "model,None,fsdp"),
    (r"mlp/(fc1|gate|up)/kernel$", "fsdp,model"),
    (r"mlp/(fc1|gate|up)/bias$", "model"),
    (r"mlp/(fc2|down)/kernel$", "model,fsdp"),
)
SHARDING_RULES = (
    tuple((r"blocks/" + regex, "None," + spec) for regex, spec in _LAYER_RULES)
    + tuple((r"block\d+/" + regex, spec) for regex, spec in _LAYER_RULES)
    + ((r"token_embed/embedding$", "model,fsdp"),
       (r"lm_head/kernel$", "fsdp,model"),
       (r"pos_embed$", "None,fsdp"),
       (r".*", "replicated"))
)
