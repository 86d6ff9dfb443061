"""Dataset statistics for the op specs: `normalize(mean='dataset', std='dataset')`.

    config.data.preprocess = ("normalize(mean='dataset', std='dataset')",)

asks for the per-channel mean and standard deviation of the training split (data.train_split), in
units of x / max_value. `resolve` computes them once on the host (a streamed pass in float64) and
returns the op specs with the numbers filled in, e.g.
"normalize(mean=(0.4914, 0.4822, 0.4465), std=(...))"; the config is left as written. The train
loop records the resolved specs in the run's run.json, and evaluation, predict and export build
their ops from that record, so they reuse the very same numbers without reading the training
data again. The statistics are also cached next to the prepared data (lepton_statistics.json),
so later runs skip the pass.
"""

import dataclasses
import json
import sys

import numpy as np
from etils import epath

from lepton_jax.data import transforms
from lepton_jax.errors import UserError

DATASET = "dataset"  # the placeholder value for statistics of the training split
_STAT_KEYS = ("mean", "std")


@dataclasses.dataclass(frozen=True)
class OpSpecs:
  """The device-side op specs of a run (data.preprocess, data.augment), numbers only."""

  preprocess: tuple[str, ...]
  augment: tuple[str, ...]

  def to_dict(self) -> dict:
    return {"preprocess": list(self.preprocess), "augment": list(self.augment)}

  @classmethod
  def from_dict(cls, record: dict) -> "OpSpecs":
    return cls(tuple(record["preprocess"]), tuple(record["augment"]))

  @classmethod
  def of_config(cls, data_config) -> "OpSpecs":
    """The config's specs as written; a 'dataset' placeholder is an error here."""
    specs = cls(tuple(data_config.preprocess), tuple(data_config.augment))
    if needs_statistics(specs):
      raise UserError("data.preprocess/data.augment ask for 'dataset' statistics, which only a "
                      "training run computes (from data.train_split); train first, or give numbers")
    return specs


def needs_statistics(specs: OpSpecs) -> bool:
  """Whether any spec asks for dataset statistics."""
  for spec in specs.preprocess + specs.augment:
    _, kwargs = transforms.parse_spec(spec)
    if any(isinstance(v, str) and v == DATASET for v in kwargs.values()):
      return True
  return False


CHUNK_BYTES = 64 * 2**20  # of float64 values summed at once: the pass's memory, whatever the split


def channel_statistics(dataset, split: str, input_key: str = "image", max_value: float = 255.0,
                       chunk: int = 0) -> tuple[tuple, tuple]:
  """Per-channel (last axis) mean and std of x / max_value over a whole split.

  Streams the split in chunks (`chunk` examples; 0: as many as CHUNK_BYTES of float64 hold) and
  sums in float64, so it needs little memory and gives the same numbers on every host. Inputs
  that are not images or feature vectors (e.g. (H, W) without a channel axis) get one scalar
  each.
  """
  if not chunk:
    values = int(np.prod(dataset.info().input_shape or (1,)))
    chunk = max(1, min(2048, CHUNK_BYTES // (8 * values)))
  total = sq = None
  count = 0
  for arrays in dataset.chunks(split, chunk):
    x = np.asarray(arrays[input_key], np.float64) / max_value
    per_channel = x.ndim in (2, 4)  # (N, F) features or (N, H, W, C) images
    x = x.reshape(-1, x.shape[-1]) if per_channel else x.reshape(-1, 1)
    total = x.sum(0) if total is None else total + x.sum(0)
    sq = (x * x).sum(0) if sq is None else sq + (x * x).sum(0)
    count += x.shape[0]
  if not count:
    raise UserError(f"cannot compute dataset statistics: split {split!r} is empty")
  mean = total / count
  std = np.sqrt(np.maximum(sq / count - mean * mean, 0.0))
  std = np.where(std > 1e-8, std, 1.0)  # a constant channel: leave its scale alone
  as_tuple = lambda a: tuple(float(f"{v:.6g}") for v in a)  # noqa: E731
  return as_tuple(mean), as_tuple(std)


def _cached_statistics(dataset, split, input_key, max_value):
  """channel_statistics, cached in the prepared dataset's folder when it is writable."""
  key = f"{split}|{input_key}|{max_value}"
  path = None
  try:
    path = epath.Path(str(dataset.cache_dir())) / "lepton_statistics.json"
    cache = json.loads(path.read_text()) if path.exists() else {}
  except Exception:  # noqa: BLE001  (an unreadable cache is recomputed)
    cache = {}
  if key in cache:
    return tuple(cache[key]["mean"]), tuple(cache[key]["std"])
  mean, std = channel_statistics(dataset, split, input_key, max_value)
  if path is not None:
    try:
      cache[key] = {"mean": list(mean), "std": list(std)}
      path.write_text(json.dumps(cache, indent=1))
    except Exception:  # noqa: BLE001  (a read-only data dir: fine, just not cached)
      pass
  return mean, std


def _resolve_spec(spec: str, dataset, split: str, input_key: str) -> str:
  name, kwargs = transforms.parse_spec(spec)
  wanted = [k for k, v in kwargs.items() if isinstance(v, str) and v == DATASET]
  if not wanted:
    return spec
  bad = [k for k in wanted if k not in _STAT_KEYS]
  if bad:
    raise UserError(f"op {spec!r}: only mean and std can be 'dataset', not {', '.join(bad)}")
  mean, std = _cached_statistics(dataset, split, input_key, float(kwargs.get("max_value", 255.0)))
  stats = {"mean": mean, "std": std}
  kwargs = {k: (stats[k] if k in wanted else v) for k, v in kwargs.items()}
  print(f"data: {name} uses {split!r} statistics mean={mean} std={std}", file=sys.stderr)
  return transforms.format_spec(name, kwargs)


def resolve(data_config, dataset, input_key: str) -> OpSpecs:
  """The config's op specs with every 'dataset' placeholder replaced by the training split's
  statistics (computed once, or read from the cache). The config is not changed."""
  written = OpSpecs(tuple(data_config.preprocess), tuple(data_config.augment))
  if not needs_statistics(written):
    return written
  split = str(data_config.train_split)
  return OpSpecs(*(tuple(_resolve_spec(s, dataset, split, input_key) for s in specs)
                   for specs in (written.preprocess, written.augment)))
