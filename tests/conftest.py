"""Test set-up: 8 simulated CPU devices and one prepared tfds data dir per session."""

import os

import jax
import pytest

# Before any backend is initialized: tests select subsets (devices=jax.devices()[:n]).
jax.config.update("jax_num_cpu_devices", 8)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MNIST_DIR = os.path.join(os.path.dirname(REPO), "shared", "data", "mnist")


@pytest.fixture(scope="session", autouse=True)
def private_cache_dir(tmp_path_factory):
  """The measured CPU peak (and other per-machine caches) go to a temporary dir, not ~/.cache."""
  path = str(tmp_path_factory.mktemp("lepton_cache"))
  previous = os.environ.get("LEPTON_JAX_CACHE_DIR")
  os.environ["LEPTON_JAX_CACHE_DIR"] = path
  yield path
  if previous is None:
    os.environ.pop("LEPTON_JAX_CACHE_DIR", None)
  else:
    os.environ["LEPTON_JAX_CACHE_DIR"] = previous


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
  """A tfds data dir shared by the session's tests (datasets are prepared once)."""
  return str(tmp_path_factory.mktemp("tfds"))


@pytest.fixture
def quick_config(data_dir):
  """The quickstart config, shrunk to train in a few seconds."""
  from lepton_jax import config_lib
  config = config_lib.load(os.path.join(REPO, "configs", "quickstart.py"))
  config_lib.apply_overrides(config, [
      ("data.data_dir", data_dir), ("num_train_steps", "40"), ("log_every_steps", "10"),
      ("eval_every_steps", "20"), ("checkpoint_every_steps", "20"),
      ("model.conv_features", "(8,)"), ("model.pool", "(True,)"), ("model.hidden_sizes", "(32,)"),
  ])
  return config
