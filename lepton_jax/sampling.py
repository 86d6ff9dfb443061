"""Autoregressive sampling from causal language models, and the byte codec
that turns text into tokens for byte-level models.

    from lepton_jax import sampling
    rows = sampling.generate(model, variables, [[72, 105], [87, 104, 121]], 100,
                             temperature=0.8, top_k=40, seed=0)   # new tokens per prompt
    new_tokens = sampling.sample(logits_fn, prompt_tokens, 100, temperature=0.8, top_k=40)

`generate` runs models with a decode mode (`module.supports_decode`: transformer_lm, llama)
with a key/value cache: the prompts, left-padded to one length, in one call (prefill), then
one token per step inside one compiled loop. Other models, and contexts longer than
`max_len`, are re-run on the whole window at every step (`sample` always does that).
Both draw the token of row r at step i with the key fold_in(fold_in(PRNGKey(seed), r), i),
so they give the same tokens. `predict.Predictor.generate` uses these on a trained
workdir's model.
"""

import dataclasses
import functools
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from lepton_jax.errors import UserError

# Prompts are left-padded to a multiple of this, so that prompts of similar lengths share
# one compiled decode loop.
PROMPT_BUCKET = 16


def generate(module, variables, prompts: Sequence[Sequence[int]], max_new_tokens: int,
             temperature: float = 1.0, top_k: int = 0, seed: int = 0, *,
             max_len: int | None = None, use_cache: bool | None = None) -> list[list[int]]:
  """`max_new_tokens` sampled tokens after each prompt (token lists of any lengths).

  temperature <= 0 is greedy; top_k > 0 samples among the k most likely tokens only;
  `seed` makes the draw reproducible. `max_len` (default: module.max_len) is the longest
  context the model sees; when a prompt plus its new tokens exceed it, every step re-runs
  the last max_len tokens (a sliding window) instead of using the cache. use_cache: None
  = whenever the module can decode and the tokens fit; False = never.
  """
  prompts = _check_request(prompts, max_new_tokens)
  if not prompts or max_new_tokens == 0:
    return [[] for _ in prompts]
  if max_len is None:
    max_len = getattr(module, "max_len", None)
  variables = {k: v for k, v in variables.items() if k != "cache"}
  longest = max(len(p) for p in prompts)
  fits = not max_len or longest + max_new_tokens <= max_len
  if use_cache is not False and getattr(module, "supports_decode", False) and fits:
    return _generate_cached(module, variables, prompts, max_new_tokens, temperature, top_k, seed,
                            max_len)
  return _generate_windowed(_ModuleLogits(module), variables, prompts, max_new_tokens,
                            temperature, top_k, seed, max_len)


def sample(logits_fn: Callable, prompt: Sequence[int], max_new_tokens: int, *, temperature: float = 1.0,
           top_k: int = 0, seed: int = 0, max_len: int | None = None) -> list[int]:
  """Autoregressive sampling from a causal model, no cache; returns the new tokens.

  `logits_fn(tokens)` maps int32 (B, T) tokens to (B, T, V) logits in which
  position t depends on tokens[:t + 1] only. Each step runs the model on a
  fixed-width window (the prompt plus the tokens so far, the last `max_len` of
  them when longer, zero-padded on the right) and reads the logits at the last
  real position, so one compilation serves every step (and every call with the
  same logits_fn, window width and top_k). The arguments are those of
  `generate`.
  """
  prompts = _check_request([prompt], max_new_tokens)
  return _generate_windowed(_FnLogits(logits_fn), None, prompts, max_new_tokens, temperature,
                            top_k, seed, max_len)[0]


def _check_request(prompts, max_new_tokens: int) -> list[list[int]]:
  prompts = [[int(t) for t in p] for p in prompts]
  if any(not p for p in prompts):
    raise UserError("empty prompt: give at least one character of text to continue")
  if max_new_tokens < 0:
    raise UserError(f"--max_new_tokens={max_new_tokens} must be >= 0")
  return prompts


# -------------------------------------------------------------- choosing tokens

def _row_keys(key, rows: int):
  return jax.vmap(lambda r: jax.random.fold_in(key, r))(jnp.arange(rows))


def _pick(logits, row_keys, step, temperature, top_k: int):
  """The next token of each row from its (B, V) logits (f32): argmax when temperature <= 0,
  else a draw from softmax(logits / temperature), restricted to the top_k when top_k > 0.
  (Greediness is a value, not a branch, so greedy and sampled calls share a compilation.)"""
  scaled = logits / jnp.maximum(temperature, 1e-6)
  if 0 < top_k < logits.shape[-1]:
    kth = jax.lax.top_k(scaled, top_k)[0][:, -1:]
    scaled = jnp.where(scaled < kth, -jnp.inf, scaled)
  keys = jax.vmap(lambda k: jax.random.fold_in(k, step))(row_keys)
  sampled = jax.vmap(jax.random.categorical)(keys, scaled)
  return jnp.where(temperature > 0, sampled, jnp.argmax(logits, axis=-1)).astype(jnp.int32)


# -------------------------------------------------------------- with a key/value cache

def _generate_cached(module, variables, prompts, max_new_tokens, temperature, top_k, seed, max_len):
  longest = max(len(p) for p in prompts)
  width = -(-longest // PROMPT_BUCKET) * PROMPT_BUCKET
  if max_len:
    width = max(longest, min(width, max_len - max_new_tokens))
  tokens = np.zeros((len(prompts), width), np.int32)
  positions = np.full((len(prompts), width), -1, np.int32)  # negative: padding, never attended to
  for r, p in enumerate(prompts):
    tokens[r, width - len(p):] = p
    positions[r, width - len(p):] = np.arange(len(p))
  out = _decode_loop(module, variables, tokens, positions, jax.random.PRNGKey(seed),
                     jnp.float32(temperature), max_new_tokens=max_new_tokens, top_k=int(top_k))
  return np.asarray(out).tolist()


@functools.partial(jax.jit, static_argnames=("module", "max_new_tokens", "top_k"))
def _decode_loop(module, variables, tokens, positions, key, temperature, *, max_new_tokens: int,
                 top_k: int):
  """(B, max_new_tokens) tokens: the prompts through the model in one call, then one
  token per step of a scan, each step reading and extending the cache."""
  batch, width = tokens.shape

  def run(cache, tokens, positions):
    logits, state = module.apply({**variables, "cache": cache}, tokens, decode=True,
                                 positions=positions, mutable=["cache"])
    return state["cache"], logits[:, -1].astype(jnp.float32)

  row_keys = _row_keys(key, batch)
  cache, logits = run(module.init_cache(batch, width + max_new_tokens), tokens, positions)
  first = _pick(logits, row_keys, 0, temperature, top_k)

  def step(carry, i):
    cache, token, position = carry
    cache, logits = run(cache, token[:, None], position[:, None])
    token = _pick(logits, row_keys, i, temperature, top_k)
    return (cache, token, position + 1), token

  _, rest = jax.lax.scan(step, (cache, first, positions[:, -1] + 1),
                         jnp.arange(1, max_new_tokens))
  return jnp.concatenate([first[:, None], rest.T], axis=1)


# -------------------------------------------------------------- re-running the window

@dataclasses.dataclass(frozen=True)
class _ModuleLogits:
  """logits(variables, tokens) of a Flax module; hashable, so a static jit argument."""
  module: Any

  def __call__(self, variables, tokens):
    return self.module.apply(variables, tokens)


@dataclasses.dataclass(frozen=True)
class _FnLogits:
  """logits(_, tokens) of a function of the tokens alone; hashable by the function."""
  fn: Callable

  def __call__(self, variables, tokens):
    del variables
    return self.fn(tokens)


def _generate_windowed(logits, variables, prompts, max_new_tokens, temperature, top_k, seed, max_len):
  rows = [list(p) for p in prompts]
  width = max(len(p) for p in rows) + max_new_tokens
  if max_len:
    width = min(width, int(max_len))
  key = jax.random.PRNGKey(seed)
  for i in range(max_new_tokens):
    window = np.zeros((len(rows), width), np.int32)
    lengths = np.zeros((len(rows),), np.int32)
    for r, row in enumerate(rows):
      context = row[-width:]
      window[r, :len(context)] = context
      lengths[r] = len(context)
    tokens = _window_step(logits, variables, window, lengths, key, np.int32(i), np.float32(temperature),
                          top_k=int(top_k))
    for row, token in zip(rows, np.asarray(tokens).tolist()):
      row.append(token)
  return [row[len(p):] for row, p in zip(rows, prompts)]


@functools.partial(jax.jit, static_argnames=("logits", "top_k"))
def _window_step(logits, variables, window, lengths, key, step, temperature, *, top_k: int):
  """The next token of each row: the logits of the window at the row's last real position."""
  out = logits(variables, window)
  last = jnp.take_along_axis(out, (lengths - 1)[:, None, None], axis=1)[:, 0].astype(jnp.float32)
  return _pick(last, _row_keys(key, window.shape[0]), step, temperature, top_k)


class ByteCodec:
  """UTF-8 bytes as tokens 0..255 (the default for byte-level language models)."""

  def encode(self, text: str) -> list[int]:
    return list(text.encode("utf-8"))

  def decode(self, tokens: Sequence[int]) -> str:
    return bytes(int(t) % 256 for t in tokens).decode("utf-8", errors="replace")
