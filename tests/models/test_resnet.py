import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lepton_jax.models.resnet import ResNet

# Every functional test uses this config, sharing one set of initial variables
# (see conftest on init compile time); its parameters do not depend on the
# image size, so the same variables serve 8x8 and 32x32 images.
TINY = dict(stage_sizes=(1, 1), width=8)
NUM_CLASSES = 4


@pytest.fixture(scope="module")
def tiny_vars(init_vars):
  return init_vars(ResNet(num_classes=NUM_CLASSES, **TINY), jnp.zeros((1, 8, 8, 3)))


@pytest.mark.parametrize("kwargs, expected", [
    (dict(), 11_173_962),                                  # ResNet-18
    (dict(stage_sizes=(1, 1, 1), width=16), 78_042),       # small variant
])
def test_parameter_count_matches_docstring(param_count, kwargs, expected):
  assert param_count(ResNet(num_classes=10, **kwargs), jnp.zeros((1, 32, 32, 3))) == expected
  assert f"{expected:,}" in ResNet.__doc__


def test_resnet18_structure():
  shapes = jax.eval_shape(lambda: ResNet(num_classes=10).init(jax.random.key(0), jnp.zeros((1, 32, 32, 3))))
  params = shapes["params"]
  assert sorted(k for k in params if k.startswith("stage")) == [
      f"stage{i}_block{j}" for i in range(4) for j in range(2)]
  # Projection shortcuts only where the shape changes: first block of stages 1..3.
  assert [("proj_conv" in params[f"stage{i}_block0"]) for i in range(4)] == [False, True, True, True]
  assert params["stage3_block1"]["conv2"]["kernel"].shape == (3, 3, 512, 512)
  assert set(shapes["batch_stats"]["stem_bn"]) == {"mean", "var"}


def test_output_shapes(tiny_vars, run):
  model = ResNet(num_classes=NUM_CLASSES, **TINY)
  assert run(model, tiny_vars, jnp.zeros((2, 32, 32, 3))).shape == (2, NUM_CLASSES)
  # Grayscale images without a channel axis get one.
  g = jnp.zeros((2, 28, 28))
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), g))
  assert shapes["params"]["stem_conv"]["kernel"].shape == (3, 3, 1, 8)
  assert jax.eval_shape(model.apply, shapes, g).shape == (2, NUM_CLASSES)


def test_batch_stats_update_in_train_mode_only(tiny_vars, run, rng):
  model = ResNet(num_classes=NUM_CLASSES, **TINY)
  x = jnp.asarray(rng.normal(size=(4, 8, 8, 3)), jnp.float32) + 1.0
  _, updates = run(model, tiny_vars, x, train=True, mutable=["batch_stats"])
  before, after = tiny_vars["batch_stats"]["stem_bn"], updates["batch_stats"]["stem_bn"]
  assert not np.allclose(before["mean"], after["mean"])
  assert not np.allclose(before["var"], after["var"])
  # Eval mode reads the running averages and needs nothing mutable.
  a = run(model, tiny_vars, x)
  b = run(model, {**tiny_vars, **updates}, x)
  assert not np.allclose(a, b)


def test_bfloat16_compute_returns_float32(tiny_vars, run):
  model = ResNet(num_classes=NUM_CLASSES, dtype=jnp.bfloat16, **TINY)
  out, _ = run(model, tiny_vars, jnp.ones((2, 8, 8, 3)), train=True, mutable=["batch_stats"])
  assert out.dtype == jnp.float32 and out.shape == (2, NUM_CLASSES)
  assert np.all(np.isfinite(out))


def test_tiny_resnet_overfits_a_fixed_batch(fit, tiny_vars, rng):
  # 8 random 8x8 images with random labels among 4 classes: memorisation only.
  x = jnp.asarray(rng.normal(size=(8, 8, 8, 3)), jnp.float32)
  y = jnp.asarray(rng.permutation(np.arange(8) % NUM_CLASSES), jnp.int32)
  model = ResNet(num_classes=NUM_CLASSES, **TINY)
  train_loss, eval_loss, accuracy = fit(model, x, y, steps=100, variables=tiny_vars)
  assert train_loss < 0.05
  assert accuracy == 1.0  # eval mode: batch norm from its running averages
  assert eval_loss < 0.05
