"""Several train steps per dispatch, for models whose steps are shorter than the host's work.

On an accelerator a small model's step can take less time than the host needs to dispatch it,
so the device waits for the host. With `steps_per_dispatch` = k > 1 one jitted program runs k
steps (a `lax.scan` of the very train step, over k batches, or over the on-device split, which each
step gathers from by its own step number). What the user sees stays per step: every step's
metrics are logged, and a dispatch never runs past a step where something is due (a log row, an
evaluation, a checkpoint, the end of an epoch of the on-device split); there single steps run. The
pattern depends only on the step numbers, so a resumed run dispatches exactly as the uninterrupted
one did.

`steps_per_dispatch = 0` (auto) is 1 on CPUs, where a step runs on the host's own cores and
nothing is gained, and on accelerators as many steps as make a dispatch last about
TARGET_SECONDS, estimated from the step's model FLOPs at a modest share of the device's peak.
"""

import math
import time

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec as P

from lepton_jax import perf
from lepton_jax.parallel import mesh as mesh_lib

TARGET_SECONDS = 2e-3  # host dispatch costs ~0.1-0.3 ms: a few ms of device work hides it
ASSUMED_UTILIZATION = 0.3  # of the data-sheet peak, for the estimate of a step's time
MAX_STEPS = 32


def auto_steps(task, flops_per_device: float) -> int:
  """The `steps_per_dispatch` that `0` (auto) means for this task on its devices."""
  device = task.mesh.devices.flat[0]
  if device.platform == "cpu":
    return 1
  peak, _ = perf.peak_flops(device, task.config.perf.peak_flops)
  if not peak or not flops_per_device:
    return 1
  step_seconds = flops_per_device / (ASSUMED_UTILIZATION * peak)
  return max(1, min(MAX_STEPS, math.ceil(TARGET_SECONDS / step_seconds)))


class Dispatcher:
  """Runs the feed's step once, or k times in one program, as `span` decides."""

  def __init__(self, task, feed, steps: int):
    self.task, self.feed, self.k = task, feed, max(1, int(steps))
    self._single = self._multi = self._previous = None
    sharding = NamedSharding(task.mesh, P(None, mesh_lib.BATCH_AXES))
    self._stack = jax.jit(lambda *bs: jax.tree.map(lambda *xs: jnp.stack(xs), *bs),
                          out_shardings=sharding)

  @classmethod
  def for_task(cls, task, feed) -> "Dispatcher":
    """With config.steps_per_dispatch (0: auto_steps)."""
    steps = int(task.config.steps_per_dispatch)
    return cls(task, feed, steps or auto_steps(task, task.train_flops[0]))

  def compile(self) -> float:
    """Compiles the one-step program (and the k-step one); the seconds it took."""
    t0 = time.perf_counter()
    args = self.feed.abstract_args()
    with self.task.tracing_context():
      self._single = self.feed.step_fn.lower(self.task.abstract_state, *args).compile()
      if self.k > 1:
        multi_args = args if self.feed.on_device else (_stacked(args[0], self.k, self.task),)
        self._multi = self._multi_fn().lower(self.task.abstract_state, *multi_args).compile()
    return time.perf_counter() - t0

  def _multi_fn(self):
    step_fn, k, on_device = self.feed.step_fn, self.k, self.feed.on_device

    def multi(state, *args):
      if on_device:  # every step gathers its own batch from the same split
        return jax.lax.scan(lambda s, _: step_fn(s, *args), state, None, length=k)
      return jax.lax.scan(lambda s, batch: step_fn(s, batch), state, args[0])

    task = self.task
    return jax.jit(multi, out_shardings=(task.state_shardings, task.replicated), donate_argnums=0)

  def span(self, step: int, due) -> int:
    """Steps in the dispatch after `step`: k when none of the steps before its last is due for
    anything (`due(s)`) and it stays inside one epoch of an on-device split, else 1."""
    k = self.k
    if k == 1 or step + k > self.task.total_steps:
      return 1
    if any(due(s) for s in range(step + 1, step + k)):
      return 1
    per_epoch = self.task.steps_per_epoch
    if self.feed.on_device and step // per_epoch != (step + k - 1) // per_epoch:
      return 1
    return k

  def step(self, state, n: int):
    """n train steps (1 or k): (state, metrics ((n,) arrays when n > 1), seconds of input wait).

    The input wait is the time the host waited for the batch, unless the devices were still
    running the previous dispatch when the batch came: the loop dispatches ahead, so such a wait
    cost the devices nothing. (When they were done, all of it counts: an upper bound.)
    """
    t0 = time.perf_counter()
    if n == 1 or self.feed.on_device:
      args = self.feed.next_args()
      for _ in range(n - 1):
        self.feed.next_args()  # the on-device feed tracks the epoch's row order by step
    else:
      args = (self._stack(*[self.feed.next_args()[0] for _ in range(n)]),)
    waited = time.perf_counter() - t0
    if self._previous is not None and not self._previous.is_ready():
      waited = 0.0
    with jax.transfer_guard("disallow"):  # every input is already on the devices
      state, metrics = (self._single if n == 1 else self._multi)(state, *args)
    self._previous = jax.tree.leaves(metrics)[0]
    return state, metrics, waited


def _stacked(batch: dict, k: int, task) -> dict:
  sharding = NamedSharding(task.mesh, P(None, mesh_lib.BATCH_AXES))
  return {key: jax.ShapeDtypeStruct((k,) + x.shape, x.dtype, sharding=sharding)
          for key, x in batch.items()}
