"""MNIST IDX files, the CIFAR-10 archive, scikit-learn's sets and the tfds catalog, prepared
into records (or read through tfds.data_source) and read back."""

import io
import os
import pickle
import tarfile

import ml_collections
import numpy as np
import pytest

from lepton_jax.data import base, sources
from lepton_jax.data.prepare import cifar10, core, mnist, sklearn_sets
from lepton_jax.errors import UserError


def read_all(manifest, split):
  source = sources.RecordSource(manifest, split)
  return sources.gather(source, range(len(source)))


def test_mnist_checks_its_files(tmp_path):
  (tmp_path / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03" + b"\x00" * 20)
  with pytest.raises(UserError, match="lacks train-labels-idx1-ubyte"):
    mnist.Mnist(str(tmp_path))


def test_digits_get_a_validation_split_carved_from_train(tmp_path):
  manifest = core.ensure(sklearn_sets.Digits(), str(tmp_path), verbose=False)
  sizes = manifest.dataset_info().split_sizes
  assert sizes == {"train": 1150, "validation": 287, "test": 360}
  old = sklearn_sets.split_indices(1797, 360)
  new = sklearn_sets.split_indices(1797, 360, 287)
  np.testing.assert_array_equal(new["test"], old["test"])  # the test split is today's
  assert sorted(np.concatenate([new["train"], new["validation"]])) == sorted(old["train"])
  assert not set(new["train"]) & set(new["validation"])
  from sklearn.datasets import load_digits
  digits = load_digits()
  got = read_all(manifest, "validation")
  np.testing.assert_array_equal(got["label"], digits.target[new["validation"]])
  np.testing.assert_array_equal(
      got["image"][..., 0], np.round(digits.images[new["validation"]] * 255 / 16).astype(np.uint8))


def test_breast_cancer_is_read_standardized_by_training_statistics(tmp_path):
  manifest = core.ensure(sklearn_sets.BreastCancer(), str(tmp_path), verbose=False)
  train, test = read_all(manifest, "train"), read_all(manifest, "test")
  assert train["features"].dtype == np.float32 and len(test["label"]) == 114
  np.testing.assert_allclose(train["features"].mean(0), 0, atol=1e-5)
  np.testing.assert_allclose(train["features"].std(0), 1, atol=1e-4)
  assert np.abs(test["features"].mean(0)).max() > 1e-3  # test statistics did not leak in


def fake_cifar(folder, per_file=3, n_test=5):
  rng = np.random.default_rng(0)
  files = {f"data_batch_{i}": {b"labels": rng.integers(0, 10, per_file).tolist(),
                               b"data": rng.integers(0, 256, (per_file, 3072), dtype=np.uint8)}
           for i in range(1, 6)}
  files["test_batch"] = {b"labels": rng.integers(0, 10, n_test).tolist(),
                         b"data": rng.integers(0, 256, (n_test, 3072), dtype=np.uint8)}
  files["batches.meta"] = {b"label_names": [f"c{i}".encode() for i in range(10)]}
  with tarfile.open(os.path.join(folder, cifar10.ARCHIVE), "w:gz") as tar:
    for name, obj in files.items():
      raw = pickle.dumps(obj, protocol=2)
      member = tarfile.TarInfo(f"{cifar10.FOLDER}/{name}")
      member.size = len(raw)
      tar.addfile(member, io.BytesIO(raw))
  return files


def test_cifar10_from_the_python_archive(tmp_path):
  files = fake_cifar(tmp_path)
  config = ml_collections.ConfigDict({"name": "cifar10", "manual_dir": str(tmp_path),
                                      "verify_checksums": False})
  manifest = core.ensure(base.build(config).preparer(), str(tmp_path / "data"), verbose=False)
  info = manifest.dataset_info()
  assert info.split_sizes == {"train": 15, "test": 5} and info.label_names[3] == "c3"
  got = read_all(manifest, "train")
  data = np.concatenate([files[f"data_batch_{i}"][b"data"] for i in range(1, 6)])
  np.testing.assert_array_equal(got["image"], data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
  with pytest.raises(UserError, match="does not match the original's MD5"):
    core.ensure(cifar10.Cifar10(str(tmp_path)), str(tmp_path / "data"), verbose=False)


def test_a_tfds_catalog_dataset_is_read_through_its_data_source():
  import tensorflow_datasets as tfds
  from lepton_jax.data import order, stream
  with tfds.testing.mock_data(num_examples=12):
    source = sources.TfdsSource("mnist", "train")
    assert len(source) == 12
    example = source[3]
    assert example["image"].shape == (28, 28, 1) and example["label"].dtype == np.int32
    layout = order.ShardLayout.create(0, 0, 1)
    seen = [int(x) for b in stream.eval_batches(source, layout, 5) for x in b["label"][b["mask"]]]
    assert seen == [int(source[i]["label"]) for i in range(12)]
