"""The streamed input pipeline: any random-access source, with bounded host memory.

    batches = stream.train_batches(source, layout, global_batch=256, seed=0, start_step=S,
                                   workers=4)
    for batch in batches: ...              # this process's rows of batch S, S+1, ... (numpy)
    state = batches.get_state()            # JSON-able; the same on every process
    batches.set_state(state)               # continue exactly there
    batches.close()                        # workers stop

Each step is read as one batch (its example indices come from order.py, so the streamed batches
are exactly the on-device path's), with an optional per-example `transform` (deterministic) and
`augment(example, rng)` (training only, rng seeded by (seed, step, global row): independent of
processes and workers). With workers > 0 that is a Grain MapDataset over step numbers with
Grain's worker processes (spawned; results travel through a pipe). With none, batches are read
in this process: by the thread that asks for them when `threads` is 1 (128 MNIST records cost
0.13-0.15 ms of CPU that way, 0.20 ms through a one-thread pool, measured), or by a pool of
`threads` threads (image decoders release the GIL). Host memory is bounded by
(workers + 1) x (prefetch + threads) batches, whatever the dataset's size.

The position is the step: Grain's own iterator state would also record per-worker progress,
but with an index-based order the next step says everything, survives a change of worker or
process count, and fits in a line of JSON.
"""

import collections
import concurrent.futures
import dataclasses
import os
import threading
import time
from typing import Callable

import numpy as np

from lepton_jax.data import order as order_lib
from lepton_jax.errors import UserError

_PARENT_POLL_SECONDS = 1.0
_NO_SHARED_MEMORY = 2**62  # Grain's min_shm_size: arrays smaller than this are pickled
_ENDLESS = 2**62  # the step range of a training stream: more steps than any run takes


def default_workers() -> int:
  """Worker processes for a host: none on 2 cores or fewer (threads do), else half the cores
  (the other half runs the training step's host work), at most 8 (each is a Python process
  with its own imports)."""
  cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
  return 0 if cores <= 2 else min(8, cores // 2)


def resolve_workers(workers: int, decodes_images: bool) -> tuple[int, int]:
  """(worker processes, threads each) for data.workers: -1 (auto) is `default_workers()` where
  reading decodes images, else none (arrays cost little more than a copy to read, and starting
  worker processes costs seconds). Two threads decode images side by side (the decoders release
  the GIL); arrays take one (a second cost 0.12 ms of CPU more per MNIST batch, measured)."""
  threads = 2 if decodes_images else 1
  workers = int(workers)
  if workers >= 0:
    return workers, threads
  return (default_workers() if decodes_images else 0), threads


def check_state(state: dict, key: dict, process_count: int = 1) -> None:
  """Refuses a saved position `state` of another data order than `key` (a UserError saying
  what changed and, for a changed shard count, which setting keeps the saved order)."""
  mismatch = {k: (state.get(k), v) for k, v in key.items() if state.get(k) != v}
  if not mismatch:
    return
  what = ", ".join(f"{k} {old!r} then, {new!r} now" for k, (old, new) in mismatch.items())
  hint = ""
  saved_shards = state.get("num_shards")
  if "num_shards" in mismatch and isinstance(saved_shards, int) and saved_shards > 0:
    hint = (f" (--config.data.num_shards={saved_shards} keeps the saved order" +
            ("" if saved_shards % process_count == 0 else
             f" on a process count dividing {saved_shards}, not {process_count}") + ")")
  raise UserError(f"the saved input position belongs to another data order ({what}); resume "
                  f"with the same data, data.num_shards{hint}, batch_size and seed, or start a "
                  "new workdir")


def _read(source, indices) -> list[dict]:
  if len(indices) == 0:
    return []
  if hasattr(source, "__getitems__"):
    return list(source.__getitems__([int(i) for i in indices]))
  return [source[int(i)] for i in indices]


def _stack(examples: list[dict]) -> dict[str, np.ndarray]:
  return {k: np.stack([e[k] for e in examples]) for k in examples[0]}


class _TrainReader:
  """step -> this process's batch. Picklable: each worker keeps its own epoch cache."""

  def __init__(self, source, order: order_lib.TrainOrder, transform, augment, seed: int):
    self.source, self.order = source, order
    self.transform, self.augment, self.seed = transform, augment, seed
    self._epochs = ()  # ((epoch, indices), ...): the last two epochs' orders

  def __getstate__(self):
    return {**self.__dict__, "_epochs": ()}

  def _epoch_indices(self, epoch: int) -> np.ndarray:
    # The reader threads call this concurrently: read the cache once, replace it whole.
    cached = self._epochs
    for e, indices in cached:
      if e == epoch:
        return indices
    indices = self.order.epoch_indices(epoch)
    self._epochs = cached[-1:] + ((epoch, indices),)
    return indices

  def __call__(self, step: int) -> dict[str, np.ndarray]:
    epoch, position = divmod(int(step), self.order.steps_per_epoch)
    indices = self._epoch_indices(epoch)[position]
    if self.transform is None and self.augment is None and hasattr(self.source, "batch"):
      return self.source.batch(indices)  # decoded straight into the batch's arrays
    examples = _read(self.source, indices)
    if self.transform is not None:
      examples = [self.transform(e) for e in examples]
    if self.augment is not None:
      first = self.order.first_global_row
      examples = [self.augment(e, np.random.default_rng([self.seed, int(step), first + j]))
                  for j, e in enumerate(examples)]
    return _stack(examples)


class _EvalReader:
  """eval batch number -> padded batch with a boolean `mask` of the real rows."""

  def __init__(self, source, order: order_lib.EvalOrder, transform):
    self.source, self.order, self.transform = source, order, transform

  def _example(self, index: int) -> dict:
    example = _read(self.source, [index])[0]
    return self.transform(example) if self.transform is not None else example

  def __call__(self, i: int) -> dict[str, np.ndarray]:
    indices = self.order.batch_indices(int(i))
    mask = indices != order_lib.PAD
    if self.transform is None and hasattr(self.source, "batch") and mask.any():
      real = self.source.batch(indices[mask])  # decoded straight into arrays, then padded
      batch = {k: np.zeros((len(mask),) + v.shape[1:], v.dtype) for k, v in real.items()}
      for k, v in real.items():
        batch[k][mask] = v
      batch["mask"] = mask
      return batch
    examples = _read(self.source, indices[mask])
    if self.transform is not None:
      examples = [self.transform(e) for e in examples]
    # A batch without real rows (this process's shards have run out) is padding shaped like
    # the first example of its own shards (of the split, if those are empty).
    own = self.order.batch_indices(0)
    template = examples[0] if examples else self._example(
        int(own[own != order_lib.PAD][0]) if (own != order_lib.PAD).any() else 0)
    pad = {k: np.zeros_like(v) for k, v in template.items()}
    real = iter(examples)
    batch = _stack([next(real) if m else pad for m in mask])
    batch["mask"] = mask
    return batch


def die_with_parent(worker_index: int = 0, worker_count: int = 0) -> None:
  """Run in each worker process as it starts: a daemon thread ends the worker once the process
  that started it is gone, even killed by SIGKILL (a killed run must not leave workers behind).
  Polling, not PR_SET_PDEATHSIG: that signal follows the *thread* that started the worker, and
  the thread that first reads from a stream ends before the stream is closed."""
  del worker_index, worker_count
  parent = os.getppid()

  def watch():
    while os.getppid() == parent:
      time.sleep(_PARENT_POLL_SECONDS)
    os._exit(1)

  threading.Thread(target=watch, daemon=True, name="lepton-parent-watch").start()


def _threaded(reader, start: int, stop: int, prefetch: int, threads: int):
  """reader(step) for step in [start, stop), in order, computed by `threads` threads up to
  `prefetch + threads` steps ahead; with one thread, in the caller's (the device prefetch
  thread already runs ahead of the step: a second hand-off would only cost time)."""
  if threads <= 1:
    yield from (reader(step) for step in range(start, stop))
    return
  pool = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="lepton-read")
  pending, step = collections.deque(), start
  try:
    while step < stop or pending:
      while step < stop and len(pending) < prefetch + threads:
        pending.append(pool.submit(reader, step))
        step += 1
      yield pending.popleft().result()
  finally:
    pool.shutdown(wait=True, cancel_futures=True)


def _pipeline(reader, start: int, stop: int, workers: int, prefetch: int, threads: int):
  if not workers:
    return _threaded(reader, start, stop, prefetch, threads)
  _absl_flags_parsed()
  import grain
  ds = grain.MapDataset.range(start, stop).map(reader)
  # Grain runs at most prefetch_buffer_size threads at once: the buffer holds each one's batch.
  ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=threads,
                                            prefetch_buffer_size=max(prefetch, threads)))
  # Batches come back through a pipe, not shared memory: Grain's shared-memory blocks were left
  # behind (reported as leaked at exit) in 2 of 6 short training runs here. The pipe costs the
  # receiving process about 23 ms of CPU per 9.6 MB batch (64 images of 224x224x3, measured).
  ds = grain.experimental.WithOptionsIterDataset(
      ds, grain.experimental.DatasetOptions(min_shm_size=_NO_SHARED_MEMORY))
  ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers,
                                                   per_worker_buffer_size=prefetch),
                      worker_init_fn=die_with_parent)
  return iter(ds)


def _absl_flags_parsed() -> None:
  """Grain reads absl flags; outside absl.app.run nobody parsed them (their defaults do)."""
  from absl import flags
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()


@dataclasses.dataclass
class _Settings:
  workers: int
  prefetch: int
  threads: int


class Batches:
  """An iterator of host batches (dicts of numpy arrays) with a resumable position."""

  def __init__(self, reader, key: dict, start: int, stop: int, settings: _Settings):
    self._reader, self._key = reader, key
    self.num_examples = key.get("num_examples")  # of the split (all processes together)
    self._position, self._stop = start, stop
    self._settings = settings
    self._iterator = None

  def __iter__(self):
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    if self._position >= self._stop:
      self.close()  # a finished evaluation stops its workers without waiting for close()
      raise StopIteration
    if self._iterator is None:
      s = self._settings
      self._iterator = _pipeline(self._reader, self._position, self._stop, s.workers,
                                 s.prefetch, s.threads)
    batch = next(self._iterator)
    self._position += 1
    return batch

  def __len__(self) -> int:
    return self._stop - self._position

  @property
  def position(self) -> int:
    """The next batch's number (the step, for training)."""
    return self._position

  def get_state(self) -> dict:
    return {"position": self._position, **self._key}

  def set_state(self, state: dict) -> None:
    check_state(state, self._key)
    self.close()
    self._position = int(state["position"])

  def close(self) -> None:
    """Stops the worker processes (a later next() starts them again)."""
    if self._iterator is not None:
      close = getattr(self._iterator, "close", None)
      if close is not None:
        close()
      self._iterator = None

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()


def train_batches(source, layout, global_batch: int, seed: int, start_step: int = 0,
                  workers: int = 0, prefetch: int = 2, threads: int = 2,
                  transform: Callable | None = None, augment: Callable | None = None,
                  split: str = "train") -> Batches:
  """This process's rows of global batches start_step, start_step + 1, ... without end.

  `transform(example) -> example` and `augment(example, rng) -> example` run per example in
  the workers; both must pickle (module-level functions, functools.partial).
  """
  order = order_lib.TrainOrder.create(len(source), layout, global_batch, seed, split)
  reader = _TrainReader(source, order, transform, augment, seed)
  key = {"kind": "train", **order.key()}
  return Batches(reader, key, int(start_step), _ENDLESS, _settings(workers, prefetch, threads))


def eval_batches(source, layout, global_batch: int, workers: int = 0, prefetch: int = 2,
                 threads: int = 2, transform: Callable | None = None) -> Batches:
  """Every example of the split once, in padded batches with a boolean `mask`; every process
  gets the same number of batches."""
  order = order_lib.EvalOrder.create(len(source), layout, global_batch)
  reader = _EvalReader(source, order, transform)
  key = {"kind": "eval", "num_examples": order.num_examples, "num_shards": order.num_shards,
         "batch_size": global_batch}
  return Batches(reader, key, 0, order.num_batches, _settings(workers, prefetch, threads))


def _settings(workers: int, prefetch: int, threads: int) -> _Settings:
  if workers is None or workers < 0:
    workers = default_workers()
  if prefetch < 1:
    raise UserError(f"data.prefetch must be at least 1, got {prefetch}")
  return _Settings(int(workers), int(prefetch), max(1, int(threads)))
