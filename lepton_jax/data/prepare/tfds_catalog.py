"""Datasets of the tfds catalog, prepared in tfds' own ArrayRecord format and read through
`tfds.data_source` (sources.TfdsSource): random access, no tf.data.

tensorflow-datasets 4.9 needs TensorFlow installed to be imported at all, and its builders
use TensorFlow while preparing; reading a prepared copy does not load TensorFlow. So this path
is an extra: the local formats (image folders, text, MNIST/CIFAR files, scikit-learn sets)
need neither.
"""

import contextlib
import io
import os
import sys

import numpy as np

from lepton_jax.data.info import DatasetInfo
from lepton_jax.errors import UserError

FILE_FORMAT = "array_record"


def import_tfds():
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # no TensorFlow start-up lines
  try:
    import tensorflow_datasets as tfds
    tfds.core.DatasetBuilder  # a tfds that failed to import its core (no TensorFlow) lacks it
  except (ImportError, AttributeError) as e:
    raise UserError("tfds catalog datasets need tensorflow-datasets and TensorFlow: pip install "
                    "'lepton-jax[tfds]' (local formats need neither)") from e
  return tfds


@contextlib.contextmanager
def _quiet():
  """tfds' banners go to stdout, its notes to absl: neither belongs in a run's log."""
  from absl import logging
  level = logging.get_verbosity()
  logging.set_verbosity(logging.ERROR)
  try:
    with contextlib.redirect_stdout(io.StringIO()):
      yield
  finally:
    logging.set_verbosity(level)


def prepare(name: str, data_dir: str | None = None, verbose: bool = True):
  """The tfds builder of catalog dataset `name` in ArrayRecord files, downloaded and prepared
  under `data_dir` (tfds' default when None) if it is not yet."""
  tfds = import_tfds()
  with _quiet():
    try:
      builder = tfds.builder(name, data_dir=data_dir, file_format=FILE_FORMAT)
    except Exception as e:  # tfds raises several types for unknown names and configs
      if "File format is already set" in str(e):
        raise UserError(f"tfds dataset {name!r} under {data_dir} was prepared in another file "
                        f"format; lepton_jax reads {FILE_FORMAT}: prepare it into another "
                        "data.data_dir") from e
      raise UserError(f"tfds has no dataset {name!r} ({type(e).__name__}); see "
                      "https://www.tensorflow.org/datasets/catalog") from e
    if builder.is_prepared():
      return builder
  if verbose:
    print(f"preparing tfds dataset {name} into {builder.data_dir} (download and conversion)",
          file=sys.stderr, flush=True)
  tfds.disable_progress_bar()
  with _quiet():
    try:
      builder.download_and_prepare(file_format=FILE_FORMAT)
    except Exception as e:  # tfds wraps download/extraction failures in many types
      first = str(e).splitlines()[0] if str(e) else ""
      raise UserError(f"could not prepare tfds dataset {name!r} in {builder.data_dir}: "
                      f"{type(e).__name__}: {first} (offline? prepare it where there is a "
                      "network and copy the data dir)") from e
  return builder


def info(builder, input_key: str = "", label_key: str = "label") -> DatasetInfo:
  """DatasetInfo of a tfds builder with a class label and one numeric input feature."""
  features = builder.info.features
  if label_key not in features:
    raise UserError(f"tfds dataset {builder.name!r} has no {label_key!r} feature; it has "
                    f"{', '.join(features)}")
  input_key = input_key or ("image" if "image" in features else
                            next(k for k in features if k != label_key))
  feature, label = features[input_key], features[label_key]
  names = tuple(getattr(label, "names", ()) or ())
  # np_dtype where tfds has it: reading the older `dtype` logs a deprecation warning.
  dtype = np.dtype(feature.np_dtype if hasattr(feature, "np_dtype") else feature.dtype)
  dtype = {np.dtype(np.int64): np.dtype(np.int32),
           np.dtype(np.float64): np.dtype(np.float32)}.get(dtype, dtype)
  return DatasetInfo(name=builder.name, input_key=input_key, input_shape=tuple(feature.shape),
                     input_dtype=dtype.type, num_classes=int(label.num_classes),
                     label_names=names, label_key=label_key,
                     split_sizes={k: v.num_examples for k, v in builder.info.splits.items()},
                     input_description=f"tfds {builder.name} {builder.version}: {input_key}")
