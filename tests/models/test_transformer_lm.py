import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lepton_jax.models.transformer_lm import TransformerLM, rotary

# Functional tests use this config. The learned-position variables are shared
# (see conftest on init compile time); the rotary model has the same
# parameters minus the position table.
TINY = dict(vocab_size=256, width=32, depth=1, num_heads=2, mlp_dim=64, max_len=16)


@pytest.fixture(scope="module")
def learned_vars(init_vars):
  return init_vars(TransformerLM(**TINY), jnp.zeros((1, TINY["max_len"]), jnp.int32))


def variables_for(positions, learned_vars):
  if positions == "learned":
    return learned_vars
  return {"params": {k: v for k, v in learned_vars["params"].items() if k != "pos_embed"}}


@pytest.mark.parametrize("kwargs, expected", [
    (dict(), 3_290_624),
    (dict(positions="rotary"), 3_225_088),
    (dict(tie_embeddings=False), 3_356_160),
])
def test_parameter_count_matches_docstring(param_count, kwargs, expected):
  assert param_count(TransformerLM(**kwargs), jnp.zeros((1, 8), jnp.int32)) == expected
  assert f"{expected:,}" in TransformerLM.__doc__


def test_parameter_count_formula(param_count):
  v, w, d, m, l = 256, 256, 4, 1024, 256
  per_block = 4 * w * w + 4 * w + 2 * w * m + m + w + 4 * w
  assert param_count(TransformerLM(), jnp.zeros((1, 8), jnp.int32)) == v * w + l * w + 2 * w + d * per_block


def test_tied_and_untied_output_layer():
  x = jnp.zeros((1, 8), jnp.int32)
  tied = jax.eval_shape(lambda: TransformerLM(**TINY).init(jax.random.key(0), x))["params"]
  untied = jax.eval_shape(lambda: TransformerLM(**TINY, tie_embeddings=False).init(jax.random.key(0), x))
  assert "lm_head" not in tied
  assert untied["params"]["lm_head"]["kernel"].shape == (32, 256)


@pytest.mark.parametrize("positions", ["learned", "rotary"])
def test_causal_masking_and_prefixes(positions, learned_vars, run):
  model = TransformerLM(**TINY, positions=positions)
  variables = variables_for(positions, learned_vars)
  x = jnp.asarray(np.random.default_rng(0).integers(0, 256, size=(2, 16)), jnp.int32)
  k = 9
  changed = x.at[:, k].set((x[:, k] + 1) % 256)
  a, b = run(model, variables, x), run(model, variables, changed)
  assert a.shape == (2, 16, 256) and a.dtype == jnp.float32
  np.testing.assert_allclose(a[:, :k], b[:, :k], atol=1e-5)  # the past cannot see the future
  assert not np.allclose(a[:, k:], b[:, k:], atol=1e-3)
  # A prefix gives the same logits as the full sequence at its positions,
  # which is what autoregressive sampling relies on.
  np.testing.assert_allclose(run(model, variables, x[:, :5]), a[:, :5], atol=1e-5)


def test_positions_matter(learned_vars, run):
  # Without position information a causal model cannot tell "a b b" from
  # "b a b" at the last position (same multiset of visible tokens).
  x = jnp.asarray([[7, 9, 9], [9, 7, 9]], jnp.int32)
  for positions in ("learned", "rotary"):
    out = run(TransformerLM(**TINY, positions=positions), variables_for(positions, learned_vars), x)
    assert not np.allclose(out[0, -1], out[1, -1], atol=1e-4), positions


def test_learned_positions_reject_sequences_longer_than_max_len():
  model = TransformerLM(**TINY)
  with pytest.raises(ValueError, match="exceeds max_len"):
    jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 17), jnp.int32)))


def test_rotary_is_a_relative_rotation():
  rng = np.random.default_rng(0)
  q = jnp.broadcast_to(jnp.asarray(rng.normal(size=(1, 1, 2, 8)), jnp.float32), (1, 12, 2, 8))
  k = jnp.broadcast_to(jnp.asarray(rng.normal(size=(1, 1, 2, 8)), jnp.float32), (1, 12, 2, 8))
  rq, rk = rotary(q), rotary(k)
  np.testing.assert_allclose(jnp.linalg.norm(rq, axis=-1), jnp.linalg.norm(q, axis=-1), rtol=1e-5)
  dot = lambda m, n: jnp.sum(rq[0, m] * rk[0, n], axis=-1)  # noqa: E731
  np.testing.assert_allclose(dot(3, 1), dot(10, 8), rtol=1e-4, atol=1e-5)
  assert not np.allclose(dot(3, 1), dot(3, 2), atol=1e-4)


def test_dropout_train_vs_eval(check_dropout, learned_vars):
  model = TransformerLM(**TINY, dropout_rate=0.5, attention_dropout_rate=0.5)
  check_dropout(model, jnp.arange(32, dtype=jnp.int32).reshape(2, 16), learned_vars)


def test_bfloat16_compute_returns_float32(learned_vars, run):
  x = jnp.arange(32, dtype=jnp.int32).reshape(2, 16)
  out = run(TransformerLM(**TINY, dtype=jnp.bfloat16), learned_vars, x)
  assert out.dtype == jnp.float32 and out.shape == (2, 16, 256)
  ref = run(TransformerLM(**TINY), learned_vars, x)
  np.testing.assert_allclose(out, ref, atol=0.1)


@pytest.mark.parametrize("positions", ["learned", "rotary"])
def test_tiny_lm_overfits_a_fixed_batch(positions, fit, learned_vars):
  # 8 random byte sequences with distinct first bytes, so every next byte is
  # determined by its prefix and can be memorised exactly.
  rng = np.random.default_rng(1)
  seqs = rng.integers(0, 256, size=(8, 17))
  seqs[:, 0] = rng.permutation(256)[:8]
  seqs = jnp.asarray(seqs, jnp.int32)
  model = TransformerLM(**TINY, positions=positions)
  _, eval_loss, accuracy = fit(model, seqs[:, :-1], seqs[:, 1:], steps=100,
                               variables=variables_for(positions, learned_vars))
  assert accuracy == 1.0  # all 128 next-byte predictions
  assert eval_loss < 0.05
