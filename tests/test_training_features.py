"""Training features, one test each that fails if the feature is broken: gradient
accumulation, global-norm clipping, the weight-decay mask, parameter EMA used
for evaluation, dropout, label smoothing."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lepton_jax import modeling, optimizers, registry, steps, train_state
from lepton_jax.config_defaults import base_config
from lepton_jax.data import transforms
from lepton_jax.data.info import DatasetInfo

INFO = DatasetInfo(name="toy", input_key="features", input_shape=(6,),
                               input_dtype=np.float32, num_classes=3, split_sizes={"train": 64})


def make_config(**overrides):
  config = base_config()
  config.model.name = "mlp"
  config.model.hidden_sizes = (16,)
  config.model.dropout_rate = 0.0
  config.data.preprocess = ()
  config.optimizer.name = "sgd"
  config.optimizer.learning_rate = 0.5
  for key, value in overrides.items():
    node = config
    *parents, leaf = key.split(".")
    for p in parents:
      node = node[p]
    node[leaf] = value
  return config


def build(config, accumulation_steps=1):
  """(state, jitted train step, jitted eval step, model, experiment) for `config` on INFO."""
  experiment = registry.get("experiment", "classification")(config, INFO)
  model = modeling.build_model(config, experiment)
  tx, schedule = optimizers.build(config.optimizer, 100)
  identity = transforms.build(())
  example = jnp.zeros((1,) + INFO.input_shape, INFO.input_dtype)
  state = train_state.make_init_fn(model, tx, example, use_ema=config.ema_decay > 0)(
      jax.random.PRNGKey(config.seed))
  train_step = jax.jit(steps.make_train_step(model, experiment, tx, schedule, identity, identity,
                                             "features", accumulation_steps, config.ema_decay))
  eval_step = jax.jit(steps.make_eval_step(model, experiment, identity, "features"))
  return state, train_step, eval_step, model, experiment


def toy_batch(n, seed=0):
  rng = np.random.default_rng(seed)
  return {"features": jnp.asarray(rng.normal(size=(n, 6)), jnp.float32),
          "label": jnp.asarray(rng.integers(0, 3, n), jnp.int32)}


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_gradient_accumulation_equals_one_big_batch(optimizer):
  """k micro-batches of b rows give the update of one batch of k*b rows."""
  k, b = 4, 8
  batch = toy_batch(k * b)
  config = make_config(**{"optimizer.name": optimizer})
  state, big_step, _, _, _ = build(config, accumulation_steps=1)
  _, micro_step, _, _, _ = build(config, accumulation_steps=k)
  big, big_metrics = big_step(state, batch)
  micro, micro_metrics = micro_step(state, batch)
  for name in ("params", "opt_state"):
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=2e-5, atol=2e-6),
                 getattr(big, name), getattr(micro, name))
  np.testing.assert_allclose(big_metrics["loss"], micro_metrics["loss"], rtol=1e-5)
  np.testing.assert_allclose(big_metrics["grad_norm"], micro_metrics["grad_norm"], rtol=1e-5)
  # The update is not trivially zero: the params moved.
  moved = jax.tree.leaves(jax.tree.map(lambda x, y: float(jnp.abs(x - y).max()), big.params, state.params))
  assert max(moved) > 1e-3


def test_gradient_clipping_bounds_the_global_norm():
  config = make_config(**{"optimizer.learning_rate": 1.0, "optimizer.grad_clip_norm": 0.5})
  tx, _ = optimizers.build(config.optimizer, 10)
  params = {"a": jnp.ones((3, 4)), "b": jnp.ones((4,))}
  opt_state = tx.init(params)
  big = jax.tree.map(lambda p: 10.0 * p, params)
  updates, _ = tx.update(big, opt_state, params)
  assert float(optax.tree.norm(updates)) == pytest.approx(0.5, rel=1e-5)
  # Direction kept: the clipped update is the gradient scaled down.
  np.testing.assert_allclose(updates["a"] / updates["b"][0], big["a"] / big["b"][0], rtol=1e-6)
  small = jax.tree.map(lambda p: 0.01 * p, params)
  updates, _ = tx.update(small, opt_state, params)
  jax.tree.map(lambda u, g: np.testing.assert_allclose(u, -g, rtol=1e-6), updates, small)


@pytest.mark.parametrize("optimizer", ["adamw", "sgd", "momentum"])
def test_weight_decay_spares_biases_and_norm_scales(optimizer):
  """With zero gradients only kernels and embeddings shrink; biases and LayerNorm stay, also
  when scanned layers stack them into 2-D arrays."""
  model = registry.get("model", "transformer_lm")(vocab_size=16, width=8, depth=2, num_heads=2,
                                                  mlp_dim=16, max_len=4, scan_layers=True)
  params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 4), jnp.int32))["params"]
  params = jax.tree.map(lambda p: p + 1.0, params)  # no zeros: every decay shows
  config = make_config(**{"optimizer.name": optimizer, "optimizer.learning_rate": 1.0,
                          "optimizer.weight_decay": 0.1})
  tx, _ = optimizers.build(config.optimizer, 10)
  updates, _ = tx.update(jax.tree.map(jnp.zeros_like, params), tx.init(params), params)
  new = optax.apply_updates(params, updates)
  flat = jax.tree_util.tree_flatten_with_path(new)[0]
  decayed = {jax.tree_util.keystr(path) for path, _ in flat}
  checked = set()
  for (path, p_new), p_old in zip(flat, jax.tree.leaves(params)):
    name = jax.tree_util.keystr(path)
    if not name.endswith(("['bias']", "['scale']")):  # kernels and the token/position embeddings
      np.testing.assert_allclose(p_new, p_old * 0.9, rtol=1e-5, err_msg=name)
      checked.add("kernel")
    else:  # biases, LayerNorm scales and biases
      np.testing.assert_array_equal(p_new, p_old, err_msg=name)
      checked.add("bias" if "bias" in name else "scale" if "scale" in name else name)
  assert {"kernel", "bias", "scale"} <= checked and decayed


def test_ema_params_are_averaged_and_used_for_evaluation():
  config = make_config(ema_decay=0.9)
  state, train_step, eval_step, model, experiment = build(config)
  new, _ = train_step(state, toy_batch(16))
  expected = jax.tree.map(lambda e, p: 0.9 * e + 0.1 * p, state.ema_params, new.params)
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-6), new.ema_params, expected)
  # Evaluation reads the EMA, not the live parameters.
  batch = dict(toy_batch(16, seed=1), mask=jnp.ones((16,), bool))
  other = jax.tree.map(lambda p: p * -2.0, new.params)
  with_ema = eval_step(new.replace(ema_params=other), batch)
  plain = eval_step(new.replace(params=other, ema_params=None), batch)
  live = eval_step(new.replace(ema_params=None), batch)
  np.testing.assert_allclose(with_ema["loss_sum"], plain["loss_sum"], rtol=1e-6)
  assert not np.isclose(with_ema["loss_sum"], live["loss_sum"])


def test_dropout_is_random_per_step_in_training_and_off_in_evaluation():
  batch = toy_batch(32)
  state, train_step, eval_step, model, _ = build(make_config(**{"model.dropout_rate": 0.5}))
  loss = lambda s: float(train_step(s, batch)[1]["loss"])  # noqa: E731
  assert loss(state) != loss(state.replace(step=state.step + 1))  # a new mask every step
  assert loss(state) == loss(state)  # deterministic given (rng, step)
  no_dropout, step0, _, _, _ = build(make_config())
  assert float(step0(no_dropout, batch)[1]["loss"]) == float(step0(no_dropout.replace(step=1), batch)[1]["loss"])
  # Evaluation: no dropout, the plain deterministic network.
  eval_batch = dict(batch, mask=jnp.ones((32,), bool))
  stats = eval_step(state, eval_batch)
  logits, _ = model.apply(state.params, {}, batch["features"], train=False)
  expected = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).sum()
  np.testing.assert_allclose(stats["loss_sum"], expected, rtol=1e-5)


def test_label_smoothing_changes_the_training_loss_as_defined():
  batch = toy_batch(16)
  smoothing = 0.2
  state, train_step, _, model, _ = build(make_config(**{"loss.label_smoothing": smoothing}))
  logits, _ = model.apply(state.params, {}, batch["features"], train=False)
  log_p = jax.nn.log_softmax(logits)
  targets = (1 - smoothing) * jax.nn.one_hot(batch["label"], 3) + smoothing / 3
  expected = float(-(targets * log_p).sum(-1).mean())
  plain = float(optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean())
  _, metrics = train_step(state, batch)
  assert float(metrics["loss"]) == pytest.approx(expected, rel=1e-5)
  assert abs(expected - plain) > 1e-3
