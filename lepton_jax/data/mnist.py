"""MNIST through tfds: downloaded as usual online, or built from the original
IDX files in `config.data.manual_dir` offline.

The offline builder writes the same tfds dataset (name `mnist`, version 3.0.1,
same features) as tfds' own builder, so data prepared either way is found by
both, and by plain `tfds.load('mnist')`.
"""

import gzip
import hashlib
import os

import numpy as np
import tensorflow_datasets as tfds

from lepton_jax import registry
from lepton_jax.data import base, tfds_source
from lepton_jax.errors import UserError

# SHA-256 of the *uncompressed* original IDX files (their MD5 sums are the published ones).
IDX_FILES = {
    "train_images": ("train-images-idx3-ubyte", (60000, 28, 28),
                     "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
    "train_labels": ("train-labels-idx1-ubyte", (60000,),
                     "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
    "test_images": ("t10k-images-idx3-ubyte", (10000, 28, 28),
                    "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
    "test_labels": ("t10k-labels-idx1-ubyte", (10000,),
                    "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
}


def read_idx(path: str, expected_shape: tuple, expected_sha256: str | None) -> np.ndarray:
  """Reads one IDX file (gzipped or not), checking checksum, magic and shape."""
  opener = gzip.open if path.endswith(".gz") else open
  try:
    with opener(path, "rb") as f:
      raw = f.read()
  except (OSError, EOFError) as e:
    raise UserError(f"cannot read MNIST file {path}: {e}; is it a (gzipped) IDX file?") from e
  if expected_sha256 and hashlib.sha256(raw).hexdigest() != expected_sha256:
    raise UserError(f"MNIST file {path} does not match the original's checksum "
                    "(corrupt or a different dataset): download the original IDX files again")
  ndim = len(expected_shape)
  if len(raw) < 4 + 4 * ndim or raw[:2] != b"\x00\x00" or raw[2] != 0x08 or raw[3] != ndim:
    raise UserError(f"{path} is not an IDX file of unsigned bytes with {ndim} dimension(s)")
  shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
  if shape != tuple(expected_shape):
    raise UserError(f"{path} holds shape {shape}, expected {tuple(expected_shape)}")
  data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
  if data.size != int(np.prod(shape)):
    raise UserError(f"{path} is truncated: {data.size} values for shape {shape}")
  return data.reshape(shape)


def find_idx_file(manual_dir: str, stem: str) -> str:
  for candidate in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
    path = os.path.join(manual_dir, candidate)
    if os.path.isfile(path):
      return path
  raise UserError(f"MNIST manual dir {manual_dir} lacks {stem}[.gz]; it must hold the four "
                  "original IDX files (train-images, train-labels, t10k-images, t10k-labels)")


class MnistFromIdx(tfds.image_classification.MNIST, skip_registration=True):
  """tfds' MNIST, generated from the IDX files of a manual dir instead of a download."""

  name = "mnist"
  manual_dir: str = ""
  verify_checksums: bool = True

  def _split_generators(self, dl_manager):
    paths = {key: find_idx_file(self.manual_dir, stem) for key, (stem, _, _) in IDX_FILES.items()}
    arrays = {key: read_idx(paths[key], shape, sha if self.verify_checksums else None)
              for key, (_, shape, sha) in IDX_FILES.items()}
    return {
        "train": self._generate_examples_from(arrays["train_images"], arrays["train_labels"]),
        "test": self._generate_examples_from(arrays["test_images"], arrays["test_labels"]),
    }

  def _generate_examples_from(self, images, labels):
    for index, (image, label) in enumerate(zip(images, labels)):
      yield index, {"image": image[..., None], "label": int(label)}


@registry.register("dataset", "mnist")
class Mnist(base.Dataset):
  """MNIST 60,000 train / 10,000 test 28x28 digits (tfds; offline via data.manual_dir)."""

  defaults = {"verify_checksums": True}  # the original files' checksums (off for re-packed copies)

  def builder(self):
    return tfds_source.offline_or_download(self.config, "mnist", MnistFromIdx,
                                           "the MNIST IDX files")

  def info(self):
    return base.image_info("mnist", self.builder(), "28x28x1 uint8 grayscale, 0-255")
