"""Helpers shared by the model tests: parameter counting and a plain optax loop."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

# XLA:CPU spends ~0.4 s of compile time per initializer draw (a whole ResNet
# init takes tens of seconds, worse with the default threefry PRNG), so the
# tests use the cheaper 'rbg' PRNG and initialise each tiny model once per
# module, sharing the variables between tests. Tests only need *some* randomness.
PRNG_IMPL = "rbg"


def key(seed: int):
  return jax.random.key(seed, impl=PRNG_IMPL)


def init(model, x, seed: int = 0):
  """Variables of `model` for input `x` (jitted: one compile instead of one per op)."""
  return jax.jit(model.init)({"params": key(seed), "dropout": key(seed + 1)}, x)


def param_count_of(model, x) -> int:
  """Parameters of `model` initialised on `x`, by shape only (nothing is computed)."""
  variables = jax.eval_shape(
      lambda: model.init({"params": jax.random.key(0), "dropout": jax.random.key(1)}, x))
  return sum(a.size for a in jax.tree.leaves(variables["params"]))


def fit_batch(model, x, y, *, steps: int, learning_rate: float = 1e-2, seed: int = 0, variables=None):
  """Trains `model` on the single batch (x, y) with Adam for `steps` steps.

  Returns (final train-mode loss, eval-mode loss, eval-mode accuracy), the
  eval-mode figures computed with train=False, i.e. batch norm running averages
  and no dropout. `y` holds integer labels of the leading shape of the logits.
  `variables`, when given, are the initial ones (saves compiling an init).
  """
  if variables is None:
    variables = init(model, x, seed)
  params = variables["params"]
  batch_stats = variables.get("batch_stats", {})
  tx = optax.adam(learning_rate)
  opt_state = tx.init(params)

  def loss_fn(params, batch_stats, rng):
    logits, updates = model.apply({"params": params, "batch_stats": batch_stats}, x, train=True,
                                  rngs={"dropout": rng}, mutable=["batch_stats"])
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    return loss, updates.get("batch_stats", {})

  @jax.jit
  def step(params, batch_stats, opt_state, rng):
    (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch_stats, rng)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), batch_stats, opt_state, loss

  rng = key(seed + 2)
  for i in range(steps):
    params, batch_stats, opt_state, loss = step(params, batch_stats, opt_state, jax.random.fold_in(rng, i))
  logits = model.apply({"params": params, "batch_stats": batch_stats}, x, train=False)
  eval_loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
  accuracy = jnp.mean(jnp.argmax(logits, -1) == y)
  return float(loss), float(eval_loss), float(accuracy)


def assert_dropout_behaviour(model, x, variables=None):
  """Train mode: two dropout rngs give different outputs; eval mode: no rng needed, deterministic."""
  if variables is None:
    variables = init(model, x)
  mutable = ["batch_stats"] if "batch_stats" in variables else False

  def train_out(seed):
    out = model.apply(variables, x, train=True, rngs={"dropout": key(seed)}, mutable=mutable)
    return out[0] if mutable else out

  a, b = train_out(1), train_out(2)
  assert not np.allclose(a, b), "dropout should make train-mode outputs depend on the rng"
  np.testing.assert_array_equal(a, train_out(1))
  e1 = model.apply(variables, x, train=False)
  e2 = model.apply(variables, x, train=False, rngs={"dropout": key(3)})
  np.testing.assert_array_equal(e1, e2)
  assert not np.allclose(a, e1)


@pytest.fixture
def rng():
  return np.random.default_rng(0)


# Exposed as fixtures rather than imported: a `from conftest import ...` would
# clash with any other conftest module on sys.path.
@pytest.fixture(scope="session")
def param_count():
  return param_count_of


@pytest.fixture(scope="session")
def make_key():
  return key


@pytest.fixture(scope="session")
def init_vars():
  return init


@pytest.fixture(scope="session")
def fit():
  return fit_batch


@pytest.fixture(scope="session")
def check_dropout():
  return assert_dropout_behaviour
