import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lepton_jax.models.vit import ViT

TINY = dict(width=16, depth=1, num_heads=2, mlp_dim=32, patch_size=4)


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
  x = jnp.zeros((1, 32, 32, 3))
  cls = param_count(ViT(num_classes=10, variant="Ti"), x)
  assert cls - param_count(ViT(num_classes=10, variant="Ti", pooling="mean"), x) == 2 * 192


def test_presets_and_overrides():
  assert ViT(num_classes=2, variant="S").dims() == dict(width=384, depth=12, num_heads=6, mlp_dim=1536)
  assert ViT(num_classes=2, variant="S", depth=2).dims()["depth"] == 2
  assert ViT(num_classes=2).dims() == dict(width=192, depth=12, num_heads=3, mlp_dim=768)
  assert ViT(num_classes=2, **TINY).dims() == dict(width=16, depth=1, num_heads=2, mlp_dim=32)
  with pytest.raises(ValueError, match="unknown variant"):
    ViT(num_classes=2, variant="XL").dims()


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_output_shapes(init_vars, pooling):
  model = ViT(num_classes=5, pooling=pooling, **TINY)
  x = jnp.zeros((3, 8, 8, 3))
  variables = init_vars(model, x)
  assert variables["params"]["pos_embed"].shape == (1, 4 + (pooling == "cls"), 16)
  assert model.apply(variables, x).shape == (3, 5)


def test_image_not_divisible_by_patch_is_rejected(init_vars):
  with pytest.raises(ValueError, match="not divisible by patch_size"):
    init_vars(ViT(num_classes=2, **TINY), jnp.zeros((1, 10, 10, 3)))


def test_dropout_train_vs_eval(check_dropout, rng):
  model = ViT(num_classes=4, dropout_rate=0.5, attention_dropout_rate=0.5, **TINY)
  check_dropout(model, jnp.asarray(rng.normal(size=(2, 8, 8, 3)), jnp.float32))


def test_bfloat16_compute_returns_float32(init_vars):
  model = ViT(num_classes=4, dtype=jnp.bfloat16, **TINY)
  x = jnp.ones((2, 8, 8, 3))
  variables = init_vars(model, x)
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(variables["params"]))
  out = model.apply(variables, x)
  assert out.dtype == jnp.float32 and out.shape == (2, 4)
  assert np.all(np.isfinite(out))


def test_tiny_vit_overfits_a_fixed_batch(fit, rng):
  # 8 random 8x8 images with random labels among 4 classes: memorisation only.
  x = jnp.asarray(rng.normal(size=(8, 8, 8, 3)), jnp.float32)
  y = jnp.asarray(rng.permutation(np.arange(8) % 4), jnp.int32)
  model = ViT(num_classes=4, **TINY)
  train_loss, eval_loss, accuracy = fit(model, x, y, steps=100, learning_rate=1e-2)
  assert accuracy == 1.0
  assert eval_loss < 0.05
