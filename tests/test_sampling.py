"""sampling.generate: the key/value-cache sampler gives the tokens of the re-run-the-window one."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lepton_jax import sampling
from lepton_jax.errors import UserError
from lepton_jax.models.llama import Llama
from lepton_jax.models.transformer_lm import TransformerLM

MODELS = {
    "transformer_lm": TransformerLM(vocab_size=256, width=32, depth=2, num_heads=2, mlp_dim=64, max_len=32),
    "llama": Llama(vocab_size=256, width=32, depth=2, num_heads=4, num_kv_heads=2, mlp_dim=64, max_len=32),
}
# Ragged: the cache path left-pads them to one length.
PROMPTS = [[1, 2, 3], [5, 6, 7, 8, 9, 10, 11], [42]]
FAST = {"xla_backend_optimization_level": 0}  # tiny programs: compile time is what counts


@pytest.fixture(scope="module")
def variables():
  x = jnp.zeros((1, 8), jnp.int32)
  init = lambda: {name: model.init(jax.random.key(1), x) for name, model in MODELS.items()}  # noqa: E731
  return jax.jit(init, compiler_options=FAST)()


@pytest.fixture(scope="module")
def cumulative():
  model = Cumulative()
  return model, jax.jit(model.init, compiler_options=FAST)(jax.random.key(0), jnp.zeros((1, 4), jnp.int32))


def logits_of(model, params, rows):
  """(B, T, V) logits of the rows (lists of tokens) right-padded to one length: a causal
  model's logits at a row's real positions do not depend on the padding."""
  width = max(len(r) for r in rows)
  tokens = np.zeros((len(rows), width), np.int32)
  for i, r in enumerate(rows):
    tokens[i, :len(r)] = r
  return np.asarray(jax.jit(model.apply, compiler_options=FAST)(params, tokens))


class Cumulative(nn.Module):
  """A causal model without a decode mode: logits of the running mean of the embeddings."""

  vocab_size: int = 11

  @nn.compact
  def __call__(self, tokens):
    h = nn.Embed(self.vocab_size, 8)(tokens)
    h = jnp.cumsum(h, axis=1) / jnp.arange(1, tokens.shape[1] + 1)[None, :, None]
    return nn.Dense(self.vocab_size)(jnp.tanh(nn.Dense(8)(h)) + h)


@pytest.mark.parametrize("name", list(MODELS))
def test_cache_gives_the_tokens_of_the_window_path(name, variables, monkeypatch):
  model, params = MODELS[name], variables[name]
  expected = {temperature: sampling.generate(model, params, PROMPTS, 10, temperature, seed=3, use_cache=False)
              for temperature in (0.0, 1.0)}

  def refuse(*args):
    raise AssertionError("generate re-ran the window although the model can decode")

  monkeypatch.setattr(sampling, "_generate_windowed", refuse)
  for temperature in (0.0, 1.0):  # greedy, then seeded draws with the same per-step keys
    got = sampling.generate(model, params, PROMPTS, 10, temperature, seed=3)
    assert got == expected[temperature], temperature
    assert [len(row) for row in got] == [10, 10, 10]
  assert expected[0.0] != expected[1.0]


def test_contexts_longer_than_max_len_slide_the_window(variables, monkeypatch):
  model, params = MODELS["transformer_lm"], variables["transformer_lm"]
  prompt = list(range(100, 125))  # 25 tokens + 12 new > max_len 32

  def refuse(*args):
    raise AssertionError("the cache cannot hold more than max_len positions")

  monkeypatch.setattr(sampling, "_generate_cached", refuse)
  got = sampling.generate(model, params, [prompt, [7]], 12, temperature=0)
  assert [len(row) for row in got] == [12, 12]
  monkeypatch.undo()
  assert got == sampling.generate(model, params, [prompt, [7]], 12, temperature=0, use_cache=False)


def test_models_without_a_decode_mode_rerun_the_window(cumulative):
  model, params = cumulative
  prompts = [[3, 1, 4, 1, 5], [9]]
  got = sampling.generate(model, params, prompts, 4, temperature=0)
  # Greedy: each new token is the argmax of the logits one position before it.
  rows = [p + g for p, g in zip(prompts, got)]
  logits = logits_of(model, params, rows)
  for i, (p, row) in enumerate(zip(prompts, rows)):
    assert row[len(p):] == [int(np.argmax(logits[i, t - 1])) for t in range(len(p), len(row))]


def test_seeds_temperature_and_top_k(cumulative):
  model, params = cumulative
  draw = lambda **kw: sampling.generate(model, params, [[1, 2], [3]], 20, **kw)  # noqa: E731
  a = draw(temperature=1.0, seed=1)
  assert a == draw(temperature=1.0, seed=1)  # reproducible
  assert a != draw(temperature=1.0, seed=2)
  assert a[0] != a[1]  # each row has keys of its own
  # top_k=1 keeps only the most likely token: greedy at any temperature.
  assert draw(temperature=3.0, top_k=1, seed=4) == draw(temperature=0.0)
  # top_k=2: every token is one of the two most likely at its step.
  new = draw(temperature=5.0, top_k=2, seed=3)[0]
  logits = logits_of(model, params, [[1, 2] + new])[0]
  for t, token in enumerate(new):
    assert token in np.argsort(-logits[1 + t])[:2]


def test_requests_checked(cumulative):
  model, params = cumulative
  assert sampling.generate(model, params, [[1], [2, 3]], 0) == [[], []]
  assert sampling.generate(model, params, [], 5) == []
  with pytest.raises(UserError, match="empty prompt"):
    sampling.generate(model, params, [[1], []], 3)
  with pytest.raises(UserError, match="must be >= 0"):
    sampling.generate(model, params, [[1]], -1)
