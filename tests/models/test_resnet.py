import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lepton_jax.models.resnet import ResNet


@pytest.mark.parametrize("kwargs, expected", [
    (dict(), 11_173_962),                                  # ResNet-18
    (dict(stage_sizes=(1, 1, 1), width=16), 78_042),       # small variant
])
def test_parameter_count_matches_docstring(param_count, kwargs, expected):
  n = param_count(ResNet(num_classes=10, **kwargs), jnp.zeros((1, 32, 32, 3)))
  assert n == expected
  assert f"{expected:,}" in ResNet.__doc__


def test_output_shapes(init_vars):
  model = ResNet(num_classes=10, stage_sizes=(1, 1, 1), width=8)
  x = jnp.zeros((2, 32, 32, 3))
  assert model.apply(init_vars(model, x), x).shape == (2, 10)
  # Grayscale images without a channel axis.
  g = jnp.zeros((2, 28, 28))
  assert model.apply(init_vars(model, g), g).shape == (2, 10)


def test_batch_stats_update_in_train_mode_only(rng, init_vars):
  model = ResNet(num_classes=3, stage_sizes=(1,), width=4)
  x = jnp.asarray(rng.normal(size=(4, 8, 8, 3)), jnp.float32) + 1.0
  variables = init_vars(model, x)
  _, updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
  before, after = variables["batch_stats"]["stem_bn"], updates["batch_stats"]["stem_bn"]
  assert not np.allclose(before["mean"], after["mean"])
  assert not np.allclose(before["var"], after["var"])
  # Eval mode reads the running averages and needs nothing mutable.
  a = model.apply(variables, x, train=False)
  b = model.apply({**variables, **updates}, x, train=False)
  assert not np.allclose(a, b)


def test_bfloat16_compute_returns_float32(init_vars):
  model = ResNet(num_classes=4, stage_sizes=(1, 1), width=8, dtype=jnp.bfloat16)
  x = jnp.ones((2, 8, 8, 3))
  variables = init_vars(model, x)
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(variables["params"]))
  out, _ = model.apply(variables, x, train=True, mutable=["batch_stats"])
  assert out.dtype == jnp.float32 and out.shape == (2, 4)
  assert np.all(np.isfinite(out))


def test_tiny_resnet_overfits_a_fixed_batch(fit, rng):
  # 8 random 8x8 images with random labels among 4 classes: memorisation only.
  x = jnp.asarray(rng.normal(size=(8, 8, 8, 3)), jnp.float32)
  y = jnp.asarray(rng.permutation(np.arange(8) % 4), jnp.int32)
  model = ResNet(num_classes=4, stage_sizes=(1, 1), width=8)
  train_loss, eval_loss, accuracy = fit(model, x, y, steps=100, learning_rate=1e-2)
  assert train_loss < 0.05
  assert accuracy == 1.0  # eval mode: running batch-norm averages
  assert eval_loss < 0.2
