"""The dataset interface: a registered class turns `config.data` into arrays."""

import functools

import numpy as np

from lepton_jax.data import tfds_source
from lepton_jax.data.info import DatasetInfo


class Dataset:
  """A dataset read through a tfds builder.

  Subclasses define `builder()` (a prepared-or-preparable tfds builder),
  `info()` and, if inputs need host-side work beyond decoding, `host_transform`
  (also applied by predict to new inputs, so training and serving agree).
  """

  # builder() and info() are computed once per instance: preparing or opening a
  # tfds builder costs seconds, and the pipeline asks for them per shard.
  _CACHED = ("builder", "info")

  def __init_subclass__(cls, **kwargs):
    super().__init_subclass__(**kwargs)
    for name in cls._CACHED:
      if name in cls.__dict__:
        setattr(cls, name, _once_per_instance(cls.__dict__[name]))

  def __init__(self, data_config):
    self.config = data_config

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
