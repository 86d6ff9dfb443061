"""The feed: what the loop hands the compiled train step besides the state.

A train split small enough (data.on_device_max_mb, one process) lives on the devices and the
step gathers its own batch there, so the host does nothing per step but dispatch. Any other
split streams (data/stream.py): this process's shards, read by index in the seeded global
order, decoded in `data.workers` worker processes, batched, and prefetched onto the devices
by a background thread; host memory holds a few batches, whatever the split's size. Both take
their indices from data/order.py, so the choice never changes a result.

The position in the data is the step plus the key of the data order (`position()`): the loop
saves it in every checkpoint's meta (one record, the same for every process, whose rows
follow from it), and `check_position` refuses a resume whose order differs, before anything is
written.
"""

import jax
import numpy as np

from lepton_jax.data import datasets, order as order_lib, pipeline, sources, stream


def train_order(task, source) -> order_lib.TrainOrder:
  config = task.config
  return order_lib.TrainOrder.create(len(source), task.layout, config.batch_size, config.seed,
                                     config.data.train_split)


def order_key(task, source) -> dict:
  """What a saved position is valid for: the data order and the tokenizer of the data."""
  key = {"kind": "train", **train_order(task, source).key()}
  if task.info.tokenizer:
    key["tokenizer"] = task.info.tokenizer
  return key


def check_position(task, dataset, saved: dict | None) -> None:
  """Refuses to resume from a checkpoint whose input position belongs to another data order
  or tokenizer (UserError). Checkpoints saved before positions were recorded pass."""
  if not saved:
    return
  datasets.checked_tokenizer(task.info, saved.get("tokenizer"), "this run's checkpoint")
  key = order_key(task, dataset.split_source(task.config.data.train_split))
  key.pop("tokenizer", None)
  stream.check_state(saved, key, jax.process_count())


def fits_on_device(task, source, order: order_lib.TrainOrder) -> bool:
  """Whether this process's part of the split is kept on the devices."""
  lo, hi = order.local_range
  budget = task.config.data.on_device_max_mb * 2**20
  return jax.process_count() == 1 and 0 < sources.nbytes(source, hi - lo, lo) <= budget


class TrainFeed:
  """Feeds `step_fn(state, *args)` from `start_step`: `next_args()` gives the next step's
  arguments, already on the devices (train.dispatch.Dispatcher compiles and runs the step)."""

  def __init__(self, task, dataset, start_step: int):
    self.task = task
    self.source = dataset.split_source(task.config.data.train_split)
    self.order = train_order(task, self.source)
    self._key = order_key(task, self.source)
    self._step = int(start_step)
    self.on_device = fits_on_device(task, self.source, self.order)
    if self.on_device:
      self._feed = _OnDevice(self.source, self.order, start_step, task.replicated)
      self.step_fn = _on_device_step(task)
    else:
      self._feed = _Streamed(self.source, task, start_step, self.to_device)
      self.step_fn = task.train_step

  def to_device(self, batch: dict) -> dict:
    return pipeline.make_global(batch, self.task.batch_sharding)

  def host_batch(self, step: int) -> dict[str, np.ndarray]:
    """This process's rows of global batch `step`, on the host (as the stream reads them)."""
    return sources.gather(self.source, self.order.step_indices(step))

  def position(self) -> dict:
    """The input position after the steps fed so far (JSON; for the checkpoint's meta)."""
    return {"position": self._step, **self._key}

  def abstract_args(self) -> tuple:
    """The step's arguments after the state, as ShapeDtypeStructs with their shardings."""
    if self.on_device:
      replicated = self.task.replicated
      return (jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated),
                           self._feed.arrays),
              jax.ShapeDtypeStruct(self._feed.rows_shape, np.int32, sharding=replicated))
    example = self.source[self.order.local_range[0]]  # one of this process's own examples
    global_batch, sharding = self.task.config.batch_size, self.task.batch_sharding
    return ({k: jax.ShapeDtypeStruct((global_batch,) + np.shape(v), np.asarray(v).dtype,
                                     sharding=sharding) for k, v in example.items()},)

  def next_args(self) -> tuple:
    args = self._feed.next_args()
    self._step += 1
    return args

  def close(self) -> None:
    self._feed.close()

  def __enter__(self) -> "TrainFeed":
    return self

  def __exit__(self, *exc) -> None:
    self.close()


class _Streamed:
  """Batches from the stream's workers, made global arrays ahead of the step."""

  def __init__(self, source, task, start_step: int, to_device):
    data = task.config.data
    workers, threads = stream.resolve_workers(data.workers, sources.decodes_images(source))
    self.batches = stream.train_batches(
        source, task.layout, task.config.batch_size, task.config.seed, start_step,
        workers=workers, threads=threads, prefetch=data.prefetch, split=data.train_split)
    self._device = pipeline.prefetch(self.batches, to_device, data.prefetch)

  def next_args(self) -> tuple:
    return (next(self._device),)

  def close(self) -> None:
    self._device.close()
    self.batches.close()


class _OnDevice:
  """The split on every device, and each epoch's rows (order.TrainOrder.local_rows): the step
  gathers its own batch (`pipeline.gather_batch`), exactly the stream's batch for `state.step`.

  The split goes to the devices once and each epoch's row order once per epoch, so nothing is
  assembled or copied per step: for small datasets that host work, not the step, limits
  throughput.
  """

  def __init__(self, source, order: order_lib.TrainOrder, start_step: int, replicated):
    lo, hi = order.local_range
    self.order, self.replicated = order, replicated
    self.arrays = jax.device_put(sources.gather(source, range(lo, hi)), replicated)
    self._step = start_step
    self._rows_epoch, self._rows = None, None

  @property
  def rows_shape(self) -> tuple[int, int]:
    return (self.order.steps_per_epoch, self.order.local_batch)

  def next_args(self) -> tuple:
    epoch = self._step // self.order.steps_per_epoch
    if epoch != self._rows_epoch:
      self._rows = jax.device_put(self.order.local_rows(epoch), self.replicated)
      self._rows_epoch = epoch
    self._step += 1
    return self.arrays, self._rows

  def close(self) -> None:
    self.arrays = self._rows = None


def _on_device_step(task):
  """The train step taking the on-device split and the epoch's row order instead of a batch."""
  step_fn, batch_sharding = task.train_step_fn, task.batch_sharding

  def on_device_step(state, arrays, epoch_rows):
    batch = pipeline.gather_batch(arrays, epoch_rows, state.step)
    return step_fn(state, jax.lax.with_sharding_constraint(batch, batch_sharding))

  shardings, replicated = task.state_shardings, task.replicated
  return jax.jit(on_device_step, in_shardings=(shardings, replicated, replicated),
                 out_shardings=(shardings, replicated), donate_argnums=0)
