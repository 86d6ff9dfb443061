import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lepton_jax.models.vit import ViT

# Every functional test uses this config on 8x8 images (4 patches + class token),
# sharing one set of initial variables: see conftest on init compile time.
TINY = dict(width=16, depth=1, num_heads=2, mlp_dim=32, patch_size=4)
NUM_CLASSES = 4


@pytest.fixture(scope="module")
def tiny_vars(init_vars):
  return init_vars(ViT(num_classes=NUM_CLASSES, **TINY), jnp.zeros((1, 8, 8, 3)))


@pytest.mark.parametrize("kwargs, image, expected", [
    (dict(variant="Ti", num_classes=10), 32, 5_362_762),
    (dict(variant="S", num_classes=10), 32, 21_342_346),
    (dict(variant="Ti", num_classes=1000, patch_size=16), 224, 5_717_416),
    (dict(variant="S", num_classes=1000, patch_size=16), 224, 22_050_664),
])
def test_parameter_count_matches_docstring(param_count, kwargs, image, expected):
  assert param_count(ViT(**kwargs), jnp.zeros((1, image, image, 3))) == expected
  assert f"{expected:,}" in ViT.__doc__


def test_mean_pooling_drops_class_token_and_its_position(param_count):
  x = jnp.zeros((1, 8, 8, 3))
  cls = param_count(ViT(num_classes=10, **TINY), x)
  assert cls - param_count(ViT(num_classes=10, pooling="mean", **TINY), x) == 2 * TINY["width"]


def test_presets_and_overrides():
  assert ViT(num_classes=2, variant="S").dims() == dict(width=384, depth=12, num_heads=6, mlp_dim=1536)
  assert ViT(num_classes=2, variant="S", depth=2).dims()["depth"] == 2
  assert ViT(num_classes=2).dims() == dict(width=192, depth=12, num_heads=3, mlp_dim=768)
  assert ViT(num_classes=2, **TINY).dims() == dict(width=16, depth=1, num_heads=2, mlp_dim=32)
  with pytest.raises(ValueError, match="unknown variant"):
    ViT(num_classes=2, variant="XL").dims()


def test_output_shapes(tiny_vars, run):
  assert tiny_vars["params"]["pos_embed"].shape == (1, 5, 16)
  x = jnp.zeros((3, 8, 8, 3))
  assert run(ViT(num_classes=NUM_CLASSES, **TINY), tiny_vars, x).shape == (3, NUM_CLASSES)
  # Mean pooling: no class token, so the position table is one row shorter.
  mean = ViT(num_classes=NUM_CLASSES, pooling="mean", **TINY)
  shapes = jax.eval_shape(lambda: mean.init(jax.random.key(0), x))
  assert shapes["params"]["pos_embed"].shape == (1, 4, 16)
  assert "cls_token" not in shapes["params"]
  assert jax.eval_shape(mean.apply, shapes, x).shape == (3, NUM_CLASSES)


def test_image_not_divisible_by_patch_is_rejected():
  model = ViT(num_classes=2, **TINY)
  with pytest.raises(ValueError, match="not divisible by patch_size"):
    jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 10, 10, 3))))


def test_dropout_train_vs_eval(check_dropout, tiny_vars, rng):
  model = ViT(num_classes=NUM_CLASSES, dropout_rate=0.5, attention_dropout_rate=0.5, **TINY)
  check_dropout(model, jnp.asarray(rng.normal(size=(2, 8, 8, 3)), jnp.float32), tiny_vars)


def test_bfloat16_compute_returns_float32(tiny_vars, run, rng):
  model = ViT(num_classes=NUM_CLASSES, dtype=jnp.bfloat16, **TINY)
  x = jnp.asarray(rng.normal(size=(2, 8, 8, 3)), jnp.float32)
  out = run(model, tiny_vars, x)
  assert out.dtype == jnp.float32 and out.shape == (2, NUM_CLASSES)
  ref = run(ViT(num_classes=NUM_CLASSES, **TINY), tiny_vars, x)
  np.testing.assert_allclose(out, ref, atol=0.1)


def test_tiny_vit_overfits_a_fixed_batch(fit, tiny_vars, rng):
  # 8 random 8x8 images with random labels among 4 classes: memorisation only.
  x = jnp.asarray(rng.normal(size=(8, 8, 8, 3)), jnp.float32)
  y = jnp.asarray(rng.permutation(np.arange(8) % NUM_CLASSES), jnp.int32)
  model = ViT(num_classes=NUM_CLASSES, **TINY)
  _, eval_loss, accuracy = fit(model, x, y, steps=100, variables=tiny_vars)
  assert accuracy == 1.0
  assert eval_loss < 0.05
