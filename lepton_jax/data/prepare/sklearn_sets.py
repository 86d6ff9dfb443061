"""scikit-learn's bundled real datasets (no download), prepared into records.

`digits`: 1,797 8x8 handwritten digits (UCI), stored as 0-255 grayscale images; splits `test`
(360), `validation` (287) and `train` (1,150). `breast_cancer`: 569 x 30 features of the
Wisconsin diagnostic dataset, binary; splits `train` (455) and `test` (114), read standardized
with the training split's mean and std. The splits are fixed: the same on every machine.
"""

import numpy as np

from lepton_jax.data import records
from lepton_jax.data.info import DatasetInfo
from lepton_jax.data.prepare import arrays

# The test split: a permutation seeded with _SPLIT_SEED, its first examples (as lepton_jax has
# always split these sets). Digits' validation split: of the remaining (sorted) examples, those
# a second permutation seeded with _VALIDATION_SEED puts first, 20% of them.
_SPLIT_SEED = 0
_VALIDATION_SEED = 1
_DIGITS_TEST = 360
_DIGITS_VALIDATION = 287
_CANCER_TEST = 114
VERSION = "v1"  # changes when a split rule does


def split_indices(n: int, test_size: int, validation_size: int = 0) -> dict[str, np.ndarray]:
  """Sorted example indices of each split of the fixed rule above."""
  perm = np.random.RandomState(_SPLIT_SEED).permutation(n)
  test, rest = np.sort(perm[:test_size]), np.sort(perm[test_size:])
  if not validation_size:
    return {"train": rest, "test": test}
  chosen = np.random.RandomState(_VALIDATION_SEED).permutation(len(rest))[:validation_size]
  held_out = np.zeros(len(rest), bool)
  held_out[chosen] = True
  return {"train": rest[~held_out], "validation": rest[held_out], "test": test}


class Digits(arrays.ArrayPreparer):
  """scikit-learn digits: 1,150 train / 287 validation / 360 test 8x8 grayscale images."""

  name = "digits"

  @classmethod
  def from_config(cls, data_config) -> "Digits":
    return cls()

  def slug(self) -> str:
    return VERSION

  def describe(self) -> str:
    return "scikit-learn's digits"

  def load(self):
    from sklearn.datasets import load_digits
    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    labels = digits.target.astype(np.int32)
    return {split: {"image": images[idx], "label": labels[idx]}
            for split, idx in split_indices(len(images), _DIGITS_TEST, _DIGITS_VALIDATION).items()}

  def features(self):
    return {"image": records.array_feature(np.uint8, (8, 8, 1)),
            "label": records.array_feature(np.int32)}

  def info(self) -> DatasetInfo:
    return DatasetInfo(name="digits", input_key="image", input_shape=(8, 8, 1),
                       input_dtype=np.uint8, num_classes=10,
                       label_names=tuple(str(i) for i in range(10)), split_sizes={},
                       input_description="8x8x1 uint8 grayscale, 0-255")


class BreastCancer(arrays.ArrayPreparer):
  """scikit-learn breast cancer: 455 train / 114 test, 30 features, binary, standardized."""

  name = "breast_cancer"

  @classmethod
  def from_config(cls, data_config) -> "BreastCancer":
    return cls()

  def slug(self) -> str:
    return VERSION

  def describe(self) -> str:
    return "scikit-learn's breast cancer set"

  def load(self):
    from sklearn.datasets import load_breast_cancer
    data = load_breast_cancer()
    features = data.data.astype(np.float32)
    labels = data.target.astype(np.int32)
    return {split: {"features": features[idx], "label": labels[idx]}
            for split, idx in split_indices(len(features), _CANCER_TEST).items()}

  def features(self):
    return {"features": records.array_feature(np.float32, (30,)),
            "label": records.array_feature(np.int32)}

  def read_transform(self) -> tuple[str, dict]:
    # Statistics of the training split only: the test split must not leak in.
    train = self.arrays()["train"]["features"].astype(np.float64)
    return "standardize", {"key": "features", "mean": train.mean(0).tolist(),
                           "std": (train.std(0) + 1e-8).tolist()}

  def info(self) -> DatasetInfo:
    return DatasetInfo(name="breast_cancer", input_key="features", input_shape=(30,),
                       input_dtype=np.float32, num_classes=2, label_names=("malignant", "benign"),
                       split_sizes={},
                       input_description="30 float features, standardized with training-split "
                                         "mean and std")
