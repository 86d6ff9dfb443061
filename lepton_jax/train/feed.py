"""The feed: what the loop hands the compiled train step besides the state.

A train split small enough (data.on_device_max_mb, one process) lives on the devices and the step
gathers its own batch there, so the host does nothing per step but dispatch; any other split is
assembled on the host and prefetched to the devices by a background thread. Both give exactly
the same batches (pipeline.TrainData defines them), so the choice never changes a result.
"""

import time

import jax
import numpy as np

from lepton_jax.data import pipeline


class TrainFeed:
  """Feeds `step(state, *args)` from `start_step`; `compile` builds that step ahead of time."""

  def __init__(self, task, dataset, start_step: int):
    self.task = task
    self._compiled = None
    config = task.config
    self.data = pipeline.TrainData(dataset, config.data.train_split, config.batch_size,
                                   config.seed, task.layout)
    budget = config.data.on_device_max_mb * 2**20
    self.on_device = jax.process_count() == 1 and 0 < self.data.nbytes() <= budget
    if self.on_device:
      self._source = pipeline.OnDeviceFeed(self.data, start_step, task.replicated)
      self.step_fn = _on_device_step(task)
    else:
      self._source = pipeline.HostFeed(self.data, start_step, self.to_device,
                                       config.data.prefetch)
      self.step_fn = task.train_step

  def to_device(self, batch: dict) -> dict:
    return pipeline.make_global(batch, self.task.batch_sharding)

  def abstract_args(self) -> tuple:
    """The step's arguments after the state, as ShapeDtypeStructs with their shardings."""
    if self.on_device:
      arrays, rows = self._source.arrays, self._source.rows_shape
      replicated = self.task.replicated
      return (jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated),
                           arrays),
              jax.ShapeDtypeStruct(rows, np.int32, sharding=replicated))
    local = self.data.batch(0)
    global_batch, sharding = self.task.config.batch_size, self.task.batch_sharding
    return ({k: jax.ShapeDtypeStruct((global_batch,) + v.shape[1:], v.dtype, sharding=sharding)
             for k, v in local.items()},)

  def compile(self) -> float:
    """Compiles the step ahead of the data; returns the seconds it took."""
    t0 = time.perf_counter()
    with self.task.tracing_context():
      lowered = self.step_fn.lower(self.task.abstract_state, *self.abstract_args())
    self._compiled = lowered.compile()
    return time.perf_counter() - t0

  def step(self, state):
    """One train step on the next batch: (state, metrics, seconds spent waiting for input)."""
    t0 = time.perf_counter()
    args = self._source.next_args()
    waited = time.perf_counter() - t0
    with jax.transfer_guard("disallow"):  # every input is already on the devices
      state, metrics = self._compiled(state, *args)
    return state, metrics, waited

  def next_args(self) -> tuple:
    return self._source.next_args()

  def close(self) -> None:
    self._source.close()

  def __enter__(self) -> "TrainFeed":
    return self

  def __exit__(self, *exc) -> None:
    self.close()


def _on_device_step(task):
  """The train step taking the on-device split and the epoch's row order instead of a batch."""
  step_fn, batch_sharding = task.train_step_fn, task.batch_sharding

  def on_device_step(state, arrays, epoch_rows):
    batch = pipeline.gather_batch(arrays, epoch_rows, state.step)
    return step_fn(state, jax.lax.with_sharding_constraint(batch, batch_sharding))

  shardings, replicated = task.state_shardings, task.replicated
  return jax.jit(on_device_step, in_shardings=(shardings, replicated, replicated),
                 out_shardings=(shardings, replicated), donate_argnums=0)
