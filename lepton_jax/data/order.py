"""The data order: which examples make each batch, as a pure function of the step.

A split of N examples is cut into `num_shards` contiguous, disjoint, near-equal shards (the
first N % num_shards shards get one example more; tfds even_splits cuts the same way). Each
process reads only its own shards, a contiguous block of the split. Every shard contributes
`batch_size / num_shards` rows to each global batch, drawn from its own permutation for the
epoch, seeded by (seed, shard, epoch); steps_per_epoch = min(shard sizes) // rows per shard.
So batch number `step` depends on (seed, num_shards, batch_size, N, step) only: not on devices,
processes, workers or interruptions. The streamed pipeline (stream.py) and the on-device fast
path both take their indices from here, which is what makes them bit-identical.

Evaluation visits every example once: each shard in order, in batches of its rows, the last one
padded (index -1); every process runs the batch count of the largest shard.

A `ShardLayout` says which shards this process reads (num_shards defaults to the number of
processes); TrainOrder and EvalOrder take any object with `num_shards` and `local_shards`.
"""

import dataclasses

import numpy as np

from lepton_jax.errors import UserError

PAD = -1  # the index of a padding row in evaluation batches


@dataclasses.dataclass(frozen=True)
class ShardLayout:
  """Which shards of a split this process reads."""

  num_shards: int
  process_index: int
  process_count: int

  @classmethod
  def create(cls, num_shards: int, process_index: int, process_count: int) -> "ShardLayout":
    num_shards = num_shards or process_count
    if num_shards % process_count:
      raise UserError(f"data.num_shards={num_shards} is not a multiple of the {process_count} "
                      "processes; use a multiple, or 0 for one shard per process")
    return cls(num_shards, process_index, process_count)

  @property
  def local_shards(self) -> range:
    per_process = self.num_shards // self.process_count
    return range(self.process_index * per_process, (self.process_index + 1) * per_process)


def steps_per_epoch(split_size: int, layout, global_batch: int, split: str) -> int:
  """Full global batches in an epoch of a split of `split_size` examples."""
  return TrainOrder.create(split_size, layout, global_batch, 0, split).steps_per_epoch


def shard_bounds(total: int, num_shards: int) -> list[tuple[int, int]]:
  """[lo, hi) of every shard of a split of `total` examples."""
  base, extra = divmod(total, num_shards)
  bounds, lo = [], 0
  for shard in range(num_shards):
    hi = lo + base + (1 if shard < extra else 0)
    bounds.append((lo, hi))
    lo = hi
  return bounds


def _rows_per_shard(global_batch: int, num_shards: int, what: str) -> int:
  if global_batch % num_shards:
    raise UserError(f"{what}={global_batch} is not divisible by data.num_shards="
                    f"{num_shards}; pick a multiple of {num_shards}")
  return global_batch // num_shards


@dataclasses.dataclass(frozen=True)
class TrainOrder:
  """The training batches of one process: example indices per step."""

  num_examples: int
  num_shards: int
  local_shards: tuple
  shard_batch: int
  seed: int

  @classmethod
  def create(cls, num_examples: int, layout, global_batch: int, seed: int,
             split: str = "train") -> "TrainOrder":
    shard_batch = _rows_per_shard(global_batch, layout.num_shards, "batch_size")
    order = cls(num_examples, layout.num_shards, tuple(layout.local_shards), shard_batch, seed)
    if order.steps_per_epoch == 0:
      raise UserError(f"batch_size={global_batch} is larger than the {split!r} split allows "
                      f"({num_examples} examples in {layout.num_shards} shard(s)); lower batch_size")
    return order

  @property
  def steps_per_epoch(self) -> int:
    smallest = min(hi - lo for lo, hi in shard_bounds(self.num_examples, self.num_shards))
    return smallest // self.shard_batch

  @property
  def local_batch(self) -> int:
    return self.shard_batch * len(self.local_shards)

  @property
  def local_range(self) -> tuple[int, int]:
    """[lo, hi) of the split that this process's shards cover."""
    bounds = shard_bounds(self.num_examples, self.num_shards)
    return bounds[self.local_shards[0]][0], bounds[self.local_shards[-1]][1]

  @property
  def first_global_row(self) -> int:
    """The row of the global batch where this process's rows start."""
    return self.local_shards[0] * self.shard_batch

  def key(self) -> dict:
    """What the order depends on: a checkpointed position is only valid for the same key."""
    return {"num_examples": self.num_examples, "num_shards": self.num_shards,
            "batch_size": self.shard_batch * self.num_shards, "seed": self.seed}

  def permutation(self, shard: int, epoch: int) -> np.ndarray:
    lo, hi = shard_bounds(self.num_examples, self.num_shards)[shard]
    return np.random.default_rng([self.seed, shard, epoch]).permutation(hi - lo)

  def epoch_indices(self, epoch: int) -> np.ndarray:
    """[steps_per_epoch, local_batch] split indices: row p is this process's part of batch
    `epoch * steps_per_epoch + p`."""
    bounds = shard_bounds(self.num_examples, self.num_shards)
    used = self.steps_per_epoch * self.shard_batch
    parts = [(self.permutation(s, epoch)[:used] + bounds[s][0]).reshape(-1, self.shard_batch)
             for s in self.local_shards]
    return np.concatenate(parts, axis=1)

  def local_rows(self, epoch: int) -> np.ndarray:
    """epoch_indices as rows of this process's block of the split (what an on-device copy of
    that block is gathered with), int32."""
    return (self.epoch_indices(epoch) - self.local_range[0]).astype(np.int32)

  def step_indices(self, step: int) -> np.ndarray:
    epoch, position = divmod(step, self.steps_per_epoch)
    return self.epoch_indices(epoch)[position]


@dataclasses.dataclass(frozen=True)
class EvalOrder:
  """Every example of a split once, in padded batches; the same batch count on every process."""

  num_examples: int
  num_shards: int
  local_shards: tuple
  shard_batch: int

  @classmethod
  def create(cls, num_examples: int, layout, global_batch: int) -> "EvalOrder":
    shard_batch = _rows_per_shard(global_batch, layout.num_shards, "eval batch size")
    return cls(num_examples, layout.num_shards, tuple(layout.local_shards), shard_batch)

  @property
  def num_batches(self) -> int:
    largest = max(hi - lo for lo, hi in shard_bounds(self.num_examples, self.num_shards))
    return -(-largest // self.shard_batch)

  @property
  def local_batch(self) -> int:
    return self.shard_batch * len(self.local_shards)

  def batch_indices(self, i: int) -> np.ndarray:
    """[local_batch] split indices of eval batch `i`, PAD where a shard has run out."""
    bounds = shard_bounds(self.num_examples, self.num_shards)
    parts = []
    for shard in self.local_shards:
      lo, hi = bounds[shard]
      rows = np.arange(lo + i * self.shard_batch, lo + (i + 1) * self.shard_batch)
      parts.append(np.where(rows < hi, rows, PAD))
    return np.concatenate(parts)
