"""Random-access sources: `len(source)` examples, `source[i]` one decoded example (a dict of
numpy arrays), `source.__getitems__(indices)` several at once.

Sources are what the streamed pipeline reads in its worker processes, so they pickle cheaply:
files are (re)opened lazily in each process.
"""

import numpy as np

from lepton_jax.data import records
from lepton_jax.data.prepare import tfds_catalog
from lepton_jax.errors import UserError


def split_window(example: dict, args: dict) -> dict:
  """A language-model window of seq_len + 1 tokens as model inputs and targets."""
  window = np.asarray(example["window"], np.int32)
  return {"tokens": window[:-1], "targets": window[1:],
          "target_bytes": np.asarray(example["target_bytes"], np.int32)}


def standardize(example: dict, args: dict) -> dict:
  """(x - mean) / std of one feature, with statistics fixed at preparation (training split)."""
  out = dict(example)
  key = args["key"]
  mean, std = np.asarray(args["mean"], np.float64), np.asarray(args["std"], np.float64)
  out[key] = ((example[key] - mean) / std).astype(np.float32)
  return out


# What a manifest's `read_transform` names: functions of (decoded example, transform_args).
READ_TRANSFORMS = {"": None, "lm_window": split_window, "standardize": standardize}


class RecordSource:
  """One split of a prepared dataset (see records.py)."""

  def __init__(self, manifest: records.Manifest, split: str):
    import grain
    self.manifest = manifest
    self.split = split
    paths = manifest.paths(split)
    if not paths:
      raise UserError(f"split {split!r} of {manifest.directory} holds no examples; prepare the "
                      "dataset with more data")
    self._records = grain.sources.ArrayRecordDataSource(paths)
    self._transform = READ_TRANSFORMS[manifest.read_transform]

  def __len__(self) -> int:
    return len(self._records)

  def _decode(self, record: bytes) -> dict:
    example = records.decode(self.manifest.features, record)
    if self._transform is not None:
      example = self._transform(example, self.manifest.transform_args)
    return example

  def __getitem__(self, index) -> dict:
    return self._decode(self._records[int(index)])

  def __getitems__(self, indices) -> list[dict]:
    return [self._decode(r) for r in self._records.__getitems__([int(i) for i in indices])]

  def __repr__(self) -> str:
    return f"RecordSource({self.manifest.directory!r}, {self.split!r})"


class ArraySource:
  """Examples held in memory: a dict of equally long arrays."""

  def __init__(self, arrays: dict[str, np.ndarray]):
    lengths = {len(v) for v in arrays.values()}
    if len(lengths) != 1:
      raise ValueError(f"arrays of different lengths: { {k: len(v) for k, v in arrays.items()} }")
    self.arrays = arrays
    self._length = lengths.pop()

  def __len__(self) -> int:
    return self._length

  def __getitem__(self, index) -> dict:
    return {k: v[index] for k, v in self.arrays.items()}

  def __getitems__(self, indices) -> list[dict]:
    return [self[i] for i in indices]


class TfdsSource:
  """A split of a tfds catalog dataset prepared in tfds' array_record format, read through
  `tfds.data_source` (tfds decodes with numpy/Pillow; it needs TensorFlow installed to import).

  String features (ids, file names) are dropped and 64-bit numbers narrowed to 32 bits, as
  JAX computes in 32 bits unless x64 is enabled.
  """

  def __init__(self, name: str, split: str, data_dir: str | None = None):
    self.name, self.split, self.data_dir = name, split, data_dir
    self._source = None

  def _open(self):
    if self._source is None:
      tfds = tfds_catalog.import_tfds()
      self._source = tfds.data_source(self.name, split=self.split, data_dir=self.data_dir,
                                      download=False,
                                      builder_kwargs={"file_format": tfds_catalog.FILE_FORMAT})
    return self._source

  def __getstate__(self):
    return {**self.__dict__, "_source": None}

  def __len__(self) -> int:
    return len(self._open())

  def __getitem__(self, index) -> dict:
    return {k: _narrow(np.asarray(v)) for k, v in self._open()[int(index)].items()
            if np.asarray(v).dtype.kind in "biuf"}

  def __getitems__(self, indices) -> list[dict]:
    return [self[i] for i in indices]


def _narrow(array: np.ndarray) -> np.ndarray:
  if array.dtype == np.int64:
    return array.astype(np.int32)
  if array.dtype == np.float64:
    return array.astype(np.float32)
  return array


def nbytes(source, count: int | None = None, example: int = 0) -> int:
  """The decoded size of `count` examples (default: all) of `source`, from example number
  `example` (examples of a source have one shape; a process reads one of its own)."""
  count = len(source) if count is None else count
  if not count:
    return 0
  return count * sum(np.asarray(v).nbytes for v in source[example].values())


def gather(source, indices) -> dict[str, np.ndarray]:
  """The examples at `indices`, stacked into arrays (e.g. a whole split for the on-device path)."""
  examples = source.__getitems__(list(indices)) if hasattr(source, "__getitems__") else [
      source[i] for i in indices]
  if not examples:
    raise ValueError("gather needs at least one index")
  return {k: np.stack([e[k] for e in examples]) for k in examples[0]}
