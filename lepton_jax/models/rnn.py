"""Recurrent sequence models (LSTM, GRU) for classification or language modelling."""

from typing import Any, Optional

import flax.linen as nn
import jax.numpy as jnp

from lepton_jax import registry

_CELLS = {"lstm": nn.OptimizedLSTMCell, "gru": nn.GRUCell}


def _orthogonal(key, shape, dtype=jnp.float32):
  # The cells' default orthogonal init runs a QR, which has no bf16 kernel; draw
  # in float32 and cast so that param_dtype=bfloat16 works.
  return nn.initializers.orthogonal()(key, shape, jnp.float32).astype(dtype)


class RecurrentNet(nn.Module):
  """Shared implementation of the `lstm` and `gru` models (see those).

  Inputs: int token ids (B, T) go through an embedding of `vocab_size` rows
  (default 256: bytes; a classifier of other tokens sets it in its config);
  float features (B, T, F) (or (B, T), read as F=1) through a Dense layer. Both
  give `embed_dim` features (default: hidden_size) to `num_layers` stacked
  unidirectional RNN layers with dropout between them.

  Heads: `head='lm'` gives (B, T, vocab_size) next-token logits; 'classify'
  gives (B, num_classes) from the top layer's output at the last valid step
  (`pooling='last'`) or its mean over valid steps ('mean'). For int inputs
  with `pad_id` set, tokens equal to pad_id at the end of a row are padding:
  the valid length of a row is its number of non-pad tokens (right padding).
  """

  num_classes: Optional[int] = None
  vocab_size: int = 256
  head: str = "classify"
  hidden_size: int = 128
  num_layers: int = 1
  embed_dim: Optional[int] = None
  pooling: str = "last"
  pad_id: Optional[int] = None
  dropout_rate: float = 0.0
  cell: str = "lstm"
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  def _check(self, x):
    if self.cell not in _CELLS:
      raise ValueError(f"rnn: unknown cell {self.cell!r}; choose one of {', '.join(_CELLS)}")
    if self.head not in ("classify", "lm"):
      raise ValueError(f"{self.cell}: head must be 'classify' or 'lm', not {self.head!r}")
    if self.pooling not in ("last", "mean"):
      raise ValueError(f"{self.cell}: pooling must be 'last' or 'mean', not {self.pooling!r}")
    integer = jnp.issubdtype(x.dtype, jnp.integer)
    if integer and x.ndim != 2:
      raise ValueError(f"{self.cell}: int token inputs must be (batch, time), got shape {x.shape}")
    if not integer and x.ndim not in (2, 3):
      raise ValueError(f"{self.cell}: float inputs must be (batch, time[, features]), got shape {x.shape}")
    if self.head == "classify" and self.num_classes is None:
      raise ValueError(f"{self.cell}: head='classify' needs num_classes")
    return integer

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    integer = self._check(x)
    embed_dim = self.embed_dim or self.hidden_size
    b, t = x.shape[:2]
    lengths = None
    if integer:
      if self.pad_id is not None:
        lengths = jnp.sum(x != self.pad_id, axis=1).astype(jnp.int32)
      h = nn.Embed(self.vocab_size, embed_dim, dtype=self.dtype, param_dtype=self.param_dtype,
                   name="embed")(x.astype(jnp.int32))
    else:
      if x.ndim == 2:
        x = x[..., None]
      h = nn.Dense(embed_dim, dtype=self.dtype, param_dtype=self.param_dtype,
                   name="input_proj")(x.astype(self.dtype))

    for i in range(self.num_layers):
      if i > 0:
        h = nn.Dropout(self.dropout_rate, deterministic=not train)(h)
      cell = _CELLS[self.cell](self.hidden_size, recurrent_kernel_init=_orthogonal, dtype=self.dtype,
                               param_dtype=self.param_dtype, name=f"{self.cell}{i}")
      h = nn.RNN(cell, name=f"rnn{i}")(h, seq_lengths=lengths).astype(self.dtype)
    h = nn.Dropout(self.dropout_rate, deterministic=not train)(h)

    if self.head == "lm":
      out = nn.Dense(self.vocab_size, dtype=self.dtype, param_dtype=self.param_dtype, name="lm_head")(h)
      return out.astype(jnp.float32)

    h = h.astype(jnp.float32)
    if lengths is None:
      lengths = jnp.full((b,), t, jnp.int32)
    if self.pooling == "last":
      # A row of only padding has length 0; read its first step rather than index -1.
      pooled = h[jnp.arange(b), jnp.maximum(lengths - 1, 0)]
    else:
      mask = (jnp.arange(t)[None, :] < lengths[:, None]).astype(jnp.float32)[..., None]
      pooled = jnp.sum(h * mask, axis=1) / jnp.maximum(jnp.sum(mask, axis=1), 1.0)
    out = nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=self.param_dtype,
                   name="head")(pooled.astype(self.dtype))
    return out.astype(jnp.float32)


@registry.register("model", "lstm")
class LSTM(RecurrentNet):
  """LSTM (nn.OptimizedLSTMCell) sequence classifier or byte LM; head='classify' | 'lm'.

  Parameters (`params` collection), 1 layer, hidden_size=128, embed_dim=128:
    head='lm', vocab_size=256:                       197,376
    head='classify', vocab_size=256, 2 classes:      164,610
  Per layer: 4 * (in*hidden + hidden*hidden + hidden) (one bias per gate).
  """

  cell: str = "lstm"


@registry.register("model", "gru")
class GRU(RecurrentNet):
  """GRU (nn.GRUCell) sequence classifier or byte LM; head='classify' | 'lm'.

  Parameters (`params` collection), 1 layer, hidden_size=128, embed_dim=128:
    head='lm', vocab_size=256:                       164,608
    head='classify', vocab_size=256, 2 classes:      131,842
  Per layer: 3 * (in*hidden + hidden*hidden) + 4*hidden (input and recurrent biases).
  """

  cell: str = "gru"
