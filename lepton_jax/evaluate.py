"""Evaluating a checkpoint of a workdir on any split:

    python -m lepton_jax.main --config configs/x.py --workdir W --mode=eval \
        [--config.eval.split=test[:1000]] [--checkpoint latest|best|STEP]

restores the chosen checkpoint (`best`: the one whose eval.best_metric, as
recorded in metrics.jsonl or in the checkpoint's meta, is best by
eval.best_mode), evaluates it on the split, prints a metrics table and writes

    W/eval_<split>_step<N>.json    metrics, split, step, example count, confusion counts
    W/confusion_<split>.csv        confusion counts [true, predicted] with label names

Split names are tfds split strings, slices included ('test[:1000]'); in file
names they are spelled with only [A-Za-z0-9._-] (`split_slug`).
"""

import csv
import io
import json
import math
import re

import jax
import numpy as np
from etils import epath

from lepton_jax.checkpoint import manager as checkpointing
from lepton_jax.errors import UserError
from lepton_jax.metric_writers import read_metrics


# ---------------------------------------------------------------- checkpoints

def checkpoint_steps(checkpointer) -> list[int]:
  """Every complete checkpoint step of `checkpointer`, ascending."""
  all_steps = getattr(checkpointer, "all_steps", None)
  steps = all_steps() if callable(all_steps) else checkpointer.manager.all_steps()
  return sorted(int(s) for s in steps)


def _read_json(path) -> dict:
  try:
    value = json.loads(epath.Path(path).read_text())
  except (OSError, ValueError):
    return {}
  return value if isinstance(value, dict) else {}


def checkpoint_meta(checkpointer, step: int) -> dict:
  """The JSON `meta` item saved with checkpoint `step` ({} if unreadable)."""
  return _read_json(epath.Path(checkpointer.directory) / str(step) / "meta" / "metadata")


def checkpoint_metrics(checkpointer, step: int) -> dict:
  """The eval metrics Orbax saved with checkpoint `step` when it evaluated ({} if none)."""
  return _read_json(epath.Path(checkpointer.directory) / str(step) / "metrics" / "metrics")


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
    checkpointer = checkpointing.Checkpointer(workdir)
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


# ---------------------------------------------------------------- evaluation

def eval_stats(run, state, split: str) -> dict:
  """The experiment's eval statistics of `state` summed over every example of `split`."""
  return run.eval_statistics(state, split)


def split_slug(split: str) -> str:
  """'test[:1000]' -> 'test_0-1000', 'train[90%:]' -> 'train_90pct-end': file-name safe."""
  def piece(m):
    lo, _, hi = m.group(1).partition(":")
    return f"_{lo or '0'}-{hi or 'end'}" if ":" in m.group(1) else f"_{lo}"
  slug = re.sub(r"\[([^\]]*)\]", piece, split).replace("%", "pct").replace("+", "_and_")
  return re.sub(r"[^A-Za-z0-9._-]+", "_", slug).strip("_") or "split"


def confusion_csv_path(workdir, split: str) -> epath.Path:
  return epath.Path(workdir) / f"confusion_{split_slug(split)}.csv"


def write_confusion_csv(path, confusion, label_names) -> None:
  """Rows: true label; columns: predicted label; cells: example counts."""
  confusion = np.asarray(confusion)
  names = list(label_names) or [str(i) for i in range(confusion.shape[0])]
  out = io.StringIO()
  w = csv.writer(out)
  w.writerow(["true\\predicted"] + names)
  for name, row in zip(names, confusion):
    w.writerow([name] + [int(round(float(v))) for v in row])
  epath.Path(path).write_text(out.getvalue())


def read_confusion_csv(path) -> tuple[list[str], np.ndarray]:
  rows = list(csv.reader(io.StringIO(epath.Path(path).read_text())))
  names = rows[0][1:]
  return names, np.array([[int(v) for v in row[1:]] for row in rows[1:]], np.int64)


def format_table(metrics: dict, title: str = "") -> str:
  """A two-column plain-text table of metric names and values."""
  width = max([len(k) for k in metrics] + [6])
  lines = [title] if title else []
  lines.append(f"{'metric':<{width}}  value")
  lines.append(f"{'-' * width}  {'-' * 10}")
  for k, v in metrics.items():
    lines.append(f"{k:<{width}}  {v:.6g}" if isinstance(v, float) else f"{k:<{width}}  {v}")
  return "\n".join(lines)


def write_results(workdir, split: str, step: int, metrics: dict, stats: dict,
                  label_names) -> dict[str, epath.Path]:
  """Writes eval_<split>_step<N>.json and confusion_<split>.csv; returns their paths."""
  workdir = epath.Path(workdir)
  record = {"split": split, "step": int(step), "num_examples": int(round(float(stats["count"]))),
            "metrics": {k: float(v) for k, v in metrics.items()}}
  paths = {"json": workdir / f"eval_{split_slug(split)}_step{int(step)}.json"}
  if "confusion" in stats:
    record["label_names"] = list(label_names)
    record["confusion"] = np.rint(stats["confusion"]).astype(int).tolist()
    paths["confusion"] = confusion_csv_path(workdir, split)
    write_confusion_csv(paths["confusion"], stats["confusion"], label_names)
  paths["json"].write_text(json.dumps(record, indent=2))
  return paths


def evaluate_checkpoint(run, step: int, split: str | None = None):
  """(metrics, stats) of checkpoint `step` of `run.workdir` on `split`."""
  split = split or run.config.eval.split
  checkpointer = checkpointing.Checkpointer(str(run.workdir))
  try:
    abstract = checkpointing.abstract_with_shardings(run.abstract_state, run.state_shardings)
    state = checkpointer.restore(abstract, step)
  finally:
    checkpointer.close()
  stats = eval_stats(run, state, split)
  return run.experiment.summarize(stats), stats


def evaluate_workdir(config, workdir: str, checkpoint="latest", split: str | None = None,
                     write: bool = True, verbose: bool = True) -> dict:
  """Evaluates checkpoint `checkpoint` (latest, best or a step) of `workdir` on
  `split` (default config.eval.split); returns the metrics plus `step`."""
  from lepton_jax import train
  split = split or config.eval.split
  step = resolve_checkpoint(workdir, checkpoint, config)
  run = train.Run(config, workdir)
  run.info.split_size(split)  # an unknown split fails before the restore
  metrics, stats = evaluate_checkpoint(run, step, split)
  paths = {}
  if write and run.is_primary:
    paths = write_results(workdir, split, step, metrics, stats, run.info.label_names)
  if verbose and run.is_primary:
    n = int(round(float(stats["count"])))
    print(format_table(metrics, f"eval of {workdir} checkpoint {step} on {split!r} ({n:,} examples)"))
    for path in paths.values():
      print(f"wrote {path}")
  return dict(metrics, step=step)
