"""lepton_jax.optimizers: values read from the config only, bad learning rates refused, warmups
that do not fit a short run scaled down."""

import ast
import inspect

import pytest

from lepton_jax import optimizers
from lepton_jax.config_defaults import base_config
from lepton_jax.errors import UserError


def _optimizer_config(**values):
  cfg = base_config().optimizer
  for key, value in values.items():
    cfg[key] = value
  return cfg


def test_no_default_is_restated_outside_config_defaults():
  """optimizers.py reads every hyperparameter as the config has it (no cfg.get(key, default))."""
  tree = ast.parse(inspect.getsource(optimizers))
  fallbacks = [ast.unparse(node) for node in ast.walk(tree)
               if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
               and node.func.attr == "get" and ast.unparse(node.func.value) == "cfg"]
  assert fallbacks == []


@pytest.mark.parametrize("rate", [float("nan"), float("inf"), -1e-3, 0.0])
def test_a_learning_rate_that_is_not_positive_and_finite_is_refused(rate):
  with pytest.raises(UserError, match=f"^optimizer.learning_rate must be a positive finite number, "
                                      f"got {rate!r}$"):
    optimizers.build(_optimizer_config(learning_rate=rate), 100)


@pytest.mark.parametrize("schedule", ["warmup_cosine", "constant"])
def test_a_warmup_as_long_as_training_is_scaled_to_a_tenth(schedule):
  cfg = _optimizer_config(schedule=schedule, warmup_steps=20, learning_rate=2e-3)
  _, lr = optimizers.build(cfg, 20)
  assert float(lr(0)) == 0.0
  assert float(lr(1)) == pytest.approx(1e-3)  # halfway through a 2-step warmup
  assert float(lr(2)) == pytest.approx(2e-3)
  assert optimizers.warmup_note(cfg, 20) == (
      "note: optimizer.warmup_steps=20 is not below the 20 training steps: warming up over 2 "
      "steps (a tenth of training) instead")


def test_a_warmup_that_fits_is_kept_and_not_noted():
  cfg = _optimizer_config(schedule="warmup_cosine", warmup_steps=19, learning_rate=1.0)
  _, lr = optimizers.build(cfg, 20)
  assert float(lr(19)) == pytest.approx(1.0)
  assert optimizers.warmup_note(cfg, 20) is None
  assert optimizers.warmup_note(_optimizer_config(schedule="step_decay", warmup_steps=50), 20) is None


def test_adamw_decays_by_the_configured_amount():
  import jax.numpy as jnp
  params = {"kernel": jnp.ones((2, 2)), "bias": jnp.ones((2,))}
  zero_grads = {"kernel": jnp.zeros((2, 2)), "bias": jnp.zeros((2,))}
  for decay in (0.0, 0.5):
    tx, _ = optimizers.build(_optimizer_config(name="adamw", learning_rate=0.1, weight_decay=decay), 10)
    updates, _ = tx.update(zero_grads, tx.init(params), params)
    assert float(updates["kernel"][0, 0]) == pytest.approx(-0.1 * decay)
    assert float(updates["bias"][0]) == 0.0
