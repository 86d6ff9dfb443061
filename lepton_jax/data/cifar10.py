"""CIFAR-10 through tfds: downloaded as usual online, or built from the original
python-version archive in `config.data.manual_dir` offline.

    config.data.name = "cifar10"
    config.data.manual_dir = "/data/cifar"   # offline: holds cifar-10-python.tar.gz
                                             # (or its extracted cifar-10-batches-py/)

The offline builder writes the same tfds dataset (name `cifar10`, version
3.0.2, features id/image/label, label names from batches.meta, examples in the
original order) as tfds' own builder, so data prepared either way is found by
both, and by plain `tfds.load('cifar10')`. It is prepared once under
data.data_dir; later runs read the prepared copy.

With data.verify_checksums (default True) the archive must be the original
(MD5 c58f30108f718f92721af3b95e74349a) and hold 50,000 + 10,000 images; turn it
off for subsets or re-packed copies in the same pickle format.
"""

import hashlib
import io
import os
import pickle
import tarfile

import numpy as np
import tensorflow_datasets as tfds

from lepton_jax import registry
from lepton_jax.data import base, tfds_source
from lepton_jax.errors import UserError

ARCHIVE = "cifar-10-python.tar.gz"
ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"
FOLDER = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
META_FILE = "batches.meta"
SPLIT_SIZES = {"train": 50000, "test": 10000}


class _ArrayUnpickler(pickle.Unpickler):
  """Unpickles dicts, lists, strings and numpy arrays only (a pickle can run code)."""

  _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
              ("numpy", "ndarray"), ("numpy", "dtype"),
              ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
              ("_codecs", "encode")}  # how Python 3 writes bytes in protocol-2 pickles

  def find_class(self, module, name):
    if (module, name) in self._ALLOWED:
      return super().find_class(module, name)
    raise pickle.UnpicklingError(f"unexpected object {module}.{name} in a CIFAR batch file")


def _load_pickle(raw: bytes, where: str) -> dict:
  try:
    obj = _ArrayUnpickler(io.BytesIO(raw), encoding="bytes").load()
  except Exception as e:  # truncated, not a pickle, or unexpected content
    raise UserError(f"CIFAR-10 file {where} is corrupt or not a python-version CIFAR batch "
                    f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                    f"download {ARCHIVE} again") from e
  if not isinstance(obj, dict):
    raise UserError(f"CIFAR-10 file {where} does not hold a dict; is it a python-version batch?")
  # Python 2 pickles load with bytes keys; re-pickled copies may have str keys.
  return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


class _Source:
  """The batch files of a manual dir: an archive, the extracted folder, or loose files."""

  def __init__(self, manual_dir: str, verify_checksums: bool):
    self.manual_dir = manual_dir
    self.verify = verify_checksums
    archive = os.path.join(manual_dir, ARCHIVE)
    folders = [os.path.join(manual_dir, FOLDER), manual_dir]
    self.archive = archive if os.path.isfile(archive) else None
    self.folder = next((f for f in folders if os.path.isfile(os.path.join(f, TEST_FILE))), None)
    if self.archive is None and self.folder is None:
      raise UserError(f"CIFAR-10 manual dir {manual_dir} has neither {ARCHIVE} nor an extracted "
                      f"{FOLDER}/ folder; download the python version from "
                      "https://www.cs.toronto.edu/~kriz/cifar.html into it")
    self._members: dict[str, bytes] | None = None

  def read(self, name: str) -> tuple[bytes, str]:
    if self.folder is not None and self.archive is None:
      path = os.path.join(self.folder, name)
      if not os.path.isfile(path):
        raise UserError(f"CIFAR-10 folder {self.folder} lacks {name}; it must hold "
                        f"{', '.join(TRAIN_FILES + (TEST_FILE, META_FILE))}")
      with open(path, "rb") as f:
        return f.read(), path
    if self._members is None:
      self._members = self._read_archive()
    where = f"{self.archive}:{FOLDER}/{name}"
    if name not in self._members:
      raise UserError(f"{self.archive} lacks {FOLDER}/{name}; is it the python version of "
                      "CIFAR-10 (not the binary or MATLAB one)?")
    return self._members[name], where

  def _read_archive(self) -> dict[str, bytes]:
    if self.verify:
      md5 = hashlib.md5()
      with open(self.archive, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
          md5.update(chunk)
      if md5.hexdigest() != ARCHIVE_MD5:
        raise UserError(f"{self.archive} does not match the original's MD5 {ARCHIVE_MD5} "
                        "(corrupt or incomplete download): download it again, or set "
                        "--config.data.verify_checksums=false for a re-packed copy")
    members = {}
    try:
      with tarfile.open(self.archive, "r:*") as tar:
        for member in tar.getmembers():
          base_name = os.path.basename(member.name)
          if member.isfile() and base_name in TRAIN_FILES + (TEST_FILE, META_FILE):
            members[base_name] = tar.extractfile(member).read()
    except (tarfile.TarError, OSError, EOFError) as e:
      detail = str(e).splitlines()[0].rstrip(":") if str(e) else type(e).__name__
      raise UserError(f"cannot read {self.archive} ({detail}); the archive is corrupt or "
                      "truncated: download it again") from e
    return members


def read_batch(source: _Source, name: str) -> tuple[np.ndarray, np.ndarray]:
  """(images (N, 32, 32, 3) uint8, labels (N,) int64) of one batch file."""
  raw, where = source.read(name)
  batch = _load_pickle(raw, where)
  if "data" not in batch or "labels" not in batch:
    raise UserError(f"CIFAR-10 file {where} lacks 'data' or 'labels'; is it a CIFAR-10 "
                    "(not CIFAR-100) python-version batch?")
  data = np.asarray(batch["data"])
  labels = np.asarray(batch["labels"], np.int64)
  if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
    raise UserError(f"CIFAR-10 file {where} holds data of shape {data.shape} ({data.dtype}) and "
                    f"{len(labels)} labels; expected (N, 3072) uint8 and N labels")
  if len(labels) and (labels.min() < 0 or labels.max() > 9):
    raise UserError(f"CIFAR-10 file {where} has labels outside 0-9")
  # Rows are the red, green and blue 32x32 planes one after the other.
  return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


class Cifar10FromPython(tfds.image_classification.Cifar10, skip_registration=True):
  """tfds' CIFAR-10, generated from the python-version archive of a manual dir."""

  name = "cifar10"
  manual_dir: str = ""
  verify_checksums: bool = True

  def _split_generators(self, dl_manager):
    source = _Source(self.manual_dir, self.verify_checksums)
    raw, where = source.read(META_FILE)
    names = _load_pickle(raw, where).get("label_names")
    if names is None or len(names) != 10:
      raise UserError(f"CIFAR-10 file {where} does not list the 10 label names")
    self.info.features["label"].names = [n.decode() if isinstance(n, bytes) else str(n)
                                         for n in names]
    splits = {"train": [read_batch(source, f) for f in TRAIN_FILES],
              "test": [read_batch(source, TEST_FILE)]}
    for split, batches in splits.items():
      n = sum(len(labels) for _, labels in batches)
      if n == 0:
        raise UserError(f"the CIFAR-10 {split} files in {self.manual_dir} hold no images")
      if self.verify_checksums and n != SPLIT_SIZES[split]:
        raise UserError(f"the CIFAR-10 {split} files in {self.manual_dir} hold {n} images, not "
                        f"{SPLIT_SIZES[split]}: incomplete copy? (or set "
                        "--config.data.verify_checksums=false for a subset)")
    return {split: self._generate_from(split + "_", batches) for split, batches in splits.items()}

  def _generate_from(self, prefix, batches):
    index = 0  # the official builder's keys and ids, so both write the same dataset
    for images, labels in batches:
      for image, label in zip(images, labels):
        yield index, {"id": f"{prefix}{index:05d}", "image": image, "label": int(label)}
        index += 1


@registry.register("dataset", "cifar10")
class Cifar10(base.Dataset):
  """CIFAR-10 50,000 train / 10,000 test 32x32 colour images (tfds; offline via data.manual_dir)."""

  defaults = {"verify_checksums": True}  # the original files' checksums (off for re-packed copies)

  def builder(self):
    return tfds_source.offline_or_download(self.config, "cifar10", Cifar10FromPython, ARCHIVE)

  def info(self):
    return base.image_info("cifar10", self.builder(), "32x32x3 uint8 RGB, 0-255")

  def host_transform(self, arrays):
    # 'id' is a string feature: useful in tfds, but not something to put on a device.
    return {k: v for k, v in arrays.items() if k != "id"}
