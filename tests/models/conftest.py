"""Helpers shared by the model tests: parameter counting and a plain optax loop."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

# XLA:CPU spends ~0.1-0.4 s of compile time per initializer draw and seconds per
# tiny train step, which dominates these tests on a 2-core machine. So every
# test initialises its tiny model once per module (the variables are shared),
# runs everything through jit (one compile, not one per op), and compiles with
# LLVM optimisation off: the programs are tiny, compile time is what counts.
COMPILER_OPTIONS = {"xla_backend_optimization_level": 0}


def jit(fn, **kwargs):
  return jax.jit(fn, compiler_options=COMPILER_OPTIONS, **kwargs)


def key(seed: int):
  return jax.random.key(seed)


def init(model, x, seed: int = 0):
  """Variables of `model` for input `x`."""
  return jit(model.init)({"params": key(seed), "dropout": key(seed + 1)}, x)


@functools.lru_cache(maxsize=None)
def _jitted_apply(model, train: bool, mutable: tuple, with_rng: bool):
  def fn(variables, x, rng):
    return model.apply(variables, x, train=train, rngs={"dropout": rng} if with_rng else None,
                       mutable=list(mutable) or False)
  return jit(fn)


def apply(model, variables, x, *, train: bool = False, rng=None, mutable=()):
  """model.apply, jitted (and cached per model, so repeated calls compile once); `rng` is the dropout key."""
  return _jitted_apply(model, train, tuple(mutable or ()), rng is not None)(variables, x, rng)


def param_count_of(model, x) -> int:
  """Parameters of `model` initialised on `x`, by shape only (nothing is computed)."""
  variables = jax.eval_shape(lambda: model.init({"params": key(0), "dropout": key(1)}, x))
  return sum(a.size for a in jax.tree.leaves(variables["params"]))


def fit_batch(model, x, y, *, steps: int, learning_rate: float = 1e-2, variables=None):
  """Trains `model` on the single batch (x, y) with Adam for `steps` steps.

  Returns (final train-mode loss, eval-mode loss, eval-mode accuracy), the
  eval-mode figures computed with train=False, i.e. batch norm running averages
  and no dropout. `y` holds integer labels of the leading shape of the logits.
  `variables`, when given, are the initial ones (saves compiling an init).
  """
  if variables is None:
    variables = init(model, x)
  params = variables["params"]
  batch_stats = variables.get("batch_stats", {})
  tx = optax.adam(learning_rate)

  def loss_fn(params, batch_stats, rng):
    logits, updates = model.apply({"params": params, "batch_stats": batch_stats}, x, train=True,
                                  rngs={"dropout": rng}, mutable=["batch_stats"])
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    return loss, updates.get("batch_stats", {})

  def train(params, batch_stats):
    # The whole loop in one program: no per-step dispatch, one compile.
    def step(carry, i):
      params, batch_stats, opt_state = carry
      (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(
          params, batch_stats, jax.random.fold_in(key(2), i))
      updates, opt_state = tx.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), batch_stats, opt_state), loss

    (params, batch_stats, _), losses = jax.lax.scan(
        step, (params, batch_stats, tx.init(params)), jnp.arange(steps))
    logits = model.apply({"params": params, "batch_stats": batch_stats}, x, train=False)
    eval_loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    return losses[-1], eval_loss, jnp.mean(jnp.argmax(logits, -1) == y)

  return tuple(float(v) for v in jit(train)(params, batch_stats))


def assert_dropout_behaviour(model, x, variables=None):
  """Train mode: two dropout rngs give different outputs; eval mode: no rng needed, deterministic."""
  if variables is None:
    variables = init(model, x)
  mutable = ["batch_stats"] if "batch_stats" in variables else False

  def outputs(variables, x, rng):
    out = model.apply(variables, x, train=True, rngs={"dropout": rng}, mutable=mutable)
    train_out = out[0] if mutable else out
    # Eval mode with a dropout rng offered must ignore it.
    return train_out, model.apply(variables, x, train=False, rngs={"dropout": rng})

  outputs = jit(outputs)
  a, e1 = outputs(variables, x, key(1))
  b, e2 = outputs(variables, x, key(2))
  a_again, _ = outputs(variables, x, key(1))
  assert not np.allclose(a, b), "dropout should make train-mode outputs depend on the rng"
  np.testing.assert_array_equal(a, a_again)
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
def init_vars():
  return init


@pytest.fixture(scope="session")
def run():
  return apply


@pytest.fixture(scope="session")
def fit():
  return fit_batch


@pytest.fixture(scope="session")
def check_dropout():
  return assert_dropout_behaviour
