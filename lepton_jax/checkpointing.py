"""Orbax checkpoints in `WORKDIR/checkpoints`: async saves, atomic commits,
exact resume onto any mesh, and starting from another run's parameters.

A checkpoint is plain Orbax, one directory per step:

    WORKDIR/checkpoints/<step>/state     the TrainState pytree (StandardSave): step, params,
                                         opt_state, model_state, rng, ema_params
    WORKDIR/checkpoints/<step>/meta      JSON: step, the last eval metrics, and the train
                                         metrics of the steps not yet logged (exact resume)
    WORKDIR/checkpoints/<step>/metrics   JSON: the eval metrics of this step, if it evaluated;
                                         Orbax ranks the `best` checkpoints by them

so `orbax.checkpoint` alone restores it (`StandardCheckpointer().restore(<step>/state)`).

Guarantees:
  * A save is written into `<step>.orbax-checkpoint-tmp-*` (gs://: without a
    `commit_success.txt`) and renamed (committed) when complete, so a half-written
    step is never taken for a checkpoint; a killed process leaves only a tmp dir,
    removed when training starts again.
  * Old checkpoints are deleted only after a newer one has committed, and only
    beyond the newest `checkpoint.keep_last` and the best `checkpoint.keep_best`.
  * Resuming tries the newest step first; an unreadable one (truncated or garbled
    files) is reported in one line and the one before it is used; the unreadable
    ones are then moved to WORKDIR/checkpoints_corrupt/ (deleted only where a
    directory cannot be renamed), so that training can write those steps again.
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
import os
import re
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from jax.experimental import multihost_utils

from lepton_jax.errors import UserError
from lepton_jax.sharding import path_string

STATE, META = "state", "meta"
CORRUPT_DIR = "checkpoints_corrupt"


class _QuietMissingMetrics(logging.Filter):
  """Orbax warns at every save without eval metrics; most saves have none, by design."""

  def filter(self, record: logging.LogRecord) -> bool:
    return "did not provide metrics" not in record.getMessage()


logging.getLogger("absl").addFilter(_QuietMissingMetrics())


def warn(message: str) -> None:
  if jax.process_index() == 0:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def _first_line(e: BaseException) -> str:
  text = str(e).strip().splitlines()
  return f"{type(e).__name__}: {text[0][:300] if text else ''}"


@dataclasses.dataclass
class Restored:
  step: int
  state: object
  meta: dict


class Checkpointer:
  """The checkpoints of one workdir.

  Training opens it with `Checkpointer.for_training(workdir, config)`; readers
  (evaluation, export) with `Checkpointer(workdir)`, which never deletes or
  cleans anything up, so it is safe next to a running training job.
  """

  def __init__(self, workdir: str, *, keep_last: int = 3, keep_best: int = 1,
               best_metric: str = "accuracy", best_mode: str = "max", async_save: bool = True,
               cleanup_tmp: bool = False):
    if keep_last < 1:
      raise UserError(f"checkpoint.keep_last={keep_last}: keep at least 1 (resuming needs the "
                      "newest checkpoint)")
    if keep_best < 0:
      raise UserError(f"checkpoint.keep_best={keep_best}: must be >= 0")
    if best_mode not in ("max", "min"):
      raise UserError(f"eval.best_mode={best_mode!r}: choose max or min")
    self.workdir = absolute_path(workdir)
    self.directory = self.workdir / "checkpoints"
    self.best_metric, self.best_mode = best_metric, best_mode
    self._checksums = None  # compiled by restore_latest for the run's state
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
    self.manager = ocp.CheckpointManager(
        self.directory, options=options,
        item_handlers={STATE: ocp.StandardCheckpointHandler(), META: ocp.JsonCheckpointHandler()})

  @classmethod
  def for_training(cls, workdir: str, config) -> "Checkpointer":
    section = config.get("checkpoint") or {}
    return cls(workdir, keep_last=int(section.get("keep_last", 3)),
               keep_best=int(section.get("keep_best", 1)),
               best_metric=config.eval.best_metric, best_mode=config.eval.best_mode,
               async_save=bool(section.get("async_save", True)), cleanup_tmp=True)

  # ------------------------------------------------------------------ queries
  def all_steps(self) -> list[int]:
    return sorted(int(s) for s in self.manager.all_steps())

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def step_dir(self, step: int) -> epath.Path:
    return self.directory / str(int(step))

  # --------------------------------------------------------------------- save
  def save(self, step: int, state, meta: dict | None = None, metrics: dict | None = None,
           force: bool = True) -> bool:
    """Starts saving `state` as checkpoint `step` (returns before it is written
    when async). `metrics`: this step's eval metrics, which rank the best
    checkpoints; `meta`: any JSON, kept in the `meta` item."""
    step = int(step)
    if step in self.manager.all_steps():
      return False
    if metrics is not None and self.best_metric not in metrics:
      metrics = None
    meta = dict(meta or {}, step=step, checksums=state_checksums(state, self._checksums))
    return self.manager.save(
        step, args=ocp.args.Composite(**{STATE: ocp.args.StandardSave(state),
                                         META: ocp.args.JsonSave(meta)}),
        metrics=_plain(metrics) if metrics is not None else None, force=force)

  def wait(self) -> None:
    """Blocks until the last save has committed."""
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.close()

  # ------------------------------------------------------------------ restore
  def state_metadata(self, step: int) -> dict:
    """{path: (shape, dtype)} of checkpoint `step`'s state, from its metadata."""
    return metadata_shapes(self.step_dir(step) / STATE)

  def restore(self, abstract_state, step: int | None = None):
    """The state of checkpoint `step` (default: latest), with the shardings of
    `abstract_state`."""
    step = self.latest_step() if step is None else int(step)
    if step is None:
      raise UserError(f"no complete checkpoint in {self.directory}")
    check_fits(self.state_metadata(step), abstract_state, self.step_dir(step))
    restored = self.manager.restore(step, args=ocp.args.Composite(**{
        STATE: ocp.args.StandardRestore(abstract_state), META: ocp.args.JsonRestore()}))
    verify_checksums(restored[STATE], restored[META] or {})
    return restored[STATE]

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
        shapes = self.state_metadata(step)
      except Exception as e:  # any failure to read it means the step is unusable
        unreadable.append(step)
        warn(f"checkpoint {path} is unreadable ({_first_line(e)}); trying the one before it")
        continue
      check_fits(shapes, abstract_state, path)
      try:
        restored = self.manager.restore(step, args=ocp.args.Composite(**{
            STATE: ocp.args.StandardRestore(abstract_state), META: ocp.args.JsonRestore()}))
        state, meta = restored[STATE], dict(restored[META] or {})
        verify_checksums(state, meta, self._checksums)
        if int(jax.device_get(state.step)) != step:
          raise ValueError(f"its state is at step {int(jax.device_get(state.step))}")
      except Exception as e:
        unreadable.append(step)
        warn(f"checkpoint {path} is unreadable ({_first_line(e)}); trying the one before it")
        continue
      if unreadable:
        self._set_aside(unreadable)
      return Restored(step, state, meta)
    raise UserError(f"no readable checkpoint in {self.directory} (steps "
                    f"{', '.join(map(str, steps))} all failed to restore, see the warnings "
                    "above); move it away to start afresh")

  def _set_aside(self, steps: list[int]) -> None:
    """Moves unreadable checkpoints out of the way (never deletes a readable one)."""
    if jax.process_index() == 0:
      target_dir = self.workdir / CORRUPT_DIR
      for step in steps:
        source = self.step_dir(step)
        target = target_dir / f"{step}-{int(time.time())}"
        try:
          target_dir.mkdir(parents=True, exist_ok=True)
          source.rename(target)
          warn(f"moved unreadable checkpoint {source} to {target}")
        except Exception as e:  # e.g. gs:// has no directory rename
          self.manager.delete(step)
          warn(f"deleted unreadable checkpoint {source} (could not move it: {_first_line(e)})")
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices("lepton_jax:checkpoints_set_aside")
    self.manager.reload()


# ------------------------------------------------------------------ checksums

def _leaf_checksum(x):
  """Two uint32 sums of an array's bits: plain, and weighted by position.

  Any flipped bit changes the first; swapped or offsetting changes, the second.
  Computed where the array lives (no reshape, no gather), so it is cheap on any
  sharding and independent of the sharding.
  """
  if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
    x = jax.random.key_data(x)
  x = jnp.asarray(x)
  if x.dtype == jnp.bool_:
    words = x.astype(jnp.uint32)
  else:
    size = x.dtype.itemsize
    words = jax.lax.bitcast_convert_type(x, {1: jnp.uint8, 2: jnp.uint16}.get(size, jnp.uint32))
    words = words.astype(jnp.uint32)
  index = jnp.zeros(words.shape, jnp.uint32)
  stride = 1
  for dim in reversed(range(words.ndim)):
    index = index + jax.lax.broadcasted_iota(jnp.uint32, words.shape, dim) * jnp.uint32(stride)
    stride = (stride * words.shape[dim]) % (1 << 32)
  weights = index * jnp.uint32(2654435761) + jnp.uint32(1)
  return jnp.stack([jnp.sum(words, dtype=jnp.uint32), jnp.sum(words * weights, dtype=jnp.uint32)])


# All leaves' checksums as one (leaves, 2) array: one small transfer per save.
_checksums_jit = jax.jit(lambda tree: jnp.stack(
    [_leaf_checksum(x) for x in jax.tree.leaves(tree)] or [jnp.zeros(2, jnp.uint32)]))


def compile_checksums(abstract_state):
  """The checksum function compiled ahead for states like `abstract_state` (saves then
  spend no time compiling, e.g. when a preemption notice leaves seconds to save)."""
  return _checksums_jit.lower(abstract_state).compile()


def state_checksums(state, compiled=None) -> dict[str, list[int]]:
  """{path: [sum, weighted sum]} of every array of `state` (uint32 arithmetic)."""
  sums = None
  if compiled is not None:
    try:
      sums = compiled(state)
    except (TypeError, ValueError):  # another structure or sharding than compiled for
      sums = None
  if sums is None:
    sums = _checksums_jit(state)
  # A replicated result: this process's copy is the value (also on multi-host runs).
  sums = np.asarray(sums.addressable_data(0))
  paths = [path_string(p) for p, _ in jax.tree_util.tree_flatten_with_path(state)[0]]
  return {path: [int(a), int(b)] for path, (a, b) in zip(paths, sums)}


def verify_checksums(state, meta: dict, compiled=None) -> None:
  """Raises ValueError naming the first array whose checksum differs from `meta`'s."""
  saved = meta.get("checksums")
  if not saved:  # written before checksums existed
    return
  for path, value in state_checksums(state, compiled).items():
    if path in saved and list(saved[path]) != value:
      raise ValueError(f"{path} does not match its checksum (a corrupted data file)")


# ------------------------------------------------------------ tree comparison

def _leaf_info(leaf):
  shape = getattr(leaf, "shape", None)
  dtype = getattr(leaf, "dtype", None)
  return (tuple(shape) if shape is not None else None,
          np.dtype(dtype).name if dtype is not None else None)


def flat_shapes(tree) -> dict[str, tuple]:
  """{path: (shape, dtype)} of a pytree's leaves; paths like 'params/dense_0/kernel'."""
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {path_string(path): _leaf_info(leaf) for path, leaf in leaves}


def metadata_shapes(item_dir: epath.Path) -> dict[str, tuple]:
  """{path: (shape, dtype)} of a saved state item, read from its metadata only."""
  if not item_dir.exists():
    raise FileNotFoundError(f"{item_dir} does not exist")
  handler = ocp.PyTreeCheckpointHandler()
  try:
    metadata = handler.metadata(item_dir)
  finally:
    handler.close()
  tree = getattr(metadata, "tree", metadata)
  return flat_shapes(tree)


def _describe(info) -> str:
  shape, dtype = info
  return f"{dtype}{list(shape) if shape is not None else ''}"


def first_mismatch(saved: dict[str, tuple], abstract_state, check_dtype: bool = True) -> str | None:
  """The first difference between a checkpoint's leaves and the model's, in words."""
  wanted = flat_shapes(abstract_state)
  for path, info in wanted.items():
    if path not in saved:
      return f"it has no {path} (this model's {_describe(info)})"
    have = saved[path]
    if have[0] != info[0] or (check_dtype and have[1] != info[1]):
      return f"{path} is {_describe(have)} there but {_describe(info)} in this model"
  for path, info in saved.items():
    if path not in wanted:
      return f"it has {path} ({_describe(info)}), which this model lacks"
  return None


def check_fits(saved: dict[str, tuple], abstract_state, where) -> None:
  mismatch = first_mismatch(saved, abstract_state)
  if mismatch:
    workdir = epath.Path(where).parent.parent
    raise UserError(f"checkpoint {where} does not fit this model: {mismatch}; use a fresh "
                    f"--workdir, or start from its parameters with --config.init_from={workdir}")


def abstract_with_shardings(abstract_state, shardings):
  return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                      abstract_state, shardings)


# ------------------------------------------------------------------ init_from

def _complete_steps(directory: epath.Path) -> list[epath.Path]:
  """Committed step dirs of a checkpoints directory, newest first."""
  steps = []
  for child in directory.iterdir():
    if re.fullmatch(r"0|[1-9]\d*", child.name) and ocp.path.step.is_path_finalized(child):
      steps.append(child)
  return sorted(steps, key=lambda p: -int(p.name))


def init_from_candidates(path_str: str) -> list[epath.Path]:
  """Step dirs that `config.init_from` may load, newest first."""
  path = epath.Path(path_str)
  if not path.exists():
    raise UserError(f"config.init_from={path_str!r} does not exist; give a run's workdir or one "
                    "of its checkpoint step dirs (WORKDIR/checkpoints/STEP)")
  if (path / STATE).exists():
    if not ocp.path.step.is_path_finalized(path):
      raise UserError(f"config.init_from={path_str!r} is an incomplete checkpoint (its save "
                      "never committed); use a complete step dir or the workdir")
    return [path]
  directory = path / "checkpoints" if (path / "checkpoints").exists() else path
  steps = _complete_steps(directory) if directory.is_dir() else []
  if not steps:
    raise UserError(f"config.init_from={path_str!r} holds no complete checkpoint (looked in "
                    f"{directory}); give a run's workdir or a checkpoint step dir")
  return steps


def loadable_paths(abstract_state) -> dict[str, object]:
  """The leaves init_from may load: params and model_state (e.g. batch_stats)."""
  leaves = jax.tree_util.tree_flatten_with_path(abstract_state)[0]
  return {path_string(p): leaf for p, leaf in leaves
          if path_string(p).split("/")[0] in ("params", "model_state")}


def _nest(flat: dict[str, object]) -> dict:
  nested: dict = {}
  for path, value in flat.items():
    node = nested
    *parents, last = path.split("/")
    for part in parents:
      node = node.setdefault(part, {})
    node[last] = value
  return nested


def _read_meta(step_dir: epath.Path) -> dict:
  path = step_dir / META / "metadata"
  return json.loads(path.read_text()) if path.exists() else {}


def load_init_from(path_str: str, regex: str, abstract_state, state):
  """`state` with the parameters of checkpoint `path_str` whose path matches
  `regex` (others kept as initialised); returns (state, report line)."""
  try:
    pattern = re.compile(regex)
  except re.error as e:
    raise UserError(f"config.init_from_params={regex!r} is not a valid regex: {e}") from e
  targets = loadable_paths(abstract_state)
  chosen = {p: leaf for p, leaf in targets.items() if pattern.search(p)}
  if not chosen:
    raise UserError(f"config.init_from_params={regex!r} matches no parameter of this model; "
                    f"paths look like {next(iter(targets), 'params/dense_0/kernel')}")
  errors = []
  for step_dir in init_from_candidates(path_str):
    item = step_dir / STATE
    try:
      saved = metadata_shapes(item)
    except Exception as e:
      errors.append(f"{step_dir}: {_first_line(e)}")
      warn(f"init_from: checkpoint {step_dir} is unreadable ({_first_line(e)}); trying the one "
           "before it")
      continue
    for path, leaf in chosen.items():
      if path not in saved:
        raise UserError(f"config.init_from: {step_dir} has no {path} (matched by "
                        f"config.init_from_params={regex!r}); narrow init_from_params to the "
                        "parameters it has")
      if saved[path][0] != tuple(leaf.shape):
        raise UserError(f"config.init_from: {path} is {_describe(saved[path])} in {step_dir} but "
                        f"{_describe(_leaf_info(leaf))} in this model; exclude it with "
                        "config.init_from_params (e.g. '^params/(?!head/)')")
    target = _nest(chosen)
    try:
      with ocp.PyTreeCheckpointer() as checkpointer:
        loaded = checkpointer.restore(item, args=ocp.args.PyTreeRestore(
            item=target, restore_args=ocp.checkpoint_utils.construct_restore_args(target),
            partial_restore=True))
      verify_checksums(loaded, _read_meta(step_dir))
    except Exception as e:
      errors.append(f"{step_dir}: {_first_line(e)}")
      warn(f"init_from: checkpoint {step_dir} is unreadable ({_first_line(e)}); trying the one "
           "before it")
      continue
    flat_loaded = {path_string(p): v for p, v in jax.tree_util.tree_flatten_with_path(loaded)[0]}

    def replace(path, value):
      return flat_loaded.get(path_string(path), value)

    merged = jax.tree_util.tree_map_with_path(replace, state)
    if merged.ema_params is not None:
      merged = merged.replace(ema_params=merged.params)
    params_total = {p: l for p, l in targets.items() if p.startswith("params/")}
    params_loaded = [p for p in flat_loaded if p.startswith("params/")]
    values = sum(int(np.prod(chosen[p].shape)) for p in params_loaded)
    values_total = sum(int(np.prod(l.shape)) for l in params_total.values())
    others = len(flat_loaded) - len(params_loaded)
    report = (f"init_from {step_dir}: loaded {len(params_loaded)} of {len(params_total)} parameter "
              f"arrays ({values:,} of {values_total:,} values)"
              + (f" and {others} model-state arrays" if others else "")
              + f" matching {regex!r}; the others are freshly initialized; step 0, fresh "
              "optimizer state")
    return merged, report
  raise UserError(f"config.init_from={path_str!r}: no readable checkpoint ({'; '.join(errors)})")


# ------------------------------------------------- exact resume of the metrics

def history_to_json(history) -> list[dict]:
  """Train metrics of steps not yet logged (host values), for the checkpoint's meta."""
  rows = []
  for step, metrics in history:
    metrics = jax.device_get(metrics)
    rows.append({"step": int(step),
                 "values": {k: np.asarray(v).item() for k, v in metrics.items()},
                 "dtypes": {k: np.asarray(v).dtype.name for k, v in metrics.items()}})
  return rows


def history_from_json(rows) -> list[tuple[int, dict]]:
  """Inverse of history_to_json: the same values with the same dtypes (so the
  next logged means are bit-identical to those of an uninterrupted run)."""
  return [(int(r["step"]), {k: np.asarray(v, dtype=r["dtypes"][k]) for k, v in r["values"].items()})
          for r in rows or []]


def _plain(metrics: dict) -> dict:
  out = {}
  for k, v in metrics.items():
    v = v.item() if hasattr(v, "item") else v
    out[k] = v if isinstance(v, (int, float, str, bool)) or v is None else str(v)
  return out


# ----------------------------------------------------------------- preemption

def reached_preemption_sync_point(step: int) -> bool:
  """True at the step all hosts agreed to save at after a preemption notice.

  Only meaningful on multi-process runs started with jax.distributed (the
  preemption service runs there); False otherwise.
  """
  if jax.process_count() == 1:
    return False
  try:
    return bool(multihost_utils.reached_preemption_sync_point(step))
  except RuntimeError:  # preemption service disabled (jax_enable_preemption_service)
    return False


def should_stop(step: int, stop_requested, exchange: bool) -> bool:
  """Whether to save and exit after `step`; the same answer on every process.

  One process: the stop flag (SIGTERM/SIGINT). Several: JAX's preemption sync
  point (checked every step), and, at steps where `exchange` is true (the same
  steps on every process), whether any process's flag is set.
  """
  local = bool(stop_requested()) if stop_requested is not None else False
  if jax.process_count() == 1:
    return local
  stop = reached_preemption_sync_point(step)
  if exchange:
    flags = multihost_utils.process_allgather(np.asarray(local, np.int32))
    stop = stop or bool(np.any(flags))
  return stop


def absolute_path(path: str) -> epath.Path:
  """`path` made absolute if local (Orbax refuses relative paths); gs:// etc. as given."""
  text = str(path)
  return epath.Path(text if "://" in text else os.path.abspath(os.path.expanduser(text)))
