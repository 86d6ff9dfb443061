"""A synthetic dataset: random examples of any shape, to measure a model's speed without its data.

    python -m lepton_jax.bench --config configs/mnist_cnn.py --config.data.name=synthetic

    config.data.name = "synthetic"
    config.data.input_shape = (224, 224, 3)   # one example's input
    config.data.input_dtype = "uint8"         # uint8: 0-255; float32: normal(0, 1)
    config.data.num_classes = 1000            # labels in [0, num_classes)
    config.data.seq_len = 0                   # > 0: language-model windows instead: `tokens`
                                              # and `targets` of seq_len ids < vocab_size
    config.data.vocab_size = 0                # of those ids; 0: 256 (bytes)
    config.data.num_examples = 65536          # size of `train`; validation and test get 1/8

A config written for another dataset works as it is: the keys of other registered datasets
are ignored, except the text ones that say what an example is (seq_len, vocab_size), so
`--config.data.name=synthetic` on configs/lm_transformer.py gives windows of its seq_len.
Example i of a split is drawn from a generator seeded by (seed, split, i): the same on every
machine, process and worker, and nothing is stored. Labels carry no signal.
"""

import zlib

import numpy as np

from lepton_jax import registry
from lepton_jax.data import base, sources
from lepton_jax.data.info import DatasetInfo
from lepton_jax.errors import UserError

DEFAULT_EXAMPLES = 65536
STATISTICS_EXAMPLES = 4096  # dataset statistics of random data: its first examples tell them


def _settings(data_config) -> dict:
  seq_len = int(data_config.get("seq_len", 0) or 0)
  num_classes = int(data_config.get("num_classes", 10))
  size = int(data_config.get("num_examples", DEFAULT_EXAMPLES) or DEFAULT_EXAMPLES)
  if num_classes < 1 or size < 1 or seq_len < 0:
    raise UserError(f"synthetic data needs data.num_classes >= 1, data.num_examples >= 1 and "
                    f"data.seq_len >= 0; got {num_classes}, {size}, {seq_len}")
  if seq_len:
    vocab = int(data_config.get("vocab_size", 0) or 256)
    return {"input_key": "tokens", "label_key": "targets", "shape": (seq_len,),
            "dtype": np.dtype(np.int32), "num_classes": vocab, "size": size}
  try:
    dtype = np.dtype(str(data_config.get("input_dtype", "uint8")))
  except TypeError as e:
    raise UserError(f"data.input_dtype={data_config.get('input_dtype')!r} is not a numpy dtype "
                    "name; use e.g. 'uint8' or 'float32'") from e
  shape = tuple(int(s) for s in data_config.get("input_shape", (32, 32, 3)))
  if any(s < 1 for s in shape):
    raise UserError(f"data.input_shape must hold positive sizes, got {shape}")
  key = "image" if dtype == np.uint8 and len(shape) in (2, 3) else "features"
  return {"input_key": key, "label_key": "label", "shape": shape, "dtype": dtype,
          "num_classes": num_classes, "size": size}


def info(data_config) -> DatasetInfo:
  s = _settings(data_config)
  sizes = {"train": s["size"], "validation": max(1, s["size"] // 8),
           "test": max(1, s["size"] // 8)}
  return DatasetInfo(name="synthetic", input_key=s["input_key"], input_shape=s["shape"],
                     input_dtype=s["dtype"].type, num_classes=s["num_classes"],
                     split_sizes=sizes, label_key=s["label_key"],
                     input_description=f"synthetic random {s['dtype'].name} {s['shape']}")


class SyntheticSource:
  """Random-access synthetic examples of one split."""

  def __init__(self, data_config, split: str, seed: int = 0):
    self.settings = _settings(data_config)
    sizes = info(data_config).split_sizes
    if split not in sizes:
      raise UserError(f"synthetic data has no split {split!r}; splits are "
                      f"{', '.join(sorted(sizes))}")
    self.size = sizes[split]
    self.seed = int(seed)
    self._split_key = zlib.crc32(split.encode())

  def __len__(self) -> int:
    return self.size

  def __getitem__(self, index) -> dict:
    index = int(index)
    if not 0 <= index < self.size:
      raise IndexError(index)
    s = self.settings
    rng = np.random.default_rng([self.seed, self._split_key, index])
    if s["input_key"] == "tokens":
      window = rng.integers(0, s["num_classes"], s["shape"][0] + 1, dtype=np.int32)
      return {"tokens": window[:-1], "targets": window[1:],
              "target_bytes": np.int32(s["shape"][0])}
    if s["dtype"] == np.uint8:
      x = rng.integers(0, 256, s["shape"], dtype=np.uint8)
    elif s["dtype"].kind in "iu":
      x = rng.integers(0, s["num_classes"], s["shape"]).astype(s["dtype"])
    else:
      x = rng.standard_normal(s["shape"], dtype=np.float32).astype(s["dtype"])
    return {s["input_key"]: x, "label": np.int32(rng.integers(0, s["num_classes"]))}

  def __getitems__(self, indices) -> list[dict]:
    return [self[i] for i in indices]


@registry.register("dataset", "synthetic")
class Synthetic(base.Dataset):
  """Random examples of any shape (see the module doc): a model's speed without its data."""

  defaults = {"input_shape": (32, 32, 3), "input_dtype": "uint8", "num_classes": 10,
              "seq_len": 0, "vocab_size": 0, "num_examples": DEFAULT_EXAMPLES}

  def __init__(self, data_config, recorded: DatasetInfo | None = None):
    others = set()
    for name in registry.names("dataset"):
      others |= set(getattr(registry.get("dataset", name), "defaults", {}))
    self.config = base.with_defaults(data_config, type(self).defaults, "synthetic",
                                     tolerated=frozenset(others))
    self.recorded = recorded

  def info(self) -> DatasetInfo:
    return info(self.config)

  def source(self, split: str):
    return SyntheticSource(self.config, split)

  def chunks(self, split: str, size: int):
    source = self.split_source(split)
    count = min(len(source), STATISTICS_EXAMPLES)
    for lo in range(0, count, size):
      yield sources.gather(source, range(lo, min(count, lo + size)))
