"""How checkpoints are written so that saving barely slows training.

What a save costs the loop is measured by benchmarks/bench_checkpointing.py. Two things
keep it small:

  * The state is written by Orbax's pytree handler without zstd compression
    (`checkpoint.compress`), without Orbax's `_sharding` file and without its per-array
    metadata store. For a small state those three are about a third of a save's CPU time,
    and restoring never needs them here: it always has the target's shardings. The result is
    still plain Orbax (`StandardCheckpointer().restore(<step>/state)` gives NumPy arrays).
  * All Orbax calls of a training run go through one thread that, on the CPU backend, runs
    at low priority (Linux nice 10, `checkpoint.writer_priority`). The threads Orbax and
    TensorStore start from it inherit it, so the background write yields most of the cores to
    the train step, yet keeps a share when other programs keep every core busy: a stop
    checkpoint then still commits within a preemption's grace period, where an idle-priority
    writer (SCHED_IDLE, 'idle') would wait for those programs (measured in
    tests/test_trust.py: exit after SIGTERM under full load 2.9-3.4 s at 'low', 27 s at 'idle').
    In a one-process run the loop does not even wait for the state to reach the host: it hands
    the writer a copy made on the device (so the next step may donate the original) and trains
    on; the writer then waits for the commit, so a failed write reaches the loop at once. On
    GPUs and TPUs the step does not run on the host's cores, and the writer keeps normal
    priority: there the loop waits while the state is copied to the host, and no second copy
    takes accelerator memory.
"""

import concurrent.futures
import os
import sys
import threading

import jax
import orbax.checkpoint as ocp

from lepton_jax.errors import warn

WRITER_PRIORITIES = ("auto", "low", "idle", "normal")
# The writer's nice value at 'low': it yields to the train step (nice 0) for most of the cores'
# time, yet keeps a share when other programs keep every core busy, where SCHED_IDLE ('idle')
# would wait for them (a stop checkpoint could then miss a preemption's grace period).
LOW_NICE = 10


def state_handler(compress: bool) -> ocp.PyTreeCheckpointHandler:
  """Orbax's pytree handler, writing no `_sharding` file and no array-metadata store."""
  types = ocp.type_handlers
  arrays = types.ArrayHandler(enable_write_sharding_file=False, array_metadata_store=None)
  registry = types.create_type_handler_registry(*[
      (ty, arrays if ty is jax.Array else types.get_type_handler(ty))
      for ty in types.supported_types()])
  return ocp.PyTreeCheckpointHandler(use_compression=compress, type_handler_registry=registry)


def resolve_priority(writer_priority: str) -> str:
  """The writer's priority: `auto` is `low` on the CPU backend of Linux (where the writer and
  the train step compete for the same cores), `normal` elsewhere."""
  if writer_priority == "auto":
    return "low" if jax.default_backend() == "cpu" and lowering_supported() else "normal"
  return writer_priority


def lowering_supported() -> bool:
  """Per-thread priorities (nice values, SCHED_IDLE) are Linux's."""
  return hasattr(os, "SCHED_IDLE") and sys.platform.startswith("linux")


def _lower_priority(priority: str) -> None:
  """Lowers the calling thread's priority ('low': nice LOW_NICE; 'idle': SCHED_IDLE).

  Threads it starts inherit it. An unprivileged thread cannot raise it again, which is why one
  dedicated thread makes the Orbax calls.
  """
  if not lowering_supported():
    return
  tid = threading.get_native_id()
  try:
    if priority == "idle":
      os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
    else:
      os.setpriority(os.PRIO_PROCESS, tid, max(LOW_NICE, os.getpriority(os.PRIO_PROCESS, tid)))
  except OSError as e:  # e.g. a seccomp profile that forbids it
    warn(f"the checkpoint writer keeps normal priority (lowering it was refused: {e})")


class OrbaxThread:
  """Runs calls on one thread of lowered priority ('low' or 'idle'), each call blocking until it
  returns. At 'normal', calls run directly in the caller's thread."""

  def __init__(self, priority: str):
    self.lowered = priority != "normal"
    self._pool = None
    if self.lowered:
      self._pool = concurrent.futures.ThreadPoolExecutor(
          max_workers=1, thread_name_prefix="lepton_orbax",
          initializer=_lower_priority, initargs=(priority,))

  def call(self, fn, *args, **kwargs):
    if self._pool is None:
      return fn(*args, **kwargs)
    return self._pool.submit(fn, *args, **kwargs).result()

  def submit(self, fn, *args, **kwargs) -> concurrent.futures.Future:
    """Starts `fn` on the writer thread (which must exist: `lowered`) and returns at once."""
    return self._pool.submit(fn, *args, **kwargs)

  def close(self) -> None:
    if self._pool is not None:
      self._pool.shutdown(wait=True)
      self._pool = None
