"""Stopping a run early and cleanly: SIGTERM/SIGINT, and JAX's preemption notices on pods.

The loop asks `should_stop` after every step; when it says yes the loop saves a checkpoint, waits
for it to commit and raises `Preempted` (exit status 75: run the same command again to continue).
"""

import signal
import threading

import jax
import numpy as np
from jax.experimental import multihost_utils

PREEMPTED_EXIT_CODE = 75  # EX_TEMPFAIL: "checkpoint saved, run the same command again"


class Preempted(Exception):
  """Raised after the preemption checkpoint has committed."""

  exit_code = PREEMPTED_EXIT_CODE


class StopFlag:
  """Set by SIGTERM/SIGINT: the loop finishes its step, saves and exits."""

  def __init__(self):
    self.event = threading.Event()

  def install(self) -> "StopFlag":
    for sig in (signal.SIGTERM, signal.SIGINT):
      signal.signal(sig, lambda *_: self.event.set())
    return self

  def __call__(self) -> bool:
    return self.event.is_set()


def reached_preemption_sync_point(step: int) -> bool:
  """True at the step all hosts agreed to save at after a preemption notice.

  Only meaningful on multi-process runs started with jax.distributed (the preemption service
  runs there); False otherwise.
  """
  if jax.process_count() == 1:
    return False
  try:
    return bool(multihost_utils.reached_preemption_sync_point(step))
  except RuntimeError:  # preemption service disabled (jax_enable_preemption_service)
    return False


def should_stop(step: int, stop_requested, exchange: bool) -> bool:
  """Whether to save and exit after `step`; the same answer on every process.

  One process: the stop flag (SIGTERM/SIGINT). Several: JAX's preemption sync point (checked
  every step), and, at steps where `exchange` is true (the same steps on every process), whether
  any process's flag is set.
  """
  local = bool(stop_requested()) if stop_requested is not None else False
  if jax.process_count() == 1:
    return local
  stop = reached_preemption_sync_point(step)
  if exchange:
    flags = multihost_utils.process_allgather(np.asarray(local, np.int32))
    stop = stop or bool(np.any(flags))
  return stop
