"""CIFAR-10: offline from the python-version archive (records), online as tfds' catalog copy
read through tfds.data_source (mocked), and the CIFAR-10 configs end to end on mock data."""

import io
import json
import os
import pickle
import tarfile

import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds

from lepton_jax import config_lib, train
from lepton_jax.data import base
from lepton_jax.data.prepare import cifar10
from lepton_jax.errors import UserError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LABEL_NAMES = "airplane automobile bird cat deer dog frog horse ship truck".split()


def fake_batches(per_train_file=4, n_test=6, seed=0):
  """The python-version batch files, few examples each, pickled as the original (protocol 2)."""
  rng = np.random.default_rng(seed)

  def batch(n):
    return {b"batch_label": b"fake", b"labels": rng.integers(0, 10, n).tolist(),
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b"filenames": [b"x.png"] * n}

  files = {f"data_batch_{i}": batch(per_train_file) for i in range(1, 6)}
  files["test_batch"] = batch(n_test)
  files["batches.meta"] = {b"label_names": [n.encode() for n in LABEL_NAMES], b"num_vis": 3072}
  return files


def write_archive(folder, files, name=cifar10.ARCHIVE):
  path = os.path.join(folder, name)
  with tarfile.open(path, "w:gz") as tar:
    for member, obj in files.items():
      raw = pickle.dumps(obj, protocol=2)
      info = tarfile.TarInfo(f"{cifar10.FOLDER}/{member}")
      info.size = len(raw)
      tar.addfile(info, io.BytesIO(raw))
  return path


def data_config(tmp_path, manual_dir="", **kwargs):
  values = dict(name="cifar10", data_dir=str(tmp_path / "data"), manual_dir=str(manual_dir),
                verify_checksums=False)
  values.update(kwargs)
  return ml_collections.ConfigDict(values)


def expected_images(files, names):
  data = np.concatenate([files[n][b"data"] for n in names])
  labels = np.concatenate([files[n][b"labels"] for n in names])
  return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def test_offline_archive_becomes_records_in_the_original_order(tmp_path):
  files = fake_batches()
  manual = tmp_path / "manual"
  manual.mkdir()
  write_archive(str(manual), files)
  dataset = base.build(data_config(tmp_path, manual))
  info = dataset.info()
  assert info.split_sizes == {"train": 20, "test": 6}
  assert info.label_names == tuple(LABEL_NAMES)
  assert (info.input_shape, info.num_classes) == ((32, 32, 3), 10)
  for split, names in (("train", cifar10.TRAIN_FILES), ("test", (cifar10.TEST_FILE,))):
    arrays = dataset.read(split)
    assert set(arrays) == {"image", "label"}
    images, labels = expected_images(files, names)
    np.testing.assert_array_equal(arrays["image"], images)
    np.testing.assert_array_equal(arrays["label"], labels)


def test_offline_extracted_folder(tmp_path):
  files = fake_batches(per_train_file=2, n_test=3, seed=1)
  folder = tmp_path / "manual" / cifar10.FOLDER
  folder.mkdir(parents=True)
  for name, obj in files.items():
    (folder / name).write_bytes(pickle.dumps(obj, protocol=2))
  dataset = base.build(data_config(tmp_path, tmp_path / "manual"))
  assert dataset.info().split_sizes == {"train": 10, "test": 3}
  images, labels = expected_images(files, (cifar10.TEST_FILE,))
  got = dataset.read("test")
  order = np.lexsort(got["image"].reshape(3, -1).T)
  want = np.lexsort(images.reshape(3, -1).T)
  np.testing.assert_array_equal(got["image"][order], images[want])
  np.testing.assert_array_equal(got["label"][order], labels[want])


def test_missing_and_corrupt_archives_are_user_errors(tmp_path):
  manual = tmp_path / "manual"
  manual.mkdir()

  def error(**kwargs):
    kwargs.setdefault("manual_dir", str(manual))
    with pytest.raises(UserError) as e:
      base.build(data_config(tmp_path, **kwargs)).info()
    assert "\n" not in str(e.value)
    return str(e.value)

  assert "is not a directory" in error(manual_dir=str(tmp_path / "missing"))
  assert "neither cifar-10-python.tar.gz" in error()
  (manual / cifar10.ARCHIVE).write_bytes(b"\x1f\x8b garbage")
  assert "corrupt or truncated" in error()
  assert "does not match the original's MD5" in error(verify_checksums=True)
  files = fake_batches()
  del files["data_batch_3"]
  write_archive(str(manual), files)
  assert "lacks cifar-10-batches-py/data_batch_3" in error()
  files = fake_batches()
  files["test_batch"][b"data"] = files["test_batch"][b"data"][:, :100]
  write_archive(str(manual), files)
  assert "expected (N, 3072) uint8" in error()
  files = fake_batches()
  with tarfile.open(manual / cifar10.ARCHIVE, "w:gz") as tar:  # a truncated pickle
    for name, obj in files.items():
      data = pickle.dumps(obj, protocol=2)
      data = data[:len(data) // 2] if name == "data_batch_2" else data
      info = tarfile.TarInfo(f"{cifar10.FOLDER}/{name}")
      info.size = len(data)
      tar.addfile(info, io.BytesIO(data))
  assert "data_batch_2 is corrupt" in error()
  # An extracted folder with too few images, when checking.
  (manual / cifar10.ARCHIVE).unlink()
  folder = manual / cifar10.FOLDER
  folder.mkdir()
  for name, obj in files.items():
    (folder / name).write_bytes(pickle.dumps(obj, protocol=2))
  assert "hold 20 images, not 50000" in error(verify_checksums=True)


def test_pickles_cannot_run_code(tmp_path):
  class Evil:
    def __reduce__(self):
      return (os.system, ("echo pwned",))

  with pytest.raises(UserError, match="corrupt or not a python-version"):
    cifar10.load_pickle(pickle.dumps({b"data": Evil()}, protocol=2), "evil")


# ------------------------------------------------------------------ online (mocked tfds)


def write_mock_metadata(data_dir, num_examples):
  """tfds' cifar10 metadata (ArrayRecord format) with `num_examples` per split: what mock_data
  reads."""
  builder = tfds.builder("cifar10", data_dir=data_dir, file_format="array_record")
  builder.info.set_splits(tfds.core.SplitDict([
      tfds.core.SplitInfo(name=s, shard_lengths=[num_examples], num_bytes=0) for s in ("train", "test")]))
  os.makedirs(builder.data_dir, exist_ok=True)
  builder.info.write_to_directory(builder.data_dir)


@pytest.fixture
def mock_cifar10(tmp_path):
  data_dir = str(tmp_path / "mock_tfds")
  write_mock_metadata(data_dir, 64)
  with tfds.testing.mock_data(num_examples=64, data_dir=data_dir):
    yield data_dir


def test_online_path_and_the_tfds_catalog_read_through_data_sources(mock_cifar10):
  for config in (dict(name="cifar10", manual_dir=""), dict(name="tfds", tfds_name="cifar10")):
    dataset = base.build(ml_collections.ConfigDict(dict(data_dir=mock_cifar10, **config)))
    assert dataset.info().split_sizes == {"train": 64, "test": 64}
    arrays = dataset.read("train")
    assert arrays["image"].shape == (64, 32, 32, 3) and arrays["image"].dtype == np.uint8
    assert set(arrays) == {"image", "label"}  # the string 'id' stays behind
    assert dataset.read("test[:10]")["label"].shape == (10,)


@pytest.mark.parametrize("spec,overrides", [
    ("configs/cifar10_cnn.py", []),
    ("configs/cifar10_cnn.py:sgd", []),
    ("configs/cifar10_resnet.py:small", [("model.width", "4")]),
    ("configs/vit_cifar10.py", [("model.patch_size", "8")]),
])
def test_cifar10_configs_run_end_to_end_on_mock_data(mock_cifar10, tmp_path, spec, overrides):
  config = config_lib.load(os.path.join(REPO, spec))
  if config.model.name == "vit":  # a tiny ViT: explicit dimensions instead of the preset's
    with config.unlocked():
      config.model.update(dict(width=16, depth=1, num_heads=2, mlp_dim=32))
  config_lib.apply_overrides(config, [
      ("data.data_dir", mock_cifar10), ("batch_size", "16"), ("num_train_steps", "3"),
      ("log_every_steps", "1"), ("eval_every_steps", "3"), ("checkpoint_every_steps", "3"),
      ("optimizer.warmup_steps", "1")] + overrides)
  result = train.train_and_evaluate(config, str(tmp_path / "workdir"))
  assert result["step"] == 3 and np.isfinite(result["loss"])
  assert 0.0 <= result["accuracy"] <= 1.0
  record = json.loads((tmp_path / "workdir" / "run.json").read_text())
  assert "dataset" not in " ".join(record["op_specs"]["preprocess"])  # statistics recorded
  if spec.startswith("configs/cifar10_cnn.py"):  # the seeds' net, Keras' VALID padding
    record = json.loads((tmp_path / "workdir" / "run.json").read_text())
    assert record["param_count"] == 122_570
