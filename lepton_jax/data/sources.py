"""Random-access sources: `len(source)` examples, `source[i]` one decoded example (a dict of
numpy arrays), `source.__getitems__(indices)` several at once and, where it is faster than
stacking examples, `source.batch(indices)`: the examples stacked into arrays (`gather` uses
whichever a source has).

Sources are what the streamed pipeline reads in its worker processes, so they pickle cheaply:
files are (re)opened lazily in each process.
"""

import os
import threading

import numpy as np

from lepton_jax.data import records
from lepton_jax.data.prepare import tfds_catalog
from lepton_jax.errors import UserError


def split_window(example: dict, args: dict) -> dict:
  """A language-model window of seq_len + 1 tokens as model inputs and targets (of one example
  or a batch of them)."""
  window = np.asarray(example["window"], np.int32)
  return {"tokens": window[..., :-1], "targets": window[..., 1:],
          "target_bytes": np.asarray(example["target_bytes"], np.int32)}


def standardize(example: dict, args: dict) -> dict:
  """(x - mean) / std of one feature, with statistics fixed at preparation (training split);
  of one example or a batch."""
  out = dict(example)
  key = args["key"]
  mean, std = np.asarray(args["mean"], np.float64), np.asarray(args["std"], np.float64)
  out[key] = ((example[key] - mean) / std).astype(np.float32)
  return out


# What a manifest's `read_transform` names: functions of (decoded example, transform_args).
READ_TRANSFORMS = {"": None, "lm_window": split_window, "standardize": standardize}


# Records are read one by one at random; ArrayRecord's default reader spreads such reads over
# a thread pool, which costs more than it saves for records of a few KiB (measured: 2.1-2.4 ms
# for 128 MNIST records, 0.8-0.9 ms with one thread, readahead off).
READER_OPTIONS = "readahead_buffer_size:0,max_parallelism:0"
READ_BUFFER_BYTES = 4096


class RecordSource:
  """One split of a prepared dataset (see records.py), read with ArrayRecord's reader."""

  def __init__(self, manifest: records.Manifest, split: str, cache_bytes: int = 0):
    self.manifest = manifest
    self.split = split
    files = [(name, count) for name, count in manifest.split_files(split) if count]
    if not files:
      raise UserError(f"split {split!r} of {manifest.directory} holds no examples; prepare the "
                      "dataset with more data")
    self._paths = [os.path.join(manifest.directory, name) for name, _ in files]
    self._starts = np.cumsum([0] + [count for _, count in files])
    self._transform = READ_TRANSFORMS[manifest.read_transform]
    self._readers, self._lock = {}, threading.Lock()
    sizes = [os.path.getsize(p) for p in self._paths]
    # A split that small is read once, whole, into memory (encoded, as stored): a read at
    # random then costs a list look-up instead of a file read (~7 us a record).
    self.cached = 0 < sum(sizes) <= cache_bytes
    self._cache = {}

  def __getstate__(self):
    return {**self.__dict__, "_readers": {}, "_lock": None, "_cache": {}}

  def __setstate__(self, state):
    self.__dict__.update(state, _lock=threading.Lock())

  def __len__(self) -> int:
    return int(self._starts[-1])

  def _reader(self, file: int):
    reader = self._readers.get(file)
    if reader is None:
      with self._lock:  # Grain's threads share the source: one reader per file
        reader = self._readers.get(file)
        if reader is None:
          from array_record.python.array_record_module import ArrayRecordReader
          reader = ArrayRecordReader(self._paths[file], READER_OPTIONS,
                                     file_reader_buffer_size=READ_BUFFER_BYTES)
          self._readers[file] = reader
    return reader

  def _cached(self, file: int) -> list[bytes]:
    records_ = self._cache.get(file)
    if records_ is None:
      with self._lock:
        records_ = self._cache.get(file)
        if records_ is None:
          from array_record.python.array_record_module import ArrayRecordReader
          reader = ArrayRecordReader(self._paths[file], "readahead_buffer_size:16777216")
          records_ = reader.read(0, int(self._starts[file + 1] - self._starts[file]))
          reader.close()
          self._cache[file] = records_
    return records_

  def records(self, indices) -> list[bytes]:
    """The raw records at `indices` (split positions), in that order."""
    indices = np.asarray(indices, np.int64).reshape(-1)
    if len(indices) and (indices.min() < 0 or indices.max() >= len(self)):
      raise IndexError(f"record index out of range [0, {len(self)})")
    files = np.searchsorted(self._starts, indices, side="right") - 1
    out = [b""] * len(indices)
    for file in np.unique(files):
      rows = np.flatnonzero(files == file)
      positions = (indices[rows] - self._starts[file]).tolist()
      if self.cached:
        stored = self._cached(int(file))
        found = [stored[p] for p in positions]
      else:
        found = self._reader(int(file)).read(positions)
      for row, record in zip(rows, found):
        out[row] = record
    return out

  def _finish(self, decoded: dict) -> dict:
    if self._transform is None:
      return decoded
    return self._transform(decoded, self.manifest.transform_args)

  def __getitem__(self, index) -> dict:
    return self._finish(records.decode(self.manifest.features, self.records([int(index)])[0]))

  def __getitems__(self, indices) -> list[dict]:
    return [self._finish(records.decode(self.manifest.features, r))
            for r in self.records(indices)]

  def batch(self, indices) -> dict[str, np.ndarray]:
    """The examples at `indices`, decoded straight into stacked arrays."""
    return self._finish(records.decode_batch(self.manifest.features, self.records(indices)))

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

  def batch(self, indices) -> dict[str, np.ndarray]:
    indices = np.asarray(indices, np.int64)
    return {k: v[indices] for k, v in self.arrays.items()}


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


def decodes_images(source) -> bool:
  """Whether reading an example decodes an image (the work worker processes are for); array
  features and examples held in memory cost little more than a copy."""
  if isinstance(source, RecordSource):
    return any(f.kind == "image" for f in source.manifest.features.values())
  if hasattr(source, "parts"):  # a sliced split
    return any(decodes_images(part) for part, _, _ in source.parts)
  return isinstance(source, TfdsSource)


def nbytes(source, count: int | None = None, example: int = 0) -> int:
  """The decoded size of `count` examples (default: all) of `source`, from example number
  `example` (examples of a source have one shape; a process reads one of its own)."""
  count = len(source) if count is None else count
  if not count:
    return 0
  return count * sum(np.asarray(v).nbytes for v in source[example].values())


def gather(source, indices) -> dict[str, np.ndarray]:
  """The examples at `indices`, stacked into arrays (e.g. a whole split for the on-device path)."""
  indices = [int(i) for i in indices]
  if not indices:
    raise ValueError("gather needs at least one index")
  if hasattr(source, "batch"):
    return source.batch(indices)
  examples = source.__getitems__(indices) if hasattr(source, "__getitems__") else [
      source[i] for i in indices]
  return {k: np.stack([e[k] for e in examples]) for k in examples[0]}
