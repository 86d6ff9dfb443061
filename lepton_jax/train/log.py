"""What the loop reports while it trains: interval means of the train metrics, throughput, MFU
and the progress line, written to metrics.jsonl, TensorBoard and the console.

The step's metrics stay on the device until a log step; then one copy per metric name brings the
whole interval to the host (per-step copies cost small models ~1.5% of their throughput). The
metrics of steps not logged yet travel in a checkpoint's meta (`pending_json`), so a resumed run
logs exactly the means the uninterrupted one would have.
"""

import time

import jax
import jax.numpy as jnp
import numpy as np

from lepton_jax import optimizers, perf
from lepton_jax.errors import TrainingDiverged, warn
from lepton_jax.eta import EtaEstimator
from lepton_jax.metric_writers import MetricWriter, ProgressLine, format_duration
from lepton_jax.parallel import mesh as mesh_lib


def raise_if_diverged(history: list[tuple[int, int, dict]]) -> None:
  """The NaN guard: stops the run at the first non-finite loss or gradient norm (host history)."""
  for step, _, metrics in history:
    for name in ("loss", "grad_norm"):
      if name in metrics and not np.isfinite(metrics[name]):
        raise TrainingDiverged(f"training diverged: {name} is {metrics[name]} at step {step}; "
                               "the last good checkpoint is kept; lower the learning rate or "
                               "clip gradients (optimizer.grad_clip_norm)", step=step)


# Every metric of many dispatches as one array each: one transfer per metric name.
_concat = jax.jit(lambda chunks: jax.tree.map(
    lambda *xs: jnp.concatenate([jnp.reshape(x, (-1,)) for x in xs]), *chunks))


def to_host(history: list[tuple[int, int, dict]]) -> list[tuple[int, int, dict]]:
  """`history` (entries: last step, steps it covers, metrics) with its on-device metrics fetched
  and split into one host entry per step: a dispatch of n steps carries (n,) arrays."""
  device = [entry for entry in history if any(isinstance(v, jax.Array) for v in entry[2].values())]
  if not device:
    return history
  flat = jax.device_get(_concat([metrics for _, _, metrics in device]))
  fetched, offset = [], 0
  for last, n, metrics in history:
    if not any(isinstance(v, jax.Array) for v in metrics.values()):
      fetched.append((last, n, metrics))
      continue
    fetched += [(last - n + 1 + i, 1, {k: v[offset + i] for k, v in flat.items()}) for i in range(n)]
    offset += n
  return fetched


def pending_json(history) -> list[dict]:
  """Train metrics of steps not yet logged (host values), for the checkpoint's meta."""
  rows = []
  for step, _, metrics in to_host(history):
    rows.append({"step": int(step),
                 "values": {k: np.asarray(v).item() for k, v in metrics.items()},
                 "dtypes": {k: np.asarray(v).dtype.name for k, v in metrics.items()}})
  return rows


def pending_from_json(rows) -> list[tuple[int, int, dict]]:
  """Inverse of pending_json: the same values with the same dtypes (so the next logged means are
  bit-identical to those of an uninterrupted run)."""
  return [(int(r["step"]), 1,
           {k: np.asarray(v, dtype=r["dtypes"][k]) for k, v in r["values"].items()})
          for r in rows or []]


class TrainLog:
  """The loop's metric logging: one `record` per step, `flush` at log steps; the ETA counts the
  evaluations, saves and final report ahead too."""

  def __init__(self, workdir: str, task, enabled: bool):
    self.task = task
    config = task.config
    self.writer = MetricWriter(workdir, enabled=enabled)
    self.progress = ProgressLine(task.total_steps, enabled=enabled)
    self.eta = EtaEstimator(task.total_steps, task.every("eval_every_steps"),
                            task.every("checkpoint_every_steps"), train_batch_size=config.batch_size,
                            eval_examples=task.info.split_size(config.eval.split),
                            final_report=enabled)
    self.history: list[tuple[int, int, dict]] = []  # (last step, steps, metrics) per dispatch
    self.device = task.mesh.devices.flat[0]
    self.flops = self.peak = None
    self.compile_seconds = 0.0
    self.input_wait = self.excluded = 0.0
    self.last_time, self.last_step, self.first_interval = time.perf_counter(), 0, True

  def __enter__(self) -> "TrainLog":
    return self

  def __exit__(self, *exc) -> None:
    self.writer.close()

  def print(self, text: str) -> None:
    self.progress.print(text)

  def setup(self) -> None:
    """The run's first lines: mesh, model and data, and a shortened warmup if any."""
    task, config = self.task, self.task.config
    self.print(mesh_lib.summary(task.mesh, config.batch_size))
    self.print(f"model {config.model.name}: {task.param_count:,} parameters; data {task.info.name}: "
               f"{task.steps_per_epoch} steps/epoch, {task.total_steps} steps in all")
    note = optimizers.warmup_note(config.optimizer, task.total_steps)
    if note:
      self.print(note)

  def start(self, step: int, pending: list[dict] | None) -> None:
    """Continues from `step`: drops rows logged after it, takes back the unlogged metrics."""
    self.writer.truncate_after(step)
    self.history = pending_from_json(pending)
    self.last_time, self.last_step = time.perf_counter(), step

  def compiled(self, seconds: float) -> None:
    """Reports the compile and the figures MFU is computed from."""
    self.compile_seconds = seconds
    self.flops, opaque = self.task.train_flops
    if opaque:
      warn(f"MFU leaves out {', '.join(opaque)} (kernels no FLOP count can see)")
    self.peak, source = perf.peak_flops(self.device, self.task.config.perf.peak_flops)
    self.print(f"train step compiled in {seconds:.1f}s; {self.flops / 1e9:,.3g} GFLOPs/step/device "
               f"(model FLOPs: 3x the forward pass); peak {self.peak / 1e12:,.3g} TFLOP/s per "
               f"device ({source})")

  def record(self, step: int, metrics: dict, input_wait: float, steps: int = 1) -> None:
    """The metrics of the dispatch that ended at `step` and ran `steps` steps ((steps,) arrays
    when more than one)."""
    self.history.append((step, steps, metrics))
    self.input_wait += input_wait

  def saved(self, step: int, seconds: float) -> None:
    """The loop waited `seconds` for a checkpoint save to start (the rest runs in the background)."""
    self.eta.record_checkpoint(step, seconds)

  def flush(self, step: int) -> None:
    """Writes the interval's means at log step `step` (and stops a diverged run)."""
    self.history = to_host(self.history)
    raise_if_diverged(self.history)
    elapsed = time.perf_counter() - self.last_time - self.excluded
    means = self._means(step, elapsed)
    self.writer.write(step, "train", means)
    n = step - self.last_step
    self.eta.record_train(n, elapsed)
    self.progress.update(step, {
        "loss": means["loss"], "ex/s": means["examples_per_sec"],
        "step": f"{means['step_time_ms']:.1f}ms",
        "wait": f"{100 * means['input_wait_fraction']:.0f}%",
        **({"MFU": f"{100 * means['mfu']:.1f}%"} if "mfu" in means else {})}, elapsed / n,
        eta_seconds=self.eta.remaining(step))
    self.history, self.input_wait, self.excluded = [], 0.0, 0.0
    self.last_time, self.last_step, self.first_interval = time.perf_counter(), step, False

  def pending(self) -> list[dict]:
    """The metrics of the steps not logged yet, for a checkpoint's meta (checked finite)."""
    self.history = to_host(self.history)
    raise_if_diverged(self.history)
    return pending_json(self.history)

  def _means(self, step: int, elapsed: float) -> dict:
    n = step - self.last_step
    means = {k: float(np.mean([m[k] for _, _, m in self.history])) for k in self.history[-1][2]}
    means.update(examples_per_sec=n * self.task.config.batch_size / elapsed,
                 step_time_ms=1000 * elapsed / n, input_wait_fraction=self.input_wait / elapsed)
    if self.first_interval:
      means["compile_seconds"] = self.compile_seconds
    if self.flops and self.peak:
      means["mfu"] = self.flops * n / elapsed / self.peak
    tokens = self.task.experiment.tokens_per_example
    if tokens:
      means["tokens_per_sec"] = means["examples_per_sec"] * tokens
    memory = perf.memory_in_use(self.device)
    if memory is not None:
      means["memory_bytes"] = memory
    return means

  def eval(self, step: int, split: str, metrics: dict, seconds: float, write: bool = True) -> None:
    self.excluded += seconds  # evaluation time is not training time
    self.eta.record_eval(step, seconds)
    if write:
      self.writer.write(step, split, metrics)
    self.print(f"eval {split} at step {step}: " +
               ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))

  def done(self, wall_seconds: float) -> None:
    self.print(f"done: {self.task.total_steps} steps in {format_duration(wall_seconds)}")

