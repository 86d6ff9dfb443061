"""Which checkpoint of a workdir a command means: `latest`, `best` or a step number.

`best` is the kept checkpoint whose eval.best_metric is best by eval.best_mode: its value is the
eval row of eval.split at its exact step in metrics.jsonl, else the eval metrics saved with it
(its `metrics` item), else those in its `meta` (the last evaluation before it).
"""

import math

from etils import epath

from lepton_jax.checkpoint.manager import Checkpointer
from lepton_jax.errors import UserError
from lepton_jax.metric_writers import read_metrics


def checkpoint_steps(checkpointer) -> list[int]:
  """Every complete checkpoint step of `checkpointer`, ascending."""
  return checkpointer.all_steps()


def checkpoint_meta(checkpointer, step: int) -> dict:
  """The JSON `meta` item saved with checkpoint `step` ({} if unreadable)."""
  return checkpointer.saved_meta(step)


def checkpoint_metrics(checkpointer, step: int) -> dict:
  """The eval metrics Orbax saved with checkpoint `step` when it evaluated ({} if none)."""
  return checkpointer.saved_metrics(step)


def _better(a: float, b: float, mode: str) -> bool:
  return a > b if mode == "max" else a < b


def best_step(workdir: str, checkpointer, metric: str, mode: str, split: str) -> tuple[int, float]:
  """(step, value) of the kept checkpoint with the best `metric`.

  The value of a checkpoint is the eval row of `split` at its exact step in
  metrics.jsonl, else the eval metrics saved with it (its `metrics` item), else
  those in its meta (the last evaluation before it). Ties go to the later step.
  """
  if mode not in ("max", "min"):
    raise UserError(f"eval.best_mode={mode!r}: choose max or min")
  rows = {r["step"]: r for r in read_metrics(workdir) if r.get("split") == split}
  best = None
  for step in checkpoint_steps(checkpointer):
    value = rows.get(step, {}).get(metric)
    if value is None:
      value = checkpoint_metrics(checkpointer, step).get(metric)
    if value is None:
      value = (checkpoint_meta(checkpointer, step).get("metrics") or {}).get(metric)
    if not isinstance(value, (int, float)) or not math.isfinite(value):
      continue
    if best is None or not _better(best[1], value, mode):
      best = (step, float(value))
  if best is None:
    raise UserError(f"no checkpoint of {workdir} has an eval {metric!r} recorded (eval.best_metric); "
                    "use --checkpoint latest or a step number")
  return best


def resolve_checkpoint(workdir: str, which, config=None, checkpointer=None) -> int:
  """The step that `which` ('latest', 'best', or a step number) names in `workdir`."""
  own = checkpointer is None
  if own:
    if not (epath.Path(workdir) / "checkpoints").exists():
      raise UserError(f"no checkpoint in {workdir}: train into this workdir first "
                      "(python -m lepton_jax.main --config ... --workdir ...)")
    checkpointer = Checkpointer(workdir)
  try:
    steps = checkpoint_steps(checkpointer)
    if not steps:
      raise UserError(f"no complete checkpoint in {checkpointer.directory}: train into "
                      f"{workdir} first")
    which = "latest" if which in (None, "") else str(which)
    if which == "latest":
      return steps[-1]
    if which == "best":
      if config is None:
        raise UserError("--checkpoint best needs the run's config (eval.best_metric)")
      return best_step(workdir, checkpointer, config.eval.best_metric, config.eval.best_mode,
                       config.eval.split)[0]
    try:
      step = int(which)
    except ValueError:
      raise UserError(f"--checkpoint {which!r}: write latest, best or a step number") from None
    if step not in steps:
      raise UserError(f"no checkpoint at step {step} in {checkpointer.directory}; kept steps: "
                      f"{', '.join(map(str, steps))}")
    return step
  finally:
    if own:
      checkpointer.close()


def describe_choice(workdir: str, which, step: int, config) -> str:
  """Why `which` named `step`, in a few words (what --mode=eval prints)."""
  which = "latest" if which in (None, "") else str(which)
  if which != "best":
    return "the newest" if which == "latest" else "as asked"
  metric, split = config.eval.best_metric, config.eval.split
  rows = {r["step"]: r for r in read_metrics(workdir) if r.get("split") == split}
  value = rows.get(step, {}).get(metric)
  shown = f" {value:.4g}" if isinstance(value, (int, float)) else ""
  return f"best by {metric}{shown} on {split!r}"
