import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from lepton_jax import registry
from lepton_jax.data.info import DatasetInfo
from lepton_jax.errors import UserError
from lepton_jax.models.llama import Llama
from lepton_jax.models.transformer_lm import SHARDING_RULES, TransformerLM, rotary
from lepton_jax.parallel import mesh as mesh_lib
from lepton_jax.parallel import sharding

# Functional tests use these configs; each model's variables are initialised once per
# module and shared (see conftest on init compile time).
TINY = dict(vocab_size=256, width=32, depth=2, num_heads=2, mlp_dim=64, max_len=16)
TINY_LLAMA = dict(vocab_size=256, width=32, depth=2, num_heads=4, num_kv_heads=2, mlp_dim=64, max_len=16)
FAST = {"xla_backend_optimization_level": 0}  # tiny programs: compile time is what counts


def jit(fn, **kwargs):
  return jax.jit(fn, compiler_options=FAST, **kwargs)


def tokens(shape, seed=0):
  return jnp.asarray(np.random.default_rng(seed).integers(0, 256, size=shape), jnp.int32)


@pytest.fixture(scope="module")
def learned_vars(init_vars):
  return init_vars(TransformerLM(**TINY), jnp.zeros((1, TINY["max_len"]), jnp.int32))


@pytest.fixture(scope="module")
def llama_vars(init_vars):
  return init_vars(Llama(**TINY_LLAMA), jnp.zeros((1, TINY["max_len"]), jnp.int32))


def unstacked(variables, depth):
  """The variables of a scanned model laid out for scan_layers=False."""
  scanned = variables["params"]
  params = {k: v for k, v in scanned.items() if k != "blocks"}
  for i in range(depth):
    params[f"block{i}"] = jax.tree.map(lambda a: a[i], scanned["blocks"])
  return {"params": params}


def loss_fn(model, x, train=True):
  def fn(params):
    logits = model.apply({"params": params}, x[:, :-1], train=train)
    return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), x[:, 1:]).mean()
  return fn


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
  # Scanning lays the same parameters out differently, never adds any.
  assert param_count(TransformerLM(scan_layers=False), jnp.zeros((1, 8), jnp.int32)) == 3_290_624


def test_parameter_layout_scanned_and_not():
  x = jnp.zeros((1, 8), jnp.int32)
  shapes = lambda model: jax.eval_shape(lambda: model.init(jax.random.key(0), x))["params"]  # noqa: E731
  scanned, unscanned = shapes(TransformerLM(**TINY)), shapes(TransformerLM(**TINY, scan_layers=False))
  # (depth, width, heads, head_dim)
  assert scanned["blocks"]["attn"]["query"]["kernel"].shape == (2, 32, 2, 16)
  assert scanned["blocks"]["mlp"]["fc1"]["kernel"].shape == (2, 32, 64)
  assert set(unscanned) == {"token_embed", "pos_embed", "block0", "block1", "ln_final"}
  assert unscanned["block1"]["attn"]["query"]["kernel"].shape == (32, 2, 16)
  assert "lm_head" not in scanned
  untied = shapes(TransformerLM(**TINY, tie_embeddings=False))
  assert untied["lm_head"]["kernel"].shape == (32, 256)


@pytest.mark.parametrize("which", ["transformer_lm", "llama"])
def test_causal_masking_prefixes_and_positions(which, learned_vars, llama_vars):
  model, variables = ((TransformerLM(**TINY), learned_vars) if which == "transformer_lm"
                      else (Llama(**TINY_LLAMA), llama_vars))
  x = tokens((2, 16))
  k = 9
  changed = x.at[:, k].set((x[:, k] + 1) % 256)
  # Without position information a causal model cannot tell "a b b" from
  # "b a b" at the last position (same multiset of visible tokens).
  swapped = jnp.asarray([[7, 9, 9], [9, 7, 9]], jnp.int32)
  run = lambda v, x, y, z: (model.apply(v, x), model.apply(v, y), model.apply(v, x[:, :7]),  # noqa: E731
                            model.apply(v, z))
  a, b, prefix, orders = jit(run)(variables, x, changed, swapped)
  assert a.shape == (2, 16, 256) and a.dtype == jnp.float32
  np.testing.assert_allclose(a[:, :k], b[:, :k], atol=1e-5)  # the past cannot see the future
  assert not np.allclose(a[:, k:], b[:, k:], atol=1e-3)
  # A prefix (of odd length) gives the same logits as the full sequence at its positions,
  # which is what autoregressive sampling relies on.
  np.testing.assert_allclose(prefix, a[:, :7], atol=1e-5)
  assert not np.allclose(orders[0, -1], orders[1, -1], atol=1e-4)


def test_left_padding_marked_by_negative_positions_changes_nothing(learned_vars, llama_vars):
  x = tokens((2, 7), seed=3)
  padded = jnp.concatenate([jnp.full((2, 3), 5, jnp.int32), x], axis=1)
  positions = jnp.asarray([[-1, -1, -1] + list(range(7))] * 2, jnp.int32)
  for model, variables in ((TransformerLM(**TINY), learned_vars), (Llama(**TINY_LLAMA), llama_vars)):
    plain, with_pads = jit(lambda v, x, p: (model.apply(v, x), model.apply(v, p, positions=positions)))(
        variables, x, padded)
    np.testing.assert_allclose(with_pads[:, 3:], plain, atol=1e-5)


@pytest.mark.parametrize("kwargs, message", [
    (dict(positions="absolute"), "positions must be one of 'learned', 'rotary', not 'absolute'"),
    (dict(norm="batchnorm"), "norm must be one of"),
    (dict(mlp="relu"), "mlp must be one of"),
    (dict(remat="some"), "remat must be one of 'none', 'dots', 'full'"),
    (dict(attention="flash"), "attention must be one of"),
    (dict(width=30), "width 30 is not divisible by num_heads 4"),
    (dict(num_kv_heads=3), "num_heads 4 is not a multiple of num_kv_heads 3"),
    (dict(num_heads=8, width=8), "rotary positions need an even head dimension"),
    (dict(attention="cudnn"), "attention='cudnn' cannot run"),
])
def test_invalid_fields_are_user_errors(kwargs, message):
  model = Llama(**{**dict(width=32, num_heads=4, num_kv_heads=0), **kwargs})
  with pytest.raises(UserError, match=message.replace("(", r"\(")):
    jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 8), jnp.int32)))


def test_learned_positions_reject_sequences_longer_than_max_len():
  model = TransformerLM(**TINY)
  with pytest.raises(UserError, match="sequence length 17 exceeds max_len 16"):
    jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 17), jnp.int32)))
  with pytest.raises(UserError, match="expects int token ids of shape"):
    jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 4, 2), jnp.int32)))


def test_rotary_is_a_relative_rotation():
  rng = np.random.default_rng(0)
  q = jnp.broadcast_to(jnp.asarray(rng.normal(size=(1, 1, 2, 8)), jnp.float32), (1, 12, 2, 8))
  k = jnp.broadcast_to(jnp.asarray(rng.normal(size=(1, 1, 2, 8)), jnp.float32), (1, 12, 2, 8))
  rq, rk = rotary(q), rotary(k)
  np.testing.assert_allclose(jnp.linalg.norm(rq, axis=-1), jnp.linalg.norm(q, axis=-1), rtol=1e-5)
  dot = lambda m, n: jnp.sum(rq[0, m] * rk[0, n], axis=-1)  # noqa: E731
  np.testing.assert_allclose(dot(3, 1), dot(10, 8), rtol=1e-4, atol=1e-5)
  assert not np.allclose(dot(3, 1), dot(3, 2), atol=1e-4)
  # Explicit positions: the same rotation as the implicit 0..T-1, shifted rows shifted.
  np.testing.assert_allclose(rotary(q, jnp.arange(12)[None]), rq, atol=1e-6)
  np.testing.assert_allclose(rotary(q, jnp.arange(2, 14)[None])[:, :10], rq[:, 2:], atol=1e-5)


def test_dropout_train_vs_eval(check_dropout, learned_vars):
  model = TransformerLM(**TINY, dropout_rate=0.5, attention_dropout_rate=0.5)
  check_dropout(model, jnp.arange(32, dtype=jnp.int32).reshape(2, 16), learned_vars)


def test_bfloat16_compute_returns_logits_in_bfloat16(learned_vars):
  x = jnp.arange(32, dtype=jnp.int32).reshape(2, 16)
  bf16 = TransformerLM(**TINY, dtype=jnp.bfloat16)
  out, ref = jit(lambda v, x: (bf16.apply(v, x), TransformerLM(**TINY).apply(v, x)))(learned_vars, x)
  # The compute dtype, not an f32 copy of (B, T, vocab): the loss upcasts.
  assert out.dtype == jnp.bfloat16 and out.shape == (2, 16, 256)
  np.testing.assert_allclose(out.astype(jnp.float32), ref, atol=0.1)


def test_scanned_and_unscanned_models_give_the_same_loss(learned_vars, llama_vars):
  x = tokens((2, 9), seed=5)
  for cls, kwargs, variables in ((TransformerLM, TINY, learned_vars), (Llama, TINY_LLAMA, llama_vars)):
    scanned, unscanned = variables["params"], unstacked(variables, kwargs["depth"])["params"]
    a, b = jit(lambda s, u: (loss_fn(cls(**kwargs), x)(s), loss_fn(cls(**kwargs, scan_layers=False), x)(u)))(
        scanned, unscanned)
    np.testing.assert_allclose(a, b, rtol=1e-6)


def test_scanned_program_does_not_grow_with_depth():
  # What XLA compiles is one block in a loop, so compile time stays flat with depth.
  x = jnp.zeros((2, 9), jnp.int32)

  def program_size(**kwargs):
    model = TransformerLM(**{**TINY, **kwargs})
    params = jax.eval_shape(lambda: model.init(jax.random.key(0), x))["params"]
    return len(jax.jit(jax.grad(loss_fn(model, x))).lower(params).as_text())

  shallow, deep = program_size(depth=2), program_size(depth=6)
  assert deep < 1.1 * shallow
  assert program_size(depth=6, scan_layers=False) > 2 * deep


def test_remat_changes_neither_loss_nor_gradients(llama_vars):
  x = tokens((2, 9), seed=6)
  grads = {remat: jax.value_and_grad(loss_fn(Llama(**TINY_LLAMA, remat=remat), x))
           for remat in ("none", "dots", "full")}
  out = jit(lambda p: {name: g(p) for name, g in grads.items()})(llama_vars["params"])
  for remat in ("dots", "full"):
    np.testing.assert_allclose(out[remat][0], out["none"][0], rtol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
                 out[remat][1], out["none"][1])


@pytest.mark.parametrize("which", ["transformer_lm", "llama", "llama unscanned"])
def test_decoding_with_the_cache_matches_the_full_forward(which, learned_vars, llama_vars):
  model, variables = {
      "transformer_lm": (TransformerLM(**TINY), learned_vars),
      "llama": (Llama(**TINY_LLAMA), llama_vars),
      "llama unscanned": (Llama(**TINY_LLAMA, scan_layers=False), unstacked(llama_vars, 2)),
  }[which]
  x = tokens((2, 11), seed=7)

  def decode(variables, x):
    cache = model.init_cache(2, 13)  # longer than needed: unwritten slots stay invisible
    step = lambda cache, x, pos: model.apply({**variables, "cache": cache}, x, decode=True,  # noqa: E731
                                             positions=pos, mutable=["cache"])
    prefill, state = step(cache, x[:, :6], jnp.broadcast_to(jnp.arange(6), (2, 6)))

    def one_token(cache, t):  # then one token at a time
      out, state = step(cache, jax.lax.dynamic_slice_in_dim(x, t, 1, axis=1), jnp.full((2, 1), t))
      return state["cache"], out[:, 0]

    cache, steps = jax.lax.scan(one_token, state["cache"], jnp.arange(6, 11))
    return jnp.concatenate([prefill, steps.transpose(1, 0, 2)], axis=1), model.apply(variables, x), cache

  cached, full, cache = jit(decode)(variables, x)
  np.testing.assert_allclose(cached, full, atol=1e-5)
  # Every layer's keys and values, stacked; then each slot's position and the next free slot.
  assert cache["key"].shape == cache["value"].shape == (2, 2, 13, model.kv_heads, 32 // model.num_heads)
  np.testing.assert_array_equal(cache["positions"][:, :11], np.broadcast_to(np.arange(11), (2, 11)))
  assert int(cache["index"]) == 11


def test_tiny_llama_overfits_a_fixed_batch(fit, llama_vars):
  # (transformer_lm learns end to end in tests/experiments/test_language_model.py.)
  # 8 random byte sequences with distinct first bytes, so every next byte is
  # determined by its prefix and can be memorised exactly.
  rng = np.random.default_rng(1)
  seqs = rng.integers(0, 256, size=(8, 17))
  seqs[:, 0] = rng.permutation(256)[:8]
  seqs = jnp.asarray(seqs, jnp.int32)
  _, eval_loss, accuracy = fit(Llama(**TINY_LLAMA), seqs[:, :-1], seqs[:, 1:], steps=100,
                               variables=llama_vars)
  assert accuracy == 1.0  # all 128 next-byte predictions
  assert eval_loss < 0.05


def test_sharding_rules_cover_both_layouts_and_llama():
  mesh = mesh_lib.make_mesh({"data": 2, "fsdp": 2, "model": 2}, jax.devices()[:8])
  x = jnp.zeros((1, 8), jnp.int32)
  for model in (Llama(**TINY_LLAMA), TransformerLM(**TINY, scan_layers=False, tie_embeddings=False)):
    abstract = jax.eval_shape(lambda: model.init(jax.random.key(0), x))
    specs = jax.tree.map(lambda s: s.spec, sharding.state_shardings(abstract, mesh, SHARDING_RULES))
    params = specs["params"]
    if "blocks" in params:  # Llama: no biases, swiglu, untied
      assert params["blocks"]["attn"]["key"]["kernel"] == jax.P(None, "fsdp", "model", None)
      assert params["blocks"]["mlp"]["gate"]["kernel"] == jax.P(None, "fsdp", "model")
      assert params["blocks"]["mlp"]["down"]["kernel"] == jax.P(None, "model", "fsdp")
    else:
      assert params["block1"]["attn"]["query"]["kernel"] == jax.P("fsdp", "model", None)
      assert params["block1"]["attn"]["query"]["bias"] == jax.P("model", None)
      assert params["block1"]["attn"]["out"]["bias"] == jax.P()
      assert params["block0"]["mlp"]["fc1"]["bias"] == jax.P("model")
      assert params["block0"]["ln2"]["bias"] == jax.P()
    assert params["lm_head"]["kernel"] == jax.P("fsdp", "model")


def test_sharded_loss_equals_the_one_device_loss(learned_vars):
  model, params = TransformerLM(**TINY), learned_vars["params"]
  x = tokens((4, 9), seed=8)
  mesh = mesh_lib.make_mesh({"data": 2, "fsdp": 2, "model": 2}, jax.devices()[:8])
  abstract = {"params": jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), params)}
  shardings = sharding.state_shardings(abstract, mesh, SHARDING_RULES, strict=True)["params"]
  blocks = shardings["blocks"]
  assert blocks["attn"]["query"]["kernel"].spec == jax.P(None, "fsdp", "model", None)
  assert blocks["attn"]["out"]["kernel"].spec == jax.P(None, "model", None, "fsdp")
  assert blocks["mlp"]["fc2"]["kernel"].spec == jax.P(None, "model", "fsdp")
  assert blocks["ln1"]["scale"].spec == jax.P()
  assert shardings["token_embed"]["embedding"].spec == jax.P("model", "fsdp")
  data = jax.sharding.NamedSharding(mesh, jax.P(mesh_lib.BATCH_AXES))
  grad_fn = lambda p, x: jax.value_and_grad(loss_fn(model, x, train=False))(p)  # noqa: E731
  sharded = jit(grad_fn, in_shardings=(shardings, data),
                out_shardings=(mesh_lib.replicated(mesh), shardings))
  (loss, grads), (loss1, grads1) = sharded(params, x), jit(grad_fn)(params, x)
  np.testing.assert_allclose(loss, loss1, rtol=1e-5)
  assert grads["blocks"]["mlp"]["fc1"]["kernel"].sharding.spec == jax.P(None, "fsdp", "model")
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), grads, grads1)


def test_language_model_loss_upcasts_bfloat16_logits():
  info = DatasetInfo(name="text_files", input_key="tokens", input_shape=(5,), input_dtype=np.int32,
                     num_classes=256, label_key="targets", split_sizes={})
  experiment = lambda smoothing: registry.get("experiment", "language_model")(  # noqa: E731
      ml_collections.ConfigDict({"loss": {"name": "softmax_cross_entropy", "label_smoothing": smoothing},
                                 "metrics": ("loss",)}), info)
  plain, smooth = experiment(0.0), experiment(0.1)
  rng = np.random.default_rng(0)
  logits = jnp.asarray(rng.normal(size=(3, 5, 256)) * 4, jnp.bfloat16)
  targets = jnp.asarray(rng.integers(0, 256, (3, 5)), jnp.int32)
  batch = {"tokens": targets, "targets": targets}

  def run(logits):
    f32 = logits.astype(jnp.float32)
    exact = optax.softmax_cross_entropy_with_integer_labels(f32, targets)
    smoothed = registry.get("loss", "softmax_cross_entropy")(f32, targets, label_smoothing=0.1)
    in_bf16 = optax.softmax_cross_entropy_with_integer_labels(logits, targets).astype(jnp.float32)
    stats = plain.eval_statistics(logits, batch, jnp.ones((3,), bool))
    return (exact, smoothed, in_bf16, plain.loss(logits, batch), smooth.loss(logits, batch),
            stats["loss_sum"], plain.probabilities(logits))

  exact, smoothed, in_bf16, loss, smooth_loss, loss_sum, probs = jit(run)(logits)
  assert not np.allclose(in_bf16, exact, rtol=1e-4)  # the error an upcast avoids
  assert loss.dtype == jnp.float32 and probs.dtype == jnp.float32
  np.testing.assert_allclose(loss, exact.mean(1), rtol=1e-6)
  np.testing.assert_allclose(smooth_loss, smoothed.mean(1), rtol=1e-6)  # the registered loss's math
  np.testing.assert_allclose(loss_sum, exact.sum(), rtol=1e-6)
  np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-6)
