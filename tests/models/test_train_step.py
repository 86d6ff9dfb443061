"""Every registered model through the framework's jitted train step on 1 and 8 devices."""

import jax
import ml_collections
import numpy as np
import pytest

from lepton_jax import config_lib, registry, train
from lepton_jax.config_defaults import base_config
from lepton_jax.data import base
from lepton_jax.data.info import DatasetInfo

import task_testlib


class _Synthetic(base.Dataset):
  """Random arrays shaped like a real dataset."""

  input_key, shape, dtype, label_key, classes = "image", (16, 16, 3), np.uint8, "label", 4

  def info(self):
    return DatasetInfo("synthetic", self.input_key, self.shape, self.dtype, self.classes,
                                   {"train": 64, "test": 16}, label_key=self.label_key)

  def read(self, split):
    n = self.info().split_size(split)
    rng = np.random.default_rng(len(split))
    if self.dtype == np.uint8:
      x = rng.integers(0, 256, (n,) + self.shape).astype(np.uint8)
    else:
      x = rng.integers(0, self.classes, (n,) + self.shape).astype(np.int32)
    y_shape = (n,) + self.shape if self.label_key == "targets" else (n,)
    return {self.input_key: x, self.label_key: rng.integers(0, self.classes, y_shape).astype(np.int32)}


@registry.register("dataset", "_synthetic_images")
class SyntheticImages(_Synthetic):
  """16x16x3 random images, 4 classes (tests only)."""


@registry.register("dataset", "_synthetic_sequences")
class SyntheticSequences(_Synthetic):
  """Random 12-token sequences over 6 symbols, 4 classes (tests only)."""

  input_key, shape, dtype, classes = "tokens", (12,), np.int32, 4


@registry.register("dataset", "_synthetic_text")
class SyntheticText(_Synthetic):
  """Random 12-byte windows with next-byte targets (tests only)."""

  input_key, shape, dtype, label_key, classes = "tokens", (12,), np.int32, "targets", 256


CASES = {
    "mlp": ("_synthetic_images", "classification", {"hidden_sizes": (16,)}),
    "cnn": ("_synthetic_images", "classification", {"conv_features": (8,), "pool": (True,),
                                                      "hidden_sizes": (16,)}),
    "resnet": ("_synthetic_images", "classification", {"stage_sizes": (1, 1), "width": 8}),
    "vit": ("_synthetic_images", "classification", {"width": 32, "depth": 1, "num_heads": 2,
                                                     "mlp_dim": 64, "patch_size": 4}),
    "transformer_lm": ("_synthetic_text", "language_model", {"width": 32, "depth": 1, "num_heads": 2,
                                                              "mlp_dim": 64, "max_len": 12}),
    "llama": ("_synthetic_text", "language_model", {"width": 32, "depth": 1, "num_heads": 2,
                                                     "num_kv_heads": 1, "mlp_dim": 64, "max_len": 12}),
    "lstm": ("_synthetic_sequences", "classification", {"hidden_size": 16}),
    "gru": ("_synthetic_text", "language_model", {"hidden_size": 16, "head": "lm"}),
}


def test_every_registered_model_is_covered():
  assert set(CASES) >= set(registry.names("model"))


def make_config(model, dataset, experiment, kwargs, mesh_data):
  config = base_config()
  config.experiment = experiment
  config.data.name = dataset
  config.data.preprocess = ("to_float",) if dataset == "_synthetic_images" else ()
  if experiment == "language_model":
    config.metrics = ("loss", "bits_per_byte", "accuracy")
  config.model = ml_collections.ConfigDict(dict(name=model, **kwargs))
  config.batch_size = 16
  config.num_train_steps = 2
  config.mesh.data = mesh_data
  return config


@pytest.mark.parametrize("model", sorted(CASES))
def test_one_jitted_step_on_1_and_8_devices(model, tmp_path):
  dataset, experiment, kwargs = CASES[model]
  losses = []
  for devices in (jax.devices()[:1], jax.devices()[:8]):
    config = make_config(model, dataset, experiment, kwargs, len(devices))
    data, task = task_testlib.build(config, devices=devices)
    state = task.init_state(task.init_rng)
    state, metrics = task.train_step(state, task_testlib.first_batch(task, data))
    assert int(state.step) == 1
    losses.append(float(metrics["loss"]))
    assert np.isfinite(losses[-1])
  np.testing.assert_allclose(losses[0], losses[1], rtol=1e-4)
