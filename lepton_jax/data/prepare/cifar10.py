"""CIFAR-10 from the original python-version archive in data.manual_dir.

data.manual_dir holds cifar-10-python.tar.gz or its extracted cifar-10-batches-py/ folder. With
data.verify_checksums (default True) the archive must be the original (MD5
c58f30108f718f92721af3b95e74349a) and hold 50,000 + 10,000 images; turn it off for subsets or
re-packed copies in the same pickle format. The batches are unpickled with a restricted
unpickler (arrays, lists, strings and dicts only: a pickle can run code). Splits `train` and
`test`, in the files' order; label names from batches.meta.
"""

import hashlib
import io
import os
import pickle
import tarfile

import numpy as np

from lepton_jax.data import records
from lepton_jax.data.info import DatasetInfo
from lepton_jax.data.prepare import arrays
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


def load_pickle(raw: bytes, where: str) -> dict:
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


def _md5(path: str) -> str:
  md5 = hashlib.md5()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      md5.update(chunk)
  return md5.hexdigest()


def read_members(manual_dir: str, verify: bool) -> dict[str, tuple[bytes, str]]:
  """{file name: (bytes, where)} of the batch files of an archive or an extracted folder."""
  wanted = TRAIN_FILES + (TEST_FILE, META_FILE)
  archive = os.path.join(manual_dir, ARCHIVE)
  if os.path.isfile(archive):
    if verify and _md5(archive) != ARCHIVE_MD5:
      raise UserError(f"{archive} does not match the original's MD5 {ARCHIVE_MD5} (corrupt or "
                      "incomplete download): download it again, or set "
                      "--config.data.verify_checksums=false for a re-packed copy")
    members = {}
    try:
      with tarfile.open(archive, "r:*") as tar:
        for member in tar.getmembers():
          name = os.path.basename(member.name)
          if member.isfile() and name in wanted:
            members[name] = (tar.extractfile(member).read(), f"{archive}:{FOLDER}/{name}")
    except (tarfile.TarError, OSError, EOFError) as e:
      detail = str(e).splitlines()[0].rstrip(":") if str(e) else type(e).__name__
      raise UserError(f"cannot read {archive} ({detail}); the archive is corrupt or truncated: "
                      "download it again") from e
    missing = [n for n in wanted if n not in members]
    if missing:
      raise UserError(f"{archive} lacks {FOLDER}/{missing[0]}; is it the python version of "
                      "CIFAR-10 (not the binary or MATLAB one)?")
    return members
  folder = next((f for f in (os.path.join(manual_dir, FOLDER), manual_dir)
                 if os.path.isfile(os.path.join(f, TEST_FILE))), None)
  if folder is None:
    raise UserError(f"CIFAR-10 manual dir {manual_dir} has neither {ARCHIVE} nor an extracted "
                    f"{FOLDER}/ folder; download the python version from "
                    "https://www.cs.toronto.edu/~kriz/cifar.html into it")
  members = {}
  for name in wanted:
    path = os.path.join(folder, name)
    if not os.path.isfile(path):
      raise UserError(f"CIFAR-10 folder {folder} lacks {name}; it must hold {', '.join(wanted)}")
    with open(path, "rb") as f:
      members[name] = (f.read(), path)
  return members


def read_batch(raw: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
  """(images (N, 32, 32, 3) uint8, labels (N,) int32) of one batch file."""
  batch = load_pickle(raw, where)
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
  return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels.astype(np.int32)


class Cifar10(arrays.ArrayPreparer):
  """CIFAR-10 50,000 train / 10,000 test 32x32 colour images from the python-version archive."""

  name = "cifar10"

  def __init__(self, manual_dir: str, verify_checksums: bool = True):
    super().__init__()
    self.manual_dir = os.path.abspath(os.path.expanduser(str(manual_dir)))
    if not os.path.isdir(self.manual_dir):
      raise UserError(f"data.manual_dir {manual_dir!r} is not a directory; point it at the "
                      f"folder holding {ARCHIVE}")
    self.verify = bool(verify_checksums)
    self._label_names = None

  @classmethod
  def from_config(cls, data_config) -> "Cifar10":
    if not data_config.get("manual_dir"):
      raise UserError(f"preparing cifar10 offline needs data.manual_dir: the folder holding "
                      f"{ARCHIVE}")
    return cls(data_config.manual_dir, data_config.get("verify_checksums", True))

  def _sources(self) -> list[str]:
    archive = os.path.join(self.manual_dir, ARCHIVE)
    if os.path.isfile(archive):
      return [archive]
    return sorted(os.path.join(d, f) for d in (self.manual_dir, os.path.join(self.manual_dir, FOLDER))
                  if os.path.isdir(d) for f in os.listdir(d)
                  if f in TRAIN_FILES + (TEST_FILE, META_FILE))

  def slug(self) -> str:
    return "python" if self.verify else "python_unverified"

  def fingerprint(self) -> str:
    stats = "" if self.verify else arrays.files_fingerprint(self._sources())
    return f"{super().fingerprint()}|{stats}"

  def describe(self) -> str:
    return f"CIFAR-10 from {self.manual_dir}"

  def load(self):
    members = read_members(self.manual_dir, self.verify)
    names = load_pickle(*members[META_FILE]).get("label_names")
    if names is None or len(names) != 10:
      raise UserError(f"CIFAR-10 file {members[META_FILE][1]} does not list the 10 label names")
    self._label_names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
    out = {}
    for split, files in (("train", TRAIN_FILES), ("test", (TEST_FILE,))):
      batches = [read_batch(*members[f]) for f in files]
      images = np.concatenate([b[0] for b in batches])
      if len(images) == 0:
        raise UserError(f"the CIFAR-10 {split} files in {self.manual_dir} hold no images")
      if self.verify and len(images) != SPLIT_SIZES[split]:
        raise UserError(f"the CIFAR-10 {split} files in {self.manual_dir} hold {len(images)} "
                        f"images, not {SPLIT_SIZES[split]}: incomplete copy? (or set "
                        "--config.data.verify_checksums=false for a subset)")
      out[split] = {"image": images, "label": np.concatenate([b[1] for b in batches])}
    return out

  def features(self):
    return {"image": records.array_feature(np.uint8, (32, 32, 3)),
            "label": records.array_feature(np.int32)}

  def info(self) -> DatasetInfo:
    self.arrays()  # the label names come from the archive
    return DatasetInfo(name="cifar10", input_key="image", input_shape=(32, 32, 3),
                       input_dtype=np.uint8, num_classes=10, label_names=self._label_names,
                       split_sizes={}, input_description="32x32x3 uint8 RGB, 0-255")
