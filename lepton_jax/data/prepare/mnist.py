"""MNIST from the four original IDX files (gzipped or not) in data.manual_dir.

Each file is checked before anything is written: its SHA-256 (uncompressed) must be the
original's unless data.verify_checksums is False, and its IDX header (magic, dimensions, shape)
must match. Splits `train` (60,000) and `test` (10,000), in the files' order.
"""

import gzip
import hashlib
import os

import numpy as np

from lepton_jax.data import records
from lepton_jax.data.info import DatasetInfo
from lepton_jax.data.prepare import arrays
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
  for candidate in (stem, stem + ".gz", stem.replace("-idx", ".idx"),
                    stem.replace("-idx", ".idx") + ".gz"):
    path = os.path.join(manual_dir, candidate)
    if os.path.isfile(path):
      return path
  raise UserError(f"MNIST manual dir {manual_dir} lacks {stem}[.gz]; it must hold the four "
                  "original IDX files (train-images, train-labels, t10k-images, t10k-labels)")


class Mnist(arrays.ArrayPreparer):
  """MNIST 60,000 train / 10,000 test 28x28 digits from the IDX files."""

  name = "mnist"

  def __init__(self, manual_dir: str, verify_checksums: bool = True):
    super().__init__()
    self.manual_dir = os.path.abspath(os.path.expanduser(str(manual_dir)))
    if not os.path.isdir(self.manual_dir):
      raise UserError(f"data.manual_dir {manual_dir!r} is not a directory; point it at the "
                      "folder holding the MNIST IDX files")
    self.verify = bool(verify_checksums)
    self.paths = {key: find_idx_file(self.manual_dir, stem)
                  for key, (stem, _, _) in IDX_FILES.items()}

  @classmethod
  def from_config(cls, data_config) -> "Mnist":
    if not data_config.get("manual_dir"):
      raise UserError("preparing mnist offline needs data.manual_dir: the folder holding the "
                      "four original IDX files")
    return cls(data_config.manual_dir, data_config.get("verify_checksums", True))

  def slug(self) -> str:
    return "idx" if self.verify else "idx_unverified"

  def fingerprint(self) -> str:
    # Checked files are the originals wherever they are; unchecked ones are known by their stats.
    stats = "" if self.verify else arrays.files_fingerprint(self.paths.values())
    return f"{super().fingerprint()}|{stats}"

  def describe(self) -> str:
    return f"MNIST from the IDX files in {self.manual_dir}"

  def load(self):
    data = {key: read_idx(self.paths[key], shape, sha if self.verify else None)
            for key, (_, shape, sha) in IDX_FILES.items()}
    return {split: {"image": data[f"{split}_images"][..., None],
                    "label": data[f"{split}_labels"].astype(np.int32)}
            for split in ("train", "test")}

  def features(self):
    return {"image": records.array_feature(np.uint8, (28, 28, 1)),
            "label": records.array_feature(np.int32)}

  def info(self) -> DatasetInfo:
    return DatasetInfo(name="mnist", input_key="image", input_shape=(28, 28, 1),
                       input_dtype=np.uint8, num_classes=10,
                       label_names=tuple(str(i) for i in range(10)), split_sizes={},
                       input_description="28x28x1 uint8 grayscale, 0-255")
