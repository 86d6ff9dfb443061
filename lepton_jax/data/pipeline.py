"""The device end of the input pipeline: host batches become global arrays, prefetched.

The host side (which examples make each batch, read by worker processes) is order.py and
stream.py; this module moves batches onto the devices (`make_global`, in a background thread:
`prefetch`) and, for a split small enough to live on the devices, gathers a batch there inside
the jitted step (`gather_batch`), from the same indices the stream would read.
"""

import queue
import threading
from typing import Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np


def gather_batch(arrays: dict, epoch_rows: jax.Array, step: jax.Array) -> dict:
  """Inside a jitted step: batch number `step` from on-device `arrays` (the split, which
  train/feed.py keeps there) and the epoch's rows (order.TrainOrder.local_rows)."""
  position = (step % epoch_rows.shape[0]).astype(jnp.int32)
  rows = jax.lax.dynamic_index_in_dim(epoch_rows, position, keepdims=False)
  return {k: jnp.take(v, rows, axis=0, mode="clip") for k, v in arrays.items()}


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
  """Assembles global arrays from every process's local rows of the batch (one process: its
  rows are the batch, and a plain device_put costs a fifth less CPU)."""
  if jax.process_count() == 1:
    return jax.device_put(batch, sharding)
  return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in batch.items()}
