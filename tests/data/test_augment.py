"""Augmentation ops and normalization by dataset statistics (lepton_jax/data/augment.py)."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from lepton_jax.data import augment, statistics, transforms
from lepton_jax.errors import UserError

OPS = ("random_crop(padding=4)", "flip_lr", "random_resized_crop", "random_resized_crop(scale=(0.35, 1.0))")


def images(dtype=np.float32, shape=(6, 16, 12, 3), seed=0):
  x = np.random.default_rng(seed).integers(0, 256, shape)
  return jnp.asarray(x.astype(dtype))


@pytest.mark.parametrize("spec", OPS)
@pytest.mark.parametrize("dtype", [np.float32, np.uint8])
def test_ops_keep_shape_and_dtype_and_are_deterministic(spec, dtype):
  op = jax.jit(transforms.build([spec]))
  x = images(dtype)
  a = op(x, jax.random.PRNGKey(1))
  assert a.shape == x.shape and a.dtype == x.dtype
  np.testing.assert_array_equal(a, op(x, jax.random.PRNGKey(1)))  # same rng, same output
  assert not np.array_equal(a, op(x, jax.random.PRNGKey(2)))  # the rng matters
  # Examples draw independently: identical examples get different augmentations.
  same = jnp.broadcast_to(x[:1], x.shape)
  out = op(same, jax.random.PRNGKey(3))
  assert len({np.asarray(o).tobytes() for o in out}) > 1


def test_ops_compose_in_order_from_the_config():
  fn = transforms.build(("random_crop(padding=2)", "flip_lr"))
  x = images()
  rng = jax.random.PRNGKey(0)
  k1, k2 = jax.random.split(rng)
  expected = augment.flip_lr()(augment.random_crop(padding=2)(x, k1), k2)
  np.testing.assert_array_equal(fn(x, rng), expected)


def test_random_crop_is_a_shifted_window_of_the_zero_padded_image():
  x = images(shape=(32, 8, 8, 1))
  out = np.asarray(augment.random_crop(padding=2)(x, jax.random.PRNGKey(0)))
  padded = np.pad(np.asarray(x), ((0, 0), (2, 2), (2, 2), (0, 0)))
  offsets = set()
  for i in range(len(x)):
    hits = [(dy, dx) for dy in range(5) for dx in range(5)
            if np.array_equal(out[i], padded[i, dy:dy + 8, dx:dx + 8])]
    assert hits, f"example {i} is not a crop of its padded image"
    offsets.add(hits[0])
  assert len(offsets) > 3
  np.testing.assert_array_equal(augment.random_crop(padding=0)(x, jax.random.PRNGKey(0)), x)


def test_flip_lr_mirrors_the_width_axis():
  x = images()
  np.testing.assert_array_equal(augment.flip_lr(probability=1.0)(x, jax.random.PRNGKey(0)), x[:, :, ::-1])
  np.testing.assert_array_equal(augment.flip_lr(probability=0.0)(x, jax.random.PRNGKey(0)), x)
  flipped = augment.flip_lr()(images(shape=(200, 4, 4, 1)), jax.random.PRNGKey(0))
  n = sum(not np.array_equal(a, b) for a, b in zip(flipped, images(shape=(200, 4, 4, 1))))
  assert 70 < n < 130  # about half


def test_random_resized_crop_of_the_whole_image_is_the_identity():
  x = images()
  out = augment.random_resized_crop(scale=(1.0, 1.0), ratio=(0.75, 0.75 + 1e-6))(
      images(shape=(6, 16, 12, 3)), jax.random.PRNGKey(0))
  np.testing.assert_allclose(out, x, atol=1e-3)


def test_random_resized_crop_zooms_in():
  # A horizontal ramp: a crop of scale s stretches it, so its range shrinks.
  ramp = jnp.broadcast_to(jnp.linspace(0.0, 1.0, 32)[None, None, :, None], (8, 32, 32, 1))
  out = augment.random_resized_crop(scale=(0.1, 0.3), ratio=(1.0, 1.0))(ramp, jax.random.PRNGKey(0))
  spans = np.ptp(np.asarray(out)[:, 16, :, 0], axis=1)
  assert np.all(spans < 0.7)


def test_bad_op_arguments_are_user_errors():
  for spec in ("random_crop(padding=-1)", "flip_lr(probability=2)",
               "random_resized_crop(scale=(0.5, 0.1))", "random_crop(size=3)"):
    with pytest.raises(UserError):
      transforms.build([spec])


def test_unknown_op_lists_the_registered_ops():
  with pytest.raises(UserError) as e:
    transforms.build(["flip_rl"])
  message = str(e.value)
  assert "unknown op 'flip_rl'" in message
  for name in ("flip_lr", "random_crop", "random_resized_crop", "normalize"):
    assert name in message
  assert message.index("flip_lr") < message.index("random_resized_crop")  # closest first


# ------------------------------------------------------------------ dataset statistics


class FakeDataset:
  """Enough of a Dataset for the statistics: its info, chunks of a split, and a cache dir."""

  def __init__(self, x, data_dir):
    self.x, self.data_dir, self.reads = x, data_dir, 0

  def info(self):
    from lepton_jax.data.info import DatasetInfo
    return DatasetInfo("fake", "image", self.x.shape[1:], np.uint8, 2, {"train": len(self.x)})

  def chunks(self, split, size):
    self.reads += 1
    for lo in range(0, len(self.x), size):
      yield {"image": self.x[lo:lo + size]}

  def cache_dir(self):
    return self.data_dir


def data_config(preprocess, augment_specs=()):
  return ml_collections.ConfigDict({"preprocess": tuple(preprocess), "augment": tuple(augment_specs),
                                    "train_split": "train"})


def test_dataset_statistics_fill_in_the_placeholders_without_changing_the_config(tmp_path):
  rng = np.random.default_rng(0)
  x = rng.integers(0, 256, (100, 4, 4, 3)).astype(np.uint8)
  x[..., 2] = 7  # a constant channel keeps std 1
  dataset = FakeDataset(x, str(tmp_path))
  config = data_config(["normalize(mean='dataset', std='dataset')"], ["flip_lr"])
  config.lock()
  written = config.to_dict()
  specs = statistics.resolve(config, dataset, "image")
  assert config.to_dict() == written  # resolved specs are returned, the config is left alone
  name, kwargs = transforms.parse_spec(specs.preprocess[0])
  expected = x.reshape(-1, 3) / 255.0
  assert name == "normalize"
  np.testing.assert_allclose(kwargs["mean"], expected.mean(0), rtol=1e-5)
  np.testing.assert_allclose(kwargs["std"][:2], expected.std(0)[:2], rtol=1e-5)
  assert kwargs["std"][2] == 1.0
  assert specs.augment == ("flip_lr",)
  # The resolved op normalizes the training images to mean 0, std 1 per channel.
  y = np.asarray(transforms.build(specs.preprocess)(jnp.asarray(x), jax.random.PRNGKey(0)))
  np.testing.assert_allclose(y[..., :2].reshape(-1, 2).mean(0), 0.0, atol=1e-4)
  np.testing.assert_allclose(y[..., :2].reshape(-1, 2).std(0), 1.0, atol=1e-4)
  # Numbers need no pass; a second load of the same data uses the cache.
  assert statistics.resolve(data_config(["to_float"]), dataset, "image").preprocess == ("to_float",)
  again = statistics.resolve(data_config(["normalize(mean='dataset', std=0.5)"]), dataset, "image")
  assert dataset.reads == 1
  assert transforms.parse_spec(again.preprocess[0])[1]["std"] == 0.5
  # Outside a training run (no data at hand) a placeholder is a clear error.
  with pytest.raises(UserError, match="only a training run computes"):
    statistics.OpSpecs.of_config(config)


def test_dataset_statistics_only_for_mean_and_std(tmp_path):
  dataset = FakeDataset(np.zeros((4, 2, 2, 1), np.uint8), str(tmp_path))
  with pytest.raises(UserError, match="only mean and std"):
    statistics.resolve(data_config(["normalize(max_value='dataset')"]), dataset, "image")
