"""The prepared-dataset format: one msgpack record per example in ArrayRecord files, and a
manifest that is written last.

A prepared dataset is a directory:

    manifest.json                 what the dataset is; written last and atomically, so a
                                  directory without it (a killed preparation) is never read
    train-00000.array_record      the examples of preparation unit 0 of `train`, in order
    train-00000.json              that unit's sidecar: its record count and skipped files
    ...

A split is the concatenation of its unit files in index order. A record is a msgpack map from
feature name to bytes: the raw little-endian bytes of a fixed-shape array ("array" features), or
a PNG/JPEG file ("image" features, decoded with Pillow when read). Why this and not tfds'
tf.train.Example: reading needs neither TensorFlow nor protobuf, a record decodes with one
msgpack call and `np.frombuffer`, and images stay compressed on disk (ImageNet-size data) while
small numeric datasets (MNIST, text windows) cost no decoding at all. ArrayRecord files are
written with group_size 1 and no compression, so any record is one read away (a global shuffle
by index).
"""

import dataclasses
import io
import json
import os
from typing import Any

import msgpack
import numpy as np

from lepton_jax.data.info import DatasetInfo
from lepton_jax.errors import UserError

FORMAT = "lepton-records/1"
MANIFEST = "manifest.json"
_JPEG_MAGIC = b"\xff\xd8\xff"
# One record per chunk: random access reads only what it needs. Uncompressed: images are PNG or
# JPEG already, and a record read at random costs twice the time with zstd's decompression.
WRITER_OPTIONS = "group_size:1,uncompressed"


@dataclasses.dataclass(frozen=True)
class Feature:
  """How one key of an example is stored: kind 'array' or 'image', and its decoded dtype/shape."""

  kind: str
  dtype: str
  shape: tuple

  def to_json(self) -> dict:
    return {"kind": self.kind, "dtype": self.dtype, "shape": list(self.shape)}

  @classmethod
  def from_json(cls, d: dict) -> "Feature":
    return cls(d["kind"], d["dtype"], tuple(d["shape"]))


def array_feature(dtype, shape=()) -> Feature:
  return Feature("array", np.dtype(dtype).newbyteorder("<").str, tuple(shape))


def image_feature(height: int, width: int, channels: int) -> Feature:
  return Feature("image", "|u1", (height, width, channels))


def encode(features: dict[str, Feature], example: dict[str, Any]) -> bytes:
  """One example as a record: image features hold encoded file bytes, array features values."""
  packed = {}
  for key, feature in features.items():
    value = example[key]
    if feature.kind == "image":
      packed[key] = bytes(value)
      continue
    array = np.asarray(value, dtype=np.dtype(feature.dtype))
    if array.shape != feature.shape:
      raise ValueError(f"feature {key!r} has shape {array.shape}, expected {feature.shape}")
    packed[key] = array.tobytes()
  return msgpack.packb(packed, use_bin_type=True)


def decode(features: dict[str, Feature], record: bytes) -> dict[str, np.ndarray]:
  """A record back as numpy arrays of the features' dtypes and shapes."""
  packed = msgpack.unpackb(record, raw=False)
  out = {}
  for key, feature in features.items():
    if feature.kind == "image":
      out[key] = decode_image(packed[key], feature.shape)
    else:
      dtype = np.dtype(feature.dtype)
      out[key] = np.frombuffer(packed[key], dtype).reshape(feature.shape).astype(dtype.newbyteorder("="))
  return out


def _array_layout(features: dict[str, Feature], record: bytes) -> dict | None:
  """{key: (offset, size)} of each feature's bytes in records like `record`, when every feature
  is an array (then every record of the dataset has this one layout); else None."""
  if any(f.kind != "array" for f in features.values()):
    return None
  keys = sum(len(msgpack.packb(k)) + 1 for k in features)  # each key, then a 1-byte None
  layout, offset = {}, len(msgpack.packb({k: None for k in features})) - keys  # the map header
  for key, feature in features.items():
    size = np.dtype(feature.dtype).itemsize * int(np.prod(feature.shape, dtype=np.int64))
    value = b"\0" * size
    offset += len(msgpack.packb(key)) + len(msgpack.packb(value)) - size
    layout[key] = (offset, size)
    offset += size
  return layout if offset == len(record) else None


def decode_batch(features: dict[str, Feature], raw: list[bytes]) -> dict[str, np.ndarray]:
  """Records decoded straight into stacked arrays (one copy per feature, no per-example
  arrays to stack): what a streamed batch is made of. Records of array features only, all of
  one layout, are sliced as one block: no per-record work in Python."""
  layout = _array_layout(features, raw[0]) if raw else None
  if layout is not None and all(len(r) == len(raw[0]) for r in raw):
    block = np.frombuffer(b"".join(raw), np.uint8).reshape(len(raw), len(raw[0]))
    out = {}
    for key, feature in features.items():
      offset, size = layout[key]
      dtype = np.dtype(feature.dtype)
      values = np.ascontiguousarray(block[:, offset:offset + size]).view(dtype)
      out[key] = values.reshape((len(raw),) + tuple(feature.shape)).astype(
          dtype.newbyteorder("="), copy=False)
    return out
  packed = [msgpack.unpackb(record, raw=False) for record in raw]
  out = {}
  for key, feature in features.items():
    shape = (len(packed),) + tuple(feature.shape)
    if feature.kind == "image":
      out[key] = np.empty(shape, np.uint8)
      for row, p in enumerate(packed):
        out[key][row] = decode_image(p[key], feature.shape)
    else:
      dtype = np.dtype(feature.dtype)
      joined = np.frombuffer(b"".join(p[key] for p in packed), dtype).reshape(shape)
      out[key] = joined.astype(dtype.newbyteorder("="))  # native order, and writeable
  return out


def decode_image(data: bytes, shape: tuple) -> np.ndarray:
  """PNG/JPEG bytes as uint8 (height, width, channels).

  JPEG files decode with simplejpeg (libjpeg-turbo, like Pillow's, and the very same pixels),
  without Pillow's file object and mode conversion: about a third less time per image. Anything
  else, or a JPEG simplejpeg declines (CMYK, ...), goes through Pillow.
  """
  if data[:3] == _JPEG_MAGIC:
    try:
      import simplejpeg
      array = simplejpeg.decode_jpeg(data, colorspace="GRAY" if shape[-1] == 1 else "RGB")
      if array.shape == tuple(shape):
        return array
    except (ImportError, ValueError):
      pass
  from PIL import Image
  with Image.open(io.BytesIO(data)) as im:
    mode = "L" if shape[-1] == 1 else "RGB"
    array = np.asarray(im if im.mode == mode else im.convert(mode), dtype=np.uint8)
  return array.reshape(shape)


@dataclasses.dataclass(frozen=True)
class Manifest:
  """A complete prepared dataset: its features, splits (unit files and counts) and info."""

  directory: str
  fingerprint: str
  features: dict  # name -> Feature
  splits: dict  # split -> tuple of (file name, record count)
  info: dict  # DatasetInfo fields, JSON-ready
  read_transform: str = ""  # applied to every decoded example (see sources.READ_TRANSFORMS)
  transform_args: dict = dataclasses.field(default_factory=dict)
  skipped: tuple = ()  # (item, reason) of every source item that gave no example

  def split_size(self, split: str) -> int:
    return sum(count for _, count in self.split_files(split))

  def split_files(self, split: str) -> tuple:
    if split not in self.splits:
      raise UserError(f"dataset {self.info.get('name', '?')!r} has no split {split!r}; splits "
                      f"are {', '.join(sorted(self.splits))}")
    return self.splits[split]

  def paths(self, split: str) -> list[str]:
    """The split's files as ArrayRecord paths with their record range (no file opened)."""
    return [f"{os.path.join(self.directory, name)}[0:{count}]"
            for name, count in self.split_files(split) if count]

  def dataset_info(self) -> DatasetInfo:
    fields = dict(self.info)
    fields["input_shape"] = tuple(fields["input_shape"])
    fields["input_dtype"] = np.dtype(fields["input_dtype"]).type
    fields["label_names"] = tuple(fields.get("label_names", ()))
    fields["split_sizes"] = {split: self.split_size(split) for split in self.splits}
    if self.read_transform:
      fields["transform"] = {"name": self.read_transform, "args": self.transform_args}
    return DatasetInfo(**fields)

  def to_json(self) -> dict:
    return {"format": FORMAT, "fingerprint": self.fingerprint,
            "features": {k: f.to_json() for k, f in self.features.items()},
            "splits": {s: [list(f) for f in files] for s, files in self.splits.items()},
            "info": self.info, "read_transform": self.read_transform,
            "transform_args": self.transform_args, "skipped": [list(s) for s in self.skipped]}


def info_fields(info: DatasetInfo) -> dict:
  """The JSON form of a DatasetInfo (split sizes come from the files)."""
  return {"name": info.name, "input_key": info.input_key, "input_shape": list(info.input_shape),
          "input_dtype": np.dtype(info.input_dtype).name, "num_classes": info.num_classes,
          "label_names": list(info.label_names), "label_key": info.label_key,
          "input_description": info.input_description,
          **({"tokenizer": dict(info.tokenizer)} if info.tokenizer else {})}


def read_manifest(directory: str) -> Manifest | None:
  """The manifest of a prepared dataset, or None when `directory` holds no complete one."""
  path = os.path.join(directory, MANIFEST)
  try:
    raw = read_json(path)
  except FileNotFoundError:
    return None
  except (OSError, ValueError) as e:
    raise UserError(f"cannot read {path} ({e}); delete {directory} to prepare the dataset "
                    "again") from e
  if raw.get("format") != FORMAT:
    raise UserError(f"{path} is format {raw.get('format')!r}, this version reads {FORMAT!r}; "
                    f"delete {directory} to prepare the dataset again")
  return Manifest(directory=directory, fingerprint=raw["fingerprint"],
                  features={k: Feature.from_json(v) for k, v in raw["features"].items()},
                  splits={s: tuple((name, int(n)) for name, n in files)
                          for s, files in raw["splits"].items()},
                  info=raw["info"], read_transform=raw.get("read_transform", ""),
                  transform_args=raw.get("transform_args", {}),
                  skipped=tuple(tuple(s) for s in raw.get("skipped", ())))


def read_json(path: str) -> Any:
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def write_json_atomically(path: str, obj: Any, sync: bool = False) -> None:
  """Writes `obj` to `path` through a temporary file and a rename: readers see all or nothing."""
  tmp = f"{path}.tmp.{os.getpid()}"
  with open(tmp, "w", encoding="utf-8") as f:
    json.dump(obj, f, indent=1)
    if sync:
      f.flush()
      os.fsync(f.fileno())
  os.replace(tmp, path)


class RecordWriter:
  """Writes one ArrayRecord file that appears under its name only once it is complete."""

  def __init__(self, path: str):
    from array_record.python.array_record_module import ArrayRecordWriter
    self.path = path
    self._tmp = f"{path}.tmp.{os.getpid()}"
    self._writer = ArrayRecordWriter(self._tmp, WRITER_OPTIONS)
    self.count = 0

  def write(self, record: bytes) -> None:
    self._writer.write(record)
    self.count += 1

  def commit(self) -> None:
    self._writer.close()
    os.replace(self._tmp, self.path)

  def abort(self) -> None:
    self._writer.close()
    if os.path.exists(self._tmp):
      os.remove(self._tmp)
