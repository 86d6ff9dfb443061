"""Orbax checkpoints in `WORKDIR/checkpoints`: async saves, atomic commits and
exact resume onto any mesh. (The checksums and fit checks are in
checkpoint_checks.py; starting from another run's parameters, in init_from.py.)

A checkpoint is plain Orbax, one directory per step:

    WORKDIR/checkpoints/<step>/state     the TrainState pytree (PyTreeSave): step, params,
                                         opt_state, model_state, rng, ema_params
    WORKDIR/checkpoints/<step>/meta      JSON: step, the last eval metrics, and the train
                                         metrics of the steps not yet logged (exact resume)
    WORKDIR/checkpoints/<step>/metrics   JSON: the eval metrics of this step, if it evaluated;
                                         Orbax ranks the `best` checkpoints by them

so `orbax.checkpoint` alone restores it: `StandardCheckpointer().restore(<step>/state)` gives
NumPy arrays; `PyTreeCheckpointer().restore(<step>/state, args=PyTreeRestore(item=target,
restore_args=checkpoint_utils.construct_restore_args(target)))` places them on a target's shardings.

How a save is kept from slowing training down: checkpoint_writer.py.

Guarantees:
  * A save is written into `<step>.orbax-checkpoint-tmp-*` (gs://: without a
    `commit_success.txt`) and renamed (committed) when complete, so a half-written
    step is never taken for a checkpoint; a killed process leaves only a tmp dir,
    removed when training starts again.
  * Only finite state is saved: a NaN or inf anywhere in the state stops the run
    (`training diverged`) and the last checkpoint stays the last good one.
  * A save that fails (a full disk, lost permissions) stops the run at the next
    step with one line; the last committed checkpoint is untouched.
  * Old checkpoints are deleted only after a newer one has committed, and only
    beyond the newest `checkpoint.keep_last` and the best `checkpoint.keep_best`.
  * Resuming tries the newest step first; one with any unreadable part (data,
    metadata, the saved meta or metrics) is reported in one line and the one
    before it is used; the unreadable ones are then moved to
    WORKDIR/checkpoints_corrupt/. Nothing is ever deleted for being unreadable: one
    that cannot be moved (another file system, permissions) stays in place.
  * Every array's checksum is saved in `meta` and verified after restoring: a
    silently garbled data file counts as unreadable, not as a checkpoint.
  * A checkpoint that does not fit the model (other shapes or tree) is an error
    naming the first parameter that differs, before anything is restored.
  * The state is restored with the shardings of the target mesh (any device
    count, any sharding rules): Orbax reshards.
"""

import dataclasses
import json
import logging
import math
import time

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from jax.experimental import multihost_utils

from lepton_jax.checkpoint import noise
from lepton_jax.checkpoint.integrity import (all_finite, check_fits, checksum_array, checksums_by_path,
                                          compile_checksums, metadata_shapes, verify_checksums)
from lepton_jax.checkpoint.writer import (WRITER_PRIORITIES, OrbaxThread, resolve_priority,
                                          state_handler)
from lepton_jax.errors import TrainingDiverged, UserError, warn
from lepton_jax.run_record import absolute_path

STATE, META = "state", "meta"
CORRUPT_DIR = "checkpoints_corrupt"
DIVERGED_DIR = "checkpoints_diverged"


class _QuietMissingMetrics(logging.Filter):
  """Orbax warns at every save without eval metrics; most saves have none, by design."""

  def filter(self, record: logging.LogRecord) -> bool:
    return "did not provide metrics" not in record.getMessage()


class _QuietReportedFailures(logging.Filter):
  """Orbax logs each failed background write with a traceback, from every thread it passes
  through; the same error reaches the Checkpointer (poll, wait, close), which reports it in one
  line. Orbax's other messages pass."""

  def filter(self, record: logging.LogRecord) -> bool:
    return not (record.exc_info and record.levelno >= logging.ERROR
                and "orbax" in (record.pathname or ""))


def _quiet_orbax() -> None:
  """Installs the filters once, when the first Checkpointer opens (not at import)."""
  absl_logger = logging.getLogger("absl")
  for quiet in (_QuietMissingMetrics, _QuietReportedFailures):
    if not any(isinstance(f, quiet) for f in absl_logger.filters):
      absl_logger.addFilter(quiet())
  noise.ignore_abandoned_writes()


def describe(e: BaseException) -> str:
  """`Type: first line` of an exception, for one-line warnings; a long line keeps its end, where
  TensorStore puts the system's reason (No space left on device, File too large...)."""
  lines = str(e).strip().splitlines()
  text = lines[0] if lines else ""
  if len(text) > 300:
    text = f"{text[:180]} ... {text[-100:]}"
  return f"{type(e).__name__}: {text}"


@dataclasses.dataclass
class Restored:
  step: int
  state: object
  meta: dict


class _OrbaxManager(ocp.CheckpointManager):
  """Orbax's manager, taking a garbled `metrics` item for a corrupt checkpoint (restore_latest
  then falls back past it) instead of failing to open the whole directory."""

  def __init__(self, *args, **kwargs):
    self.garbled_metrics: set[int] = set()  # before super(): it reads every step's metrics
    super().__init__(*args, **kwargs)

  def _get_metrics(self, step: int):
    try:
      return super()._get_metrics(step)
    except (ValueError, OSError):  # not JSON, or unreadable
      self.garbled_metrics.add(int(step))
      return None


class Checkpointer:
  """The checkpoints of one workdir.

  Training opens it with `Checkpointer.for_training(workdir, config)`; readers
  (evaluation, export) with `Checkpointer(workdir)`, which never deletes or
  cleans anything up, so it is safe next to a running training job.
  """

  def __init__(self, workdir: str, *, keep_last: int = 3, keep_best: int = 1,
               best_metric: str = "accuracy", best_mode: str = "max", async_save: bool = True,
               compress: bool = False, writer_priority: str = "normal", cleanup_tmp: bool = False):
    if keep_last < 1:
      raise UserError(f"checkpoint.keep_last={keep_last}: keep at least 1 (resuming needs the "
                      "newest checkpoint)")
    if keep_best < 0:
      raise UserError(f"checkpoint.keep_best={keep_best}: must be >= 0")
    if best_mode not in ("max", "min"):
      raise UserError(f"eval.best_mode={best_mode!r}: choose max or min")
    if writer_priority not in WRITER_PRIORITIES:
      raise UserError(f"checkpoint.writer_priority={writer_priority!r}: choose one of "
                      f"{', '.join(WRITER_PRIORITIES)}")
    _quiet_orbax()
    self.workdir = absolute_path(workdir)
    self.directory = self.workdir / "checkpoints"
    self.best_metric, self.best_mode = best_metric, best_mode
    self._checksums = None  # compiled by restore_latest for the run's state
    self._pending = None  # the writer thread's save in progress (lowered writer)
    self._in_flight = None  # step of the save Orbax may still be writing in the background
    self._failed = False  # a save failed and was reported: closing must not report it again
    self._async = async_save
    self.keep_best = keep_best
    worst = -math.inf if best_mode == "max" else math.inf

    def metric_value(metrics) -> float:
      value = (metrics or {}).get(best_metric)
      if not isinstance(value, (int, float)) or not math.isfinite(value):
        return worst
      return float(value)

    policies = [ocp.checkpoint_managers.LatestN(n=keep_last)]
    if keep_best:
      policies.append(ocp.checkpoint_managers.BestN(
          get_metric_fn=metric_value, reverse=best_mode == "min", n=keep_best,
          keep_checkpoints_without_metrics=False))
    options = ocp.CheckpointManagerOptions(
        preservation_policy=ocp.checkpoint_managers.AnyPreservationPolicy(policies),
        # best_fn makes the manager write each save's `metrics` (BestN ranks by them).
        best_fn=metric_value if keep_best else None,
        best_mode=best_mode,
        enable_async_checkpointing=async_save,
        create=True,
        cleanup_tmp_directories=cleanup_tmp,
    )
    # Every thread Orbax starts, from the manager's own on, descends from the writer thread.
    self._writer = OrbaxThread(resolve_priority(writer_priority))
    self.manager = self._writer.call(
        _OrbaxManager, self.directory, options=options,
        item_handlers={STATE: state_handler(compress), META: ocp.JsonCheckpointHandler()})

  @classmethod
  def for_training(cls, workdir: str, config) -> "Checkpointer":
    c = config.checkpoint
    return cls(workdir, keep_last=int(c.keep_last), keep_best=int(c.keep_best),
               best_metric=config.eval.best_metric, best_mode=config.eval.best_mode,
               async_save=bool(c.async_save), compress=bool(c.compress),
               writer_priority=str(c.writer_priority), cleanup_tmp=True)

  # ------------------------------------------------------------------ queries
  def all_steps(self) -> list[int]:
    return sorted(int(s) for s in self.manager.all_steps())

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def step_dir(self, step: int) -> epath.Path:
    return self.directory / str(int(step))

  # --------------------------------------------------------------------- save
  def save(self, step: int, state, meta: dict | None = None, metrics: dict | None = None,
           force: bool = True) -> None:
    """Starts saving `state` as checkpoint `step` (returns before it is written
    when async). `metrics`: this step's eval metrics, which rank the best
    checkpoints; `meta`: any JSON, kept in the `meta` item.

    With a lowered-priority writer (the CPU backend), async saves and one process, the
    state is first copied on the device, so that the next step may donate it, and the
    writer thread does the rest while training goes on; otherwise the caller waits until
    the state is on the host (async) or written (not async). Device programs (the copy,
    the checksums) are dispatched from this thread either way: launched from two threads,
    programs with collectives could reach the devices in different orders.
    """
    step = int(step)
    self._finish_pending()
    if step in self.manager.all_steps():
      return
    if metrics is not None and self.best_metric not in metrics:
      metrics = None
    metrics = _plain(metrics) if metrics is not None else None
    self._in_flight = step
    if self._writer.lowered and self._async and jax.process_count() == 1:
      snapshot = _snapshot(state)
      self._pending = self._writer.submit(self._save_and_commit, step, snapshot,
                                          all_finite(snapshot),
                                          checksum_array(snapshot, self._checksums), meta,
                                          metrics, force)
    else:
      self._writer.call(self._save_now, step, state, all_finite(state),
                        checksum_array(state, self._checksums), meta, metrics, force)

  def _save_now(self, step: int, state, finite, sums, meta: dict | None, metrics: dict | None,
                force: bool):
    if not bool(finite):  # a checkpoint holds finite state only: resuming it must be safe
      raise TrainingDiverged(
          f"training diverged: the state at step {step} holds non-finite values (NaN or inf) and "
          f"was not saved; the last good checkpoint ({self.latest_step()}) is kept; lower the "
          "learning rate or clip gradients (optimizer.grad_clip_norm)")
    meta = dict(meta or {}, step=step, checksums=checksums_by_path(state, sums))
    self.manager.save(step, args=ocp.args.Composite(**{STATE: ocp.args.PyTreeSave(state),
                                                      META: ocp.args.JsonSave(meta)}),
                      metrics=metrics, force=force)

  def _save_and_commit(self, *args) -> None:
    """On the writer thread: the save, then the wait for its commit, so that the loop learns of
    a failed write (`poll`) as soon as it happens, without ever waiting for it."""
    self._save_now(*args)
    self.manager.wait_until_finished()

  def poll(self) -> None:
    """Raises at once when a save has failed (a full disk, lost permissions): the run must not
    go on without checkpoints. Costs nothing while no save is in progress."""
    if self._pending is not None and self._pending.done():
      self._finish_pending()
    if self._in_flight is not None and self._pending is None and (
        not self.manager.is_saving_in_progress()):
      step, self._in_flight = self._in_flight, None
      self._surface(step, self.manager.wait_until_finished)  # finished: raises only its error

  def _surface(self, step: int, fn) -> None:
    """Calls fn; an error of a save becomes the one line that stops the run."""
    try:
      fn()
    except UserError:
      self._failed = True
      raise
    except Exception as e:  # noqa: BLE001  (anything from the file system or Orbax)
      self._failed = True
      raise UserError(f"checkpoint {step} could not be saved ({describe(e)}); the last committed "
                      f"checkpoint ({self.latest_step()}) is intact; free disk space or fix "
                      f"{self.directory}'s permissions, then run the same command") from e

  def _finish_pending(self) -> None:
    """Waits for the writer thread's save to have committed (raising its error)."""
    pending, self._pending = self._pending, None
    if pending is not None:
      self._surface(self._in_flight, pending.result)

  def wait(self) -> None:
    """Blocks until the last save has committed."""
    self._finish_pending()
    step, self._in_flight = self._in_flight, None
    self._surface(step, self.manager.wait_until_finished)
    self._surface(step, self.manager.check_for_errors)

  def is_new_best(self, metrics: dict) -> bool:
    """Whether eval `metrics` would be among the `keep_best` best checkpoints kept: then the
    loop saves this step, so that `best` is the best evaluation's own state."""
    value = (metrics or {}).get(self.best_metric)
    if not self.keep_best or not isinstance(value, (int, float)) or not math.isfinite(value):
      return False
    kept = [v for v in (self.saved_metrics(s).get(self.best_metric) for s in self.all_steps())
            if isinstance(v, (int, float)) and math.isfinite(v)]
    if len(kept) < self.keep_best:
      return True
    kept.sort(reverse=self.best_mode == "max")
    worst = kept[self.keep_best - 1]
    return value > worst if self.best_mode == "max" else value < worst

  def saved_metrics(self, step: int) -> dict:
    """The eval metrics saved with checkpoint `step` ({} if none or unreadable)."""
    return _read_json(self.step_dir(step) / "metrics" / "metrics")

  def saved_meta(self, step: int) -> dict:
    """The JSON `meta` item saved with checkpoint `step` ({} if unreadable)."""
    return _read_json(self.step_dir(step) / META / "metadata")

  def close(self) -> None:
    try:
      self._finish_pending()
    except UserError as e:  # close runs in `finally`: warn, don't hide the first error
      warn(str(e))
    try:
      self.manager.close()  # waits for the last background write
    except Exception as e:  # noqa: BLE001
      if not self._failed:
        warn(f"the last checkpoint could not be saved ({describe(e)})")
    self._writer.close()

  def __enter__(self) -> "Checkpointer":
    return self

  def __exit__(self, exc_type, exc, tb) -> None:
    if isinstance(exc, TrainingDiverged) and exc.step is not None:
      self._set_aside_diverged(exc.step)
    self.close()

  def _set_aside_diverged(self, step: int) -> None:
    """After a non-finite loss at `step`: the checkpoints from step - 1 on hold parameters whose
    next loss was not finite (finite numbers can be too large), so resuming them would diverge
    again. They are moved out of the way, not deleted."""
    try:
      self.wait()
    except UserError:
      pass  # a save that failed as well: what committed is what is moved
    bad = [s for s in self.all_steps() if s >= step - 1]
    if bad:
      self._set_aside(bad, DIVERGED_DIR, "whose next loss was not finite")

  # ------------------------------------------------------------------ restore
  def state_metadata(self, step: int) -> dict:
    """{path: (shape, dtype)} of checkpoint `step`'s state, from its metadata."""
    return self._writer.call(metadata_shapes, self.step_dir(step) / STATE)

  def _restore_step(self, step: int, abstract_state) -> tuple[object, dict]:
    """(state, meta) of checkpoint `step`, the state with `abstract_state`'s shardings."""
    restored = self._writer.call(self.manager.restore, step, args=ocp.args.Composite(**{
        STATE: ocp.args.PyTreeRestore(
            item=abstract_state,
            restore_args=ocp.checkpoint_utils.construct_restore_args(abstract_state)),
        META: ocp.args.JsonRestore()}))
    return restored[STATE], dict(restored[META] or {})

  def restore(self, abstract_state, step: int | None = None):
    """The state of checkpoint `step` (default: latest), with the shardings of
    `abstract_state`."""
    step = self.latest_step() if step is None else int(step)
    if step is None:
      raise UserError(f"no complete checkpoint in {self.directory}")
    check_fits(self.state_metadata(step), abstract_state, self.step_dir(step))
    state, meta = self._restore_step(step, abstract_state)
    verify_checksums(state, meta)
    return state

  def restore_latest(self, abstract_state) -> Restored | None:
    """The newest readable checkpoint, or None if there is none.

    An unreadable newest checkpoint is skipped (with a one-line warning) for the
    one before it; once an older one restored, the unreadable ones are moved to
    WORKDIR/checkpoints_corrupt/ so that training can save those steps again.
    A checkpoint of another model is a UserError: nothing is restored.
    """
    self._checksums = compile_checksums(abstract_state)
    steps = self.all_steps()
    if not steps:
      return None
    unreadable = []
    for step in reversed(steps):
      path = self.step_dir(step)
      try:
        if step in self.manager.garbled_metrics:
          raise ValueError("its saved eval metrics (metrics/metrics) are not JSON")
        shapes = self.state_metadata(step)
      except Exception as e:  # noqa: BLE001  (any failure to read it: the step is unusable)
        unreadable.append(step)
        warn(f"checkpoint {path} is unreadable ({describe(e)}); trying the one before it")
        continue
      check_fits(shapes, abstract_state, path)
      try:
        with noise.quiet_failed_reads():
          state, meta = self._restore_step(step, abstract_state)
        verify_checksums(state, meta, self._checksums)
        if int(jax.device_get(state.step)) != step:
          raise ValueError(f"its state is at step {int(jax.device_get(state.step))}")
      except Exception as e:  # noqa: BLE001
        unreadable.append(step)
        warn(f"checkpoint {path} is unreadable ({describe(e)}); trying the one before it")
        continue
      if unreadable:
        self._set_aside(unreadable)
      return Restored(step, state, meta)
    raise UserError(f"no readable checkpoint in {self.directory} (steps "
                    f"{', '.join(map(str, steps))} all failed to restore, see the warnings "
                    "above); move it away to start afresh")

  def _set_aside(self, steps: list[int], into: str = CORRUPT_DIR, why: str = "unreadable") -> None:
    """Moves checkpoints out of the way (`why`: what is wrong with them). Nothing is ever
    deleted: one that cannot be read here may be intact (permissions, another file system), so
    what cannot be moved stays where it is, with a warning."""
    if jax.process_index() == 0:
      target_dir = self.workdir / into
      for step in steps:
        source = self.step_dir(step)
        target = target_dir / f"{step}-{int(time.time())}"
        try:
          target_dir.mkdir(parents=True, exist_ok=True)
          source.rename(target)
          warn(f"moved checkpoint {source} ({why}) to {target}")
        except Exception as e:  # noqa: BLE001  (e.g. gs:// has no directory rename)
          warn(f"left checkpoint {source} ({why}) in place (could not move it: {describe(e)}); "
               f"training will not overwrite step {step}: move it away yourself to save it again")
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices("lepton_jax:checkpoints_set_aside")
    self.manager.reload()


# A copy of the state on its devices, with its shardings: the next train step donates the
# original while the writer thread is still reading this one.
_snapshot = jax.jit(lambda state: jax.tree.map(jnp.copy, state))


def abstract_with_shardings(abstract_state, shardings):
  return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                      abstract_state, shardings)


def _plain(metrics: dict) -> dict:
  """Metrics as JSON scalars (Orbax writes them with the checkpoint)."""
  out = {}
  for k, v in metrics.items():
    v = v.item() if hasattr(v, "item") else v
    out[k] = v if isinstance(v, (int, float, str, bool)) or v is None else str(v)
  return out


def _read_json(path) -> dict:
  """A JSON object from `path`; {} when it is missing, unreadable or not an object."""
  try:
    value = json.loads(epath.Path(path).read_text())
  except (OSError, ValueError):
    return {}
  return value if isinstance(value, dict) else {}
