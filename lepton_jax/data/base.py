"""The dataset interface: a registered class turns `config.data` into a description of its
examples (`info`) and random-access splits (`source`).

    @registry.register("dataset", "iris")
    class Iris(Dataset):
      def info(self):                 # what an example is, the classes, the split sizes
        return DatasetInfo("iris", "features", input_shape=(4,), ...)
      def read(self, split):          # small data: a whole split as arrays, or instead
        return {"features": ..., "label": ...}
      # def source(self, split):      # any random-access source: len(s), s[i] -> a dict

A source has `len(source)` examples and `source[i]` is one example, a dict of numpy arrays
(the input key, the label key, anything else numeric); `source.__getitems__(indices)`, when
defined, reads several at once. Worker processes get a pickled copy, so a source opens its
files lazily. A dataset never shards, shuffles or batches: the pipeline does that by index
(order.py, stream.py), the same way for every dataset. Split names may carry tfds' slices
('test[:1000]', 'train[90%:]'): `split_source` resolves them (splits.py).

`defaults` holds the dataset's own keys of config.data with their defaults (the one place
they are written): `self.config` is config.data with those filled in, and a key of config.data
that is neither common (config_defaults) nor the dataset's own is an error, as a typo must be.

Built-in formats are `RecordDataset`s: prepared once into ArrayRecord files (records.py,
prepare/) under data.data_dir, then read by index.
"""

import difflib
import functools
import os
from typing import Iterator

import jax
import ml_collections
import numpy as np

from lepton_jax import registry
from lepton_jax.config_defaults import base_config
from lepton_jax.data import records, sources, splits
from lepton_jax.data.info import DatasetInfo
from lepton_jax.errors import UserError

__all__ = ["Dataset", "DatasetInfo", "RecordDataset", "build", "data_dir"]


def _once_per_instance(method):
  attr = f"_cached_{method.__name__}"

  @functools.wraps(method)
  def wrapper(self):
    if attr not in self.__dict__:
      self.__dict__[attr] = method(self)
    return self.__dict__[attr]

  return wrapper


class Dataset:
  """A dataset: `info()` and `source(split)` (or `read(split)`, for data that fits in memory).

  `recorded` is the DatasetInfo a trained run recorded in its run.json: predict and export
  build the dataset with it, so that what they need (the tokenizer, a host transform) comes
  from the record rather than from the data.
  """

  defaults: dict = {}

  # Computed once per instance: preparing or opening data costs seconds, and the pipeline
  # asks for them repeatedly.
  _CACHED = ("info", "manifest")

  def __init_subclass__(cls, **kwargs):
    super().__init_subclass__(**kwargs)
    for name in cls._CACHED:
      if name in cls.__dict__:
        setattr(cls, name, _once_per_instance(cls.__dict__[name]))

  def __init__(self, data_config, recorded: DatasetInfo | None = None):
    self.config = with_defaults(data_config, type(self).defaults, type(self).__name__)
    self.recorded = recorded

  def info(self) -> DatasetInfo:
    raise NotImplementedError(f"{type(self).__name__} must define info()")

  def source(self, split: str):
    """The random-access examples of split `split` (a plain name)."""
    if type(self).read is Dataset.read:
      raise NotImplementedError(f"{type(self).__name__} must define source(split) or read(split)")
    return sources.ArraySource(self.read(split))

  def read(self, split: str) -> dict[str, np.ndarray]:
    """The examples of `split` (slices allowed) as arrays, in order."""
    source = self.split_source(split)
    return sources.gather(source, range(len(source)))

  def split_source(self, split: str):
    """The source of `split`, a name or a tfds-style slice ('test[:1000]', 'train[90%:]')."""
    info = self.info()
    parts = splits.resolve(split, info.split_sizes, info.name)
    if len(parts) == 1 and parts[0][1:] == (0, info.split_sizes[parts[0][0]]):
      return self.source(parts[0][0])
    return splits.SlicedSource([(self.source(name), lo, hi) for name, lo, hi in parts])

  def host_transform(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """What predict does to new raw inputs (a batch) to make them like the dataset's examples."""
    return arrays

  def chunks(self, split: str, size: int) -> Iterator[dict[str, np.ndarray]]:
    """The examples of `split`, `size` at a time, as arrays (dataset statistics)."""
    source = self.split_source(split)
    for lo in range(0, len(source), size):
      yield sources.gather(source, range(lo, min(len(source), lo + size)))

  def cache_dir(self) -> str | None:
    """Where derived facts (dataset statistics) may be cached; None: nowhere."""
    return None


def default_data_dir() -> str:
  """Where prepared data lives unless data.data_dir says: $TFDS_DATA_DIR, else
  ~/tensorflow_datasets (where tfds, and so users of earlier versions, keep datasets)."""
  return os.path.expanduser(os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets")


def data_dir(data_config) -> str:
  """config.data.data_dir, or the default, with ~ expanded."""
  return os.path.expanduser(str(data_config.get("data_dir") or "")) or default_data_dir()


class RecordDataset(Dataset):
  """A dataset prepared once into records (records.py) by its `preparer()`, on first use.

  Every process of a multi-process run prepares together (prepare/core.py shares the work)
  and then reads only what its shards need.
  """

  def preparer(self):
    """The prepare.core.Preparer of this config."""
    raise NotImplementedError(f"{type(self).__name__} must define preparer()")

  def manifest(self) -> records.Manifest:
    from lepton_jax.data.prepare import core
    return core.ensure(self.preparer(), data_dir(self.config), jax.process_index(),
                       jax.process_count())

  def info(self) -> DatasetInfo:
    if self.recorded is not None:
      return self.recorded
    return self.manifest().dataset_info()

  def source(self, split: str):
    return sources.RecordSource(self.manifest(), split,
                                cache_bytes=int(self.config.get("cache_mb", 0)) * 2**20)

  def cache_dir(self) -> str | None:
    return self.manifest().directory


def build(data_config, recorded: DatasetInfo | None = None) -> Dataset:
  """The registered dataset config.data names, built from config.data."""
  return registry.get("dataset", data_config.name)(data_config, recorded)


COMMON_KEYS = frozenset(base_config().data.keys())


def with_defaults(data_config, defaults: dict, owner: str,
                  tolerated: frozenset = frozenset()) -> ml_collections.ConfigDict:
  """config.data with the dataset's own defaults filled in; unknown keys are a UserError
  (`tolerated` keys are dropped instead)."""
  known = COMMON_KEYS | set(defaults)
  given = data_config.to_dict() if hasattr(data_config, "to_dict") else dict(data_config)
  given = {k: v for k, v in given.items() if k in known or k not in tolerated}
  unknown = sorted(set(given) - known)
  if unknown:
    close = difflib.get_close_matches(unknown[0], sorted(known), n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise UserError(f"config.data has unknown key(s) {', '.join(unknown)} for dataset "
                    f"{data_config.get('name', owner)!r}; {hint}its keys are "
                    f"{', '.join(sorted(defaults)) or 'only the common ones'} besides the common ones")
  merged = ml_collections.ConfigDict({**defaults, **given})
  merged.lock()
  return merged
