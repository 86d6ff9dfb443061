"""Synthetic data (lepton_jax/data/synthetic.py): any shape, deterministic by index."""

import os

import ml_collections
import numpy as np
import pytest

from lepton_jax.data import order, stream, synthetic
from lepton_jax.errors import UserError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def config(**kwargs):
  return ml_collections.ConfigDict({"name": "synthetic", **kwargs})


def test_images_follow_the_config_and_are_a_function_of_the_index():
  c = config(input_shape=(6, 5, 3), input_dtype="uint8", num_classes=7, num_examples=40)
  info = synthetic.info(c)
  assert (info.input_key, info.input_shape, info.input_dtype, info.num_classes) == (
      "image", (6, 5, 3), np.uint8, 7)
  assert info.split_sizes == {"train": 40, "validation": 5, "test": 5}
  a, b = synthetic.SyntheticSource(c, "train", seed=1), synthetic.SyntheticSource(c, "train", seed=1)
  assert len(a) == 40 and a[3]["image"].shape == (6, 5, 3) and a[3]["image"].dtype == np.uint8
  np.testing.assert_array_equal(a[3]["image"], b[3]["image"])
  assert not np.array_equal(a[3]["image"], a[4]["image"])
  assert not np.array_equal(a[3]["image"], synthetic.SyntheticSource(c, "test", seed=1)[3]["image"])
  labels = [int(a[i]["label"]) for i in range(40)]
  assert 0 <= min(labels) and max(labels) < 7
  batch = next(stream.train_batches(a, order.ShardLayout.create(0, 0, 1), 8, seed=0))
  assert batch["image"].shape == (8, 6, 5, 3) and batch["label"].dtype == np.int32


def test_tokens_and_float_features():
  tokens = synthetic.SyntheticSource(config(seq_len=12, vocab_size=50), "train")[0]
  assert tokens["tokens"].shape == (12,) and tokens["tokens"].max() < 50
  np.testing.assert_array_equal(tokens["tokens"][1:], tokens["targets"][:-1])
  features = synthetic.SyntheticSource(config(input_shape=(30,), input_dtype="float32"), "test")[2]
  assert features["features"].dtype == np.float32 and features["features"].shape == (30,)


def test_bad_settings_are_user_errors():
  with pytest.raises(UserError, match="not a numpy dtype name"):
    synthetic.info(config(input_dtype="uint9"))
  with pytest.raises(UserError, match="has no split 'dev'"):
    synthetic.SyntheticSource(config(), "dev")


@pytest.mark.parametrize("name", ["mnist_cnn.py", "lm_transformer.py"])
def test_bench_runs_any_config_on_synthetic_data(name, capsys):
  from lepton_jax import bench
  argv = ["--config", os.path.join(REPO, "configs", name), "--config.data.name=synthetic",
          "--steps", "2", "--repeats", "1", "--rounds", "1", "--config.batch_size=8",
          "--only", "step", "--only", "input"]
  if name.startswith("lm_"):
    argv += ["--config.model.width=16", "--config.model.depth=1", "--config.data.seq_len=16",
             "--config.model.max_len=16"]
  assert bench.main(argv) == 0
  out = capsys.readouterr().out
  assert " on synthetic, global batch 8" in out and "examples/s" in out
