import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lepton_jax.models.rnn import GRU, LSTM, RecurrentNet

# Two tiny configs, each initialised once per module (see conftest on compile
# time): an LSTM classifier of padded token sequences and a GRU byte LM.
CLS = dict(vocab_size=10, num_classes=4, hidden_size=16, pad_id=0)
LM = dict(vocab_size=256, head="lm", hidden_size=32)


@pytest.fixture(scope="module")
def cls_vars(init_vars):
  return init_vars(LSTM(**CLS), jnp.ones((1, 6), jnp.int32))


@pytest.fixture(scope="module")
def lm_vars(init_vars):
  return init_vars(GRU(**LM), jnp.ones((1, 8), jnp.int32))


def shapes(model, x):
  return jax.eval_shape(lambda: model.init(jax.random.key(0), x))


@pytest.mark.parametrize("cls, kwargs, expected", [
    (LSTM, dict(head="lm"), 197_376),
    (LSTM, dict(num_classes=2), 164_610),
    (GRU, dict(head="lm"), 164_608),
    (GRU, dict(num_classes=2), 131_842),
])
def test_parameter_count_matches_docstring(param_count, cls, kwargs, expected):
  assert param_count(cls(vocab_size=256, **kwargs), jnp.zeros((1, 8), jnp.int32)) == expected
  assert f"{expected:,}" in cls.__doc__


def test_both_names_share_the_implementation():
  assert issubclass(LSTM, RecurrentNet) and issubclass(GRU, RecurrentNet)
  assert LSTM(num_classes=2).cell == "lstm" and GRU(num_classes=2).cell == "gru"
  lstm = shapes(LSTM(num_classes=2, hidden_size=8, num_layers=2), jnp.zeros((1, 5, 3)))["params"]
  gru = shapes(GRU(num_classes=2, hidden_size=8, num_layers=2), jnp.zeros((1, 5, 3)))["params"]
  # The cells own the parameters (nn.RNN shares their scope), one per layer.
  assert set(lstm) == {"input_proj", "lstm0", "lstm1", "head"}
  assert set(gru) == {"input_proj", "gru0", "gru1", "head"}


@pytest.mark.parametrize("cls", [LSTM, GRU])
def test_output_shapes(cls):
  tokens = jnp.zeros((3, 7), jnp.int32)
  lm = cls(vocab_size=20, head="lm", hidden_size=8)
  assert jax.eval_shape(lm.apply, shapes(lm, tokens), tokens).shape == (3, 7, 20)
  for x in (tokens, jnp.zeros((3, 7, 5)), jnp.zeros((3, 7))):  # tokens, (B,T,F), (B,T) floats
    model = cls(num_classes=4, vocab_size=20, hidden_size=8, num_layers=2)
    out = jax.eval_shape(model.apply, shapes(model, x), x)
    assert out.shape == (3, 4) and out.dtype == jnp.float32


def test_missing_sizes_are_reported():
  with pytest.raises(ValueError, match="needs num_classes"):
    shapes(GRU(vocab_size=4), jnp.zeros((1, 4), jnp.int32))


@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_classify_reads_only_valid_steps(pooling, cls_vars):
  # Right padding with pad_id=0 must not change the result: "last" reads the
  # output at the last non-pad token, "mean" averages over non-pad tokens.
  model = LSTM(**CLS, pooling=pooling)
  padded = jnp.asarray([[3, 4, 5, 0, 0, 0], [6, 7, 8, 9, 1, 2]], jnp.int32)
  outputs = jax.jit(lambda v: (model.apply(v, padded), model.apply(v, padded[:1, :3]),
                               LSTM(**{**CLS, "pad_id": None}, pooling=pooling).apply(v, padded)))
  out, short, unmasked = outputs(cls_vars)
  np.testing.assert_allclose(out[0], short[0], atol=1e-5)
  np.testing.assert_allclose(out[1], unmasked[1], atol=1e-5)  # an unpadded row is unaffected
  assert not np.allclose(out[0], unmasked[0], atol=1e-4)


def test_dropout_train_vs_eval(check_dropout, lm_vars):
  model = GRU(**LM, dropout_rate=0.5)
  check_dropout(model, jnp.arange(16, dtype=jnp.int32).reshape(2, 8), lm_vars)


def test_bfloat16_compute_returns_float32(lm_vars, run):
  x = jnp.arange(16, dtype=jnp.int32).reshape(2, 8)
  out = run(GRU(**LM, dtype=jnp.bfloat16), lm_vars, x)
  assert out.dtype == jnp.float32 and out.shape == (2, 8, 256)
  np.testing.assert_allclose(out, run(GRU(**LM), lm_vars, x), atol=0.1)


def test_bfloat16_params_initialise():
  # The recurrent kernels' orthogonal init needs a QR, which has no bf16 kernel.
  model = LSTM(**CLS, dtype=jnp.bfloat16, param_dtype=jnp.bfloat16)
  params = shapes(model, jnp.ones((1, 6), jnp.int32))["params"]
  assert {p.dtype for p in jax.tree.leaves(params)} == {jnp.dtype(jnp.bfloat16)}


def test_lstm_classifier_overfits_a_fixed_batch(fit, cls_vars):
  # 8 padded token sequences with random labels among 4 classes.
  rng = np.random.default_rng(0)
  x = rng.integers(1, 10, size=(8, 6))
  for i, length in enumerate([6, 5, 4, 3, 6, 5, 4, 3]):
    x[i, length:] = 0
  y = jnp.asarray(rng.permutation(np.arange(8) % 4), jnp.int32)
  _, eval_loss, accuracy = fit(LSTM(**CLS), jnp.asarray(x, jnp.int32), y, steps=100, variables=cls_vars)
  assert accuracy == 1.0
  assert eval_loss < 0.05


def test_gru_lm_overfits_a_fixed_batch(fit, lm_vars):
  # 8 random byte sequences with distinct first bytes: every next byte is
  # determined by its prefix and can be memorised exactly.
  rng = np.random.default_rng(1)
  seqs = rng.integers(0, 256, size=(8, 9))
  seqs[:, 0] = rng.permutation(256)[:8]
  seqs = jnp.asarray(seqs, jnp.int32)
  _, eval_loss, accuracy = fit(GRU(**LM), seqs[:, :-1], seqs[:, 1:], steps=100, variables=lm_vars)
  assert accuracy == 1.0  # all 64 next-byte predictions
  assert eval_loss < 0.05
