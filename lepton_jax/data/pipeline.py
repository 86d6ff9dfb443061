"""The input pipeline: sharded, seeded, exactly resumable, prefetched to devices.

Data order. A split is cut into `num_shards` contiguous, disjoint shards (tfds
even_splits); each process reads only its own shards. Every shard contributes
`batch_size / num_shards` rows to each global batch, drawn from its own
permutation for the epoch, seeded by (seed, shard, epoch). So batch `step` is a
pure function of (seed, num_shards, step): a resumed run sees exactly the
batches the uninterrupted run would have seen, and the order does not depend
on how many devices or processes share the work (only on num_shards, which
defaults to the number of processes).

Evaluation covers every example of a split exactly once: the last batch of each
shard is padded and a `mask` marks the real rows.
"""

import dataclasses
import queue
import threading
from typing import Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np

from lepton_jax.data import base, tfds_source
from lepton_jax.errors import UserError


@dataclasses.dataclass(frozen=True)
class ShardLayout:
  """Which shards of a split this process reads, and the per-shard batch."""

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

  def per_shard(self, global_batch: int, what: str = "batch_size") -> int:
    if global_batch % self.num_shards:
      raise UserError(f"{what}={global_batch} is not divisible by data.num_shards="
                      f"{self.num_shards}; pick a multiple of {self.num_shards}")
    return global_batch // self.num_shards


def steps_per_epoch(split_size: int, layout: ShardLayout, global_batch: int, split: str) -> int:
  """Full global batches in an epoch: each shard gives its per-shard batch to every batch."""
  per_shard = layout.per_shard(global_batch)
  steps = min(tfds_source.shard_sizes(split_size, layout.num_shards)) // per_shard
  if steps == 0:
    raise UserError(f"batch_size={global_batch} is larger than the {split!r} split allows "
                    f"({split_size} examples in {layout.num_shards} shard(s)); lower batch_size")
  return steps


class TrainData:
  """Training batches of this process, as a function of the step."""

  def __init__(self, dataset: base.Dataset, split: str, global_batch: int, seed: int,
               layout: ShardLayout):
    self.layout = layout
    self.shard_batch = layout.per_shard(global_batch)
    self.seed = seed
    self.steps_per_epoch = steps_per_epoch(dataset.info().split_size(split), layout, global_batch,
                                           split)
    self.shards = {s: dataset.read(split, s, layout.num_shards) for s in layout.local_shards}
    self._perm_cache: dict[tuple[int, int], np.ndarray] = {}

  def _permutation(self, shard: int, epoch: int) -> np.ndarray:
    key = (shard, epoch)
    if key not in self._perm_cache:
      self._perm_cache.clear()  # only the current epoch's permutations are needed
      n = len(next(iter(self.shards[shard].values())))
      self._perm_cache[key] = np.random.default_rng([self.seed, shard, epoch]).permutation(n)
    return self._perm_cache[key]

  def batch(self, step: int) -> dict[str, np.ndarray]:
    """This process's rows of global batch number `step` (0-based)."""
    epoch, position = divmod(step, self.steps_per_epoch)
    parts = []
    for shard, arrays in self.shards.items():
      rows = self._permutation(shard, epoch)[position * self.shard_batch:(position + 1) * self.shard_batch]
      parts.append({k: v[rows] for k, v in arrays.items()})
    return {k: np.concatenate([p[k] for p in parts]) if len(parts) > 1 else parts[0][k] for k in parts[0]}

  def batches(self, start_step: int) -> Iterator[dict[str, np.ndarray]]:
    step = start_step
    while True:
      yield self.batch(step)
      step += 1

  def local_arrays(self) -> dict[str, np.ndarray]:
    """This process's shards, concatenated in shard order (what `epoch_rows` indexes)."""
    parts = list(self.shards.values())
    return {k: np.concatenate([p[k] for p in parts]) if len(parts) > 1 else parts[0][k]
            for k in parts[0]}

  def epoch_rows(self, epoch: int) -> np.ndarray:
    """[steps_per_epoch, local batch] rows of `local_arrays()` making each batch of `epoch`:
    `local_arrays()[k][epoch_rows(e)[p]] == batch(e * steps_per_epoch + p)[k]`."""
    parts, offset = [], 0
    for shard, arrays in self.shards.items():
      used = self._permutation(shard, epoch)[:self.steps_per_epoch * self.shard_batch]
      parts.append(used.reshape(self.steps_per_epoch, self.shard_batch) + offset)
      offset += len(next(iter(arrays.values())))
    return np.concatenate(parts, axis=1).astype(np.int32)

  def nbytes(self) -> int:
    return sum(v.nbytes for arrays in self.shards.values() for v in arrays.values())


class HostFeed:
  """Feeds `step(state, batch)` with batches assembled on the host and prefetched to devices."""

  def __init__(self, data: TrainData, start_step: int, to_device: Callable, size: int):
    self._batches = prefetch(data.batches(start_step), to_device, size)

  def next_args(self) -> tuple:
    return (next(self._batches),)

  def close(self) -> None:
    self._batches.close()


class OnDeviceFeed:
  """Feeds `step(state, arrays, epoch_rows)`: the split lives on the devices and the step
  gathers its own batch (`gather_batch`), exactly TrainData's batch for `state.step`.

  The split goes to every device once and each epoch's row order once per epoch, so nothing is
  assembled or copied per step: for small datasets that host work, not the step, limits
  throughput. One process only: across hosts each process feeds its own rows (HostFeed).
  """

  def __init__(self, data: TrainData, start_step: int, replicated: jax.sharding.Sharding):
    self.data = data
    self.replicated = replicated
    self.arrays = jax.device_put(data.local_arrays(), replicated)
    self._step = start_step
    self._rows_epoch, self._rows = None, None

  @property
  def rows_shape(self) -> tuple[int, int]:
    """The shape of an epoch's row order: [steps_per_epoch, this process's batch]."""
    return (self.data.steps_per_epoch, self.data.shard_batch * len(self.data.shards))

  def next_args(self) -> tuple:
    epoch = self._step // self.data.steps_per_epoch
    if epoch != self._rows_epoch:
      self._rows = jax.device_put(self.data.epoch_rows(epoch), self.replicated)
      self._rows_epoch = epoch
    self._step += 1
    return self.arrays, self._rows

  def close(self) -> None:
    self.arrays = self._rows = None


def gather_batch(arrays: dict, epoch_rows: jax.Array, step: jax.Array) -> dict:
  """Inside a jitted step: batch number `step` from on-device `arrays` (see OnDeviceFeed)."""
  position = (step % epoch_rows.shape[0]).astype(jnp.int32)
  rows = jax.lax.dynamic_index_in_dim(epoch_rows, position, keepdims=False)
  return {k: jnp.take(v, rows, axis=0, mode="clip") for k, v in arrays.items()}


class EvalData:
  """Every example of a split once, in padded batches with a `mask`."""

  def __init__(self, dataset: base.Dataset, split: str, global_batch: int, layout: ShardLayout):
    total = dataset.info().split_size(split)
    self.split = split
    self.shard_batch = layout.per_shard(global_batch, "eval batch size")
    self.num_examples = total
    # Every process must run the same number of eval steps: size them by the largest shard.
    largest = max(tfds_source.shard_sizes(total, layout.num_shards))
    self.num_batches = -(-largest // self.shard_batch)
    self.shards = [dataset.read(split, s, layout.num_shards) for s in layout.local_shards]

  def batches(self) -> Iterator[dict[str, np.ndarray]]:
    b = self.shard_batch
    for i in range(self.num_batches):
      parts = []
      for arrays in self.shards:
        n = len(next(iter(arrays.values())))
        lo, hi = min(i * b, n), min((i + 1) * b, n)
        part = {}
        for k, v in arrays.items():
          chunk = v[lo:hi]
          pad = np.zeros((b - len(chunk),) + v.shape[1:], v.dtype)
          part[k] = np.concatenate([chunk, pad])
        part["mask"] = np.arange(b) < (hi - lo)
        parts.append(part)
      yield {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def prefetch(batches: Iterator, to_device: Callable, size: int = 2) -> Iterator:
  """Runs `to_device` on upcoming batches in a background thread.

  Host-side batch assembly and the host-to-device copy overlap the step. The
  thread stops when the consumer stops asking (the generator is closed).
  """
  q: queue.Queue = queue.Queue(maxsize=size)
  stop = threading.Event()
  done = object()

  def put(item) -> bool:
    """Blocks until `item` is queued (True) or the consumer has stopped (False)."""
    while not stop.is_set():
      try:
        q.put(item, timeout=0.1)
        return True
      except queue.Full:
        continue
    return False

  def producer():
    try:
      for batch in batches:
        if not put(to_device(batch)):
          return
      put(done)
    except BaseException as e:  # re-raised in the consumer, where it can be reported
      put(e)

  thread = threading.Thread(target=producer, daemon=True, name="lepton-prefetch")
  thread.start()
  try:
    while True:
      item = q.get()
      if item is done:
        return
      if isinstance(item, BaseException):
        raise item
      yield item
  finally:
    # Let the producer finish its current batch and exit before the caller goes
    # on: a thread still inside a device transfer at interpreter exit can abort it.
    stop.set()
    thread.join(timeout=60)


def make_global(batch: dict[str, np.ndarray], sharding: jax.sharding.Sharding) -> dict[str, jax.Array]:
  """Assembles global arrays from every process's local rows of the batch."""
  return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in batch.items()}
