"""The dataset interface: a registered class turns `config.data` into arrays."""

import difflib
import functools
from typing import Iterator

import ml_collections
import numpy as np

from lepton_jax import registry
from lepton_jax.config_defaults import base_config
from lepton_jax.data import tfds_source
from lepton_jax.data.info import DatasetInfo
from lepton_jax.errors import UserError


class Dataset:
  """A dataset read through a tfds builder.

  Subclasses define `builder()` (a prepared-or-preparable tfds builder),
  `info()` and, if inputs need host-side work beyond decoding, `host_transform`
  (also applied by predict to new inputs, so training and serving agree).

  `defaults` holds the dataset's own keys of config.data with their defaults (the one place
  they are written): `self.config` is config.data with those filled in, and a key of config.data
  that is neither common (config_defaults) nor the dataset's own is an error, as a typo must be.
  """

  defaults: dict = {}

  # builder() and info() are computed once per instance: preparing or opening a
  # tfds builder costs seconds, and the pipeline asks for them per shard.
  _CACHED = ("builder", "info")

  def __init_subclass__(cls, **kwargs):
    super().__init_subclass__(**kwargs)
    for name in cls._CACHED:
      if name in cls.__dict__:
        setattr(cls, name, _once_per_instance(cls.__dict__[name]))

  def __init__(self, data_config):
    self.config = with_defaults(data_config, type(self).defaults, type(self).__name__)

  def builder(self):
    raise NotImplementedError(f"{type(self).__name__} must define builder()")

  def info(self) -> DatasetInfo:
    raise NotImplementedError(f"{type(self).__name__} must define info()")

  def host_transform(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return arrays

  def read(self, split: str, shard_index: int = 0, num_shards: int = 1) -> dict[str, np.ndarray]:
    builder = self.builder()
    self.info().split_size(split)  # a clear error for an unknown split
    return tfds_source.read_split(builder, split, shard_index, num_shards, self.host_transform)

  def chunks(self, split: str, size: int) -> Iterator[dict[str, np.ndarray]]:
    """The host-transformed examples of `split`, `size` at a time (dataset statistics)."""
    if type(self).builder is Dataset.builder:  # a dataset that only reads: one chunk
      yield self.read(split)
      return
    yield from tfds_source.chunks(self.builder(), split, size, self.host_transform)

  def cache_dir(self) -> str | None:
    """Where derived facts (dataset statistics) may be cached; None: nowhere."""
    if type(self).builder is Dataset.builder:
      return None
    return str(self.builder().data_dir)


def build(data_config) -> Dataset:
  """The registered dataset config.data names, built from config.data."""
  return registry.get("dataset", data_config.name)(data_config)


COMMON_KEYS = frozenset(base_config().data.keys())


def with_defaults(data_config, defaults: dict, owner: str) -> ml_collections.ConfigDict:
  """config.data with the dataset's own defaults filled in; unknown keys are a UserError."""
  known = COMMON_KEYS | set(defaults)
  unknown = sorted(set(data_config.keys()) - known)
  if unknown:
    close = difflib.get_close_matches(unknown[0], sorted(known), n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise UserError(f"config.data has unknown key(s) {', '.join(unknown)} for dataset "
                    f"{data_config.get('name', owner)!r}; {hint}its keys are "
                    f"{', '.join(sorted(defaults)) or 'only the common ones'} besides the common ones")
  given = data_config.to_dict() if hasattr(data_config, "to_dict") else dict(data_config)
  merged = ml_collections.ConfigDict({**defaults, **given})
  merged.lock()
  return merged


def _once_per_instance(method):
  attr = f"_cached_{method.__name__}"

  @functools.wraps(method)
  def wrapper(self):
    if attr not in self.__dict__:
      self.__dict__[attr] = method(self)
    return self.__dict__[attr]

  return wrapper


def image_info(name, builder, input_description="") -> DatasetInfo:
  """DatasetInfo of a tfds builder with 'image' and 'label' features."""
  features = builder.info.features
  label = features["label"]
  return DatasetInfo(
      name=name,
      input_key="image",
      input_shape=tuple(features["image"].shape),
      input_dtype=np.uint8,
      num_classes=label.num_classes,
      label_names=tuple(label.names),
      split_sizes={k: v.num_examples for k, v in builder.info.splits.items()},
      input_description=input_description,
  )
