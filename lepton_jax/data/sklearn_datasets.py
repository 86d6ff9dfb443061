"""scikit-learn's bundled real datasets, exposed through tfds (no download).

`digits`: 1,797 8x8 handwritten digits (UCI), stored as 0-255 grayscale images.
`breast_cancer`: 569 x 30 features of the Wisconsin diagnostic dataset, binary.
Both get a fixed train/test split, the same on every machine.
"""

import functools

import numpy as np
import tensorflow_datasets as tfds

from lepton_jax import registry
from lepton_jax.data import base, tfds_source
from lepton_jax.data.info import DatasetInfo

# The fixed splits: a seeded permutation, the first `TEST_SIZE` examples for test.
_SPLIT_SEED = 0
_DIGITS_TEST = 360
_CANCER_TEST = 114


def _split_indices(n: int, test_size: int, split: str) -> np.ndarray:
  perm = np.random.RandomState(_SPLIT_SEED).permutation(n)
  return np.sort(perm[:test_size] if split == "test" else perm[test_size:])


class DigitsBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """scikit-learn's handwritten digits as 8x8x1 uint8 images (0-16 scaled to 0-255)."""

  name = "digits"
  VERSION = tfds.core.Version("1.0.0")

  def _info(self):
    return self.dataset_info_from_configs(
        description=self.__doc__,
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(8, 8, 1)),
            "label": tfds.features.ClassLabel(num_classes=10),
        }),
        supervised_keys=("image", "label"),
    )

  def _split_generators(self, dl_manager):
    return {split: self._generate_examples(split) for split in ("train", "test")}

  def _generate_examples(self, split):
    from sklearn.datasets import load_digits
    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    for i in _split_indices(len(images), _DIGITS_TEST, split):
      yield int(i), {"image": images[i], "label": int(digits.target[i])}


class BreastCancerBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """scikit-learn's Wisconsin breast cancer features (30 floats), label 1 = benign."""

  name = "breast_cancer"
  VERSION = tfds.core.Version("1.0.0")

  def _info(self):
    return self.dataset_info_from_configs(
        description=self.__doc__,
        features=tfds.features.FeaturesDict({
            "features": tfds.features.Tensor(shape=(30,), dtype=np.float32),
            "label": tfds.features.ClassLabel(names=["malignant", "benign"]),
        }),
        supervised_keys=("features", "label"),
    )

  def _split_generators(self, dl_manager):
    return {split: self._generate_examples(split) for split in ("train", "test")}

  def _generate_examples(self, split):
    from sklearn.datasets import load_breast_cancer
    data = load_breast_cancer()
    features = data.data.astype(np.float32)
    for i in _split_indices(len(features), _CANCER_TEST, split):
      yield int(i), {"features": features[i], "label": int(data.target[i])}


def _prepared(builder_cls, data_config):
  builder = builder_cls(data_dir=tfds_source.data_dir(data_config))
  tfds_source.prepare(builder)
  return builder


@registry.register("dataset", "digits")
class Digits(base.Dataset):
  """scikit-learn digits: 1,437 train / 360 test 8x8 grayscale images, 10 classes."""

  def builder(self):
    return _prepared(DigitsBuilder, self.config)

  def info(self):
    return base.image_info("digits", self.builder(), "8x8x1 uint8 grayscale, 0-255")


@registry.register("dataset", "breast_cancer")
class BreastCancer(base.Dataset):
  """scikit-learn breast cancer: 455 train / 114 test, 30 features, binary, standardized."""

  def builder(self):
    return _prepared(BreastCancerBuilder, self.config)

  def info(self):
    builder = self.builder()
    return DatasetInfo(
        name="breast_cancer", input_key="features", input_shape=(30,), input_dtype=np.float32,
        num_classes=2, label_names=("malignant", "benign"),
        split_sizes={k: v.num_examples for k, v in builder.info.splits.items()},
        input_description="30 float features, standardized with training-split mean and std")

  @functools.cached_property
  def _train_statistics(self):
    train = tfds_source.read_split(self.builder(), "train")["features"].astype(np.float64)
    return train.mean(0), train.std(0) + 1e-8

  def host_transform(self, arrays):
    # Statistics of the training split only: the test split must not leak in.
    mean, std = self._train_statistics
    out = dict(arrays)
    out["features"] = ((arrays["features"] - mean) / std).astype(np.float32)
    return out
