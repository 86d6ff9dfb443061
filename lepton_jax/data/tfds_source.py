"""Reading a tfds split (or one shard of it) into host memory.

Every dataset of lepton_jax goes through tensorflow-datasets: a registered
dataset names a tfds builder, and the pipeline reads the process's own part of
a split as decoded numpy arrays. Small and medium datasets (everything up to
CIFAR/ImageNet-64 scale) fit in host memory after decoding, which makes the
input pipeline exactly resumable and keeps the step from waiting on input.
"""

import os
from typing import Callable

import numpy as np

from lepton_jax.errors import UserError


def data_dir(data_config) -> str | None:
  """The tfds data dir: the config's, or tfds' own default (None)."""
  if data_config.get("data_dir"):
    return os.path.expanduser(str(data_config.data_dir))
  return None


def prepare(builder, download_config=None) -> None:
  """Builds the tfds dataset on disk once; later calls find it prepared."""
  import tensorflow_datasets as tfds
  if builder.is_prepared():
    return
  tfds.disable_progress_bar()  # per-example bars flood logs and CI output
  try:
    builder.download_and_prepare(download_config=download_config)
  except UserError:
    raise
  except PermissionError as e:
    raise UserError(f"cannot write the tfds data dir {builder.data_dir}: {e.strerror}; "
                    "set --config.data.data_dir to a writable directory") from e
  except Exception as e:  # tfds wraps download/extraction failures in many types.
    raise UserError(f"could not prepare dataset {builder.name!r} in {builder.data_dir}: "
                    f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''} "
                    "(offline? give the original files with --config.data.manual_dir)") from e


def offline_or_download(data_config, name: str, offline_builder_cls, what_manual_dir_holds: str):
  """The tfds builder of dataset `name`, prepared.

  With `data.manual_dir` set, `offline_builder_cls` (a subclass of tfds' own builder that writes
  the same dataset from the original files) prepares it once from that folder, without a network;
  otherwise tfds' builder downloads as usual. Both write the same name and version under
  `data.data_dir`, so data prepared either way is found by both.
  """
  import tensorflow_datasets as tfds
  directory = data_dir(data_config)
  manual_dir = data_config.get("manual_dir")
  if not manual_dir:
    builder = tfds.builder(name, data_dir=directory)
    prepare(builder)
    return builder
  manual_dir = os.path.expanduser(str(manual_dir))
  if not os.path.isdir(manual_dir):
    raise UserError(f"data.manual_dir {manual_dir!r} is not a directory; point it at the "
                    f"folder holding {what_manual_dir_holds}")
  builder = offline_builder_cls(data_dir=directory)
  if not builder.is_prepared():
    builder.manual_dir = manual_dir
    builder.verify_checksums = bool(data_config.verify_checksums)
    prepare(builder)
  return builder


def read_split(builder, split: str, shard_index: int = 0, num_shards: int = 1,
               transform: Callable[[dict], dict] | None = None) -> dict[str, np.ndarray]:
  """Decoded arrays of shard `shard_index` of `num_shards` of `split`.

  Shards are the contiguous, disjoint, near-equal parts tfds.even_splits makes:
  a process reads only the files and records of its own shards.
  """
  import tensorflow_datasets as tfds
  sub_split = tfds.even_splits(split, n=num_shards)[shard_index] if num_shards > 1 else split
  ds = builder.as_dataset(split=sub_split, batch_size=-1, shuffle_files=False)
  # Only numeric features can feed a model; strings (ids, file names) stay behind.
  arrays = {k: _narrow(np.asarray(v)) for k, v in tfds.as_numpy(ds).items()
            if np.asarray(v).dtype.kind in "biuf"}
  return transform(arrays) if transform else arrays


def _narrow(array: np.ndarray) -> np.ndarray:
  """64-bit arrays as 32-bit: JAX computes in 32 bits unless x64 is enabled."""
  if array.dtype == np.int64:
    return array.astype(np.int32)
  if array.dtype == np.float64:
    return array.astype(np.float32)
  return array


def shard_sizes(total: int, num_shards: int) -> list[int]:
  """Sizes of tfds.even_splits(n=num_shards) of a split of `total` examples."""
  base, extra = divmod(total, num_shards)
  return [base + (1 if i < extra else 0) for i in range(num_shards)]


def chunks(builder, split: str, size: int, transform: Callable[[dict], dict] | None = None):
  """The numeric features of `split`, `size` examples at a time, as numpy arrays."""
  import tensorflow_datasets as tfds
  for arrays in tfds.as_numpy(builder.as_dataset(split=split, batch_size=size, shuffle_files=False)):
    arrays = {k: _narrow(np.asarray(v)) for k, v in arrays.items() if np.asarray(v).dtype.kind in "biuf"}
    yield transform(arrays) if transform else arrays
