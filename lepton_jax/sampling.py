"""Autoregressive sampling from causal language models, and the byte codec
that turns text into tokens for byte-level models.

    from lepton_jax import sampling
    new_tokens = sampling.sample(logits_fn, prompt_tokens, 100, temperature=0.8, top_k=40)

`predict.Predictor.generate` uses these on a trained workdir's model.
"""

import functools
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from lepton_jax.errors import UserError


def sample(logits_fn: Callable, prompt: Sequence[int], max_new_tokens: int, *, temperature: float = 1.0,
           top_k: int = 0, seed: int = 0, max_len: int | None = None) -> list[int]:
  """Autoregressive sampling from a causal model; returns the new tokens.

  `logits_fn(tokens)` maps int32 (1, T) tokens to (1, T, V) logits in which
  position t depends on tokens[:t + 1] only. Each step runs the model on a
  fixed-width window (the prompt plus the tokens so far, the last `max_len` of
  them when longer, zero-padded on the right) and reads the logits at the last
  real position, so one compilation serves every step. temperature <= 0 is
  greedy; top_k > 0 samples among the k most likely tokens only; `seed` makes
  the draw reproducible.
  """
  tokens = [int(t) for t in prompt]
  if not tokens:
    raise UserError("empty prompt: give at least one character of text to continue")
  if max_new_tokens < 0:
    raise UserError(f"--max_new_tokens={max_new_tokens} must be >= 0")
  width = len(tokens) + max_new_tokens
  if max_len:
    width = min(width, int(max_len))
  next_token = _next_token_fn(logits_fn, float(temperature), int(top_k))
  rng = jax.random.PRNGKey(seed)
  new = []
  for i in range(max_new_tokens):
    context = tokens[-width:]
    window = np.zeros((1, width), np.int32)
    window[0, :len(context)] = context
    token = int(next_token(window, np.int32(len(context)), jax.random.fold_in(rng, i)))
    tokens.append(token)
    new.append(token)
  return new


@functools.lru_cache(maxsize=8)
def _next_token_fn(logits_fn: Callable, temperature: float, top_k: int) -> Callable:
  """jit(next_token(window, length, key)): compiled once per window width (and reused
  across calls with the same logits_fn, temperature and top_k)."""

  @jax.jit
  def next_token(window, length, key):
    logits = logits_fn(window)[0, length - 1].astype(jnp.float32)
    if temperature <= 0:
      return jnp.argmax(logits)
    logits = logits / temperature
    if 0 < top_k < logits.shape[-1]:
      kth = jax.lax.top_k(logits, top_k)[0][-1]
      logits = jnp.where(logits < kth, -jnp.inf, logits)
    return jax.random.categorical(key, logits)

  return next_token


class ByteCodec:
  """UTF-8 bytes as tokens 0..255 (the default for byte-level language models)."""

  def encode(self, text: str) -> list[int]:
    return list(text.encode("utf-8"))

  def decode(self, tokens: Sequence[int]) -> str:
    return bytes(int(t) % 256 for t in tokens).decode("utf-8", errors="replace")
