"""Plots and a summary of a run, from its workdir:

    python -m lepton_jax.report W [--checkpoint latest|best|STEP] [--no_confusion]

writes (also done automatically at the end of training)

    W/plots/loss.png, accuracy.png, learning_rate.png, throughput.png, eval_metrics.png
                            curves vs step from metrics.jsonl (train and eval splits)
    W/plots/confusion_<split>.png
                            the confusion matrix of W/confusion_<split>.csv (computed from
                            the checkpoint, with the eval's own code, when missing)
    W/summary.md            config, best and final eval metrics, wall time, throughput
    W/summary.json          the same facts, machine-readable

Figures are drawn with matplotlib's Agg canvas (no display, no pyplot state).
Every plotting function returns the data read back from its axes, so what a
PNG shows can be checked against metrics.jsonl.
"""

import json
import math
import time

import jax
import numpy as np
from etils import epath

from lepton_jax import evaluate, provenance, registry, run_record
from lepton_jax.cli import CliParser, run_cli
from lepton_jax.errors import UserError
from lepton_jax.metric_writers import format_duration, format_number, read_metrics

PLOTS_DIR = "plots"
# (file stem, metric key, y-axis label, title)
CURVES = (
    ("loss", "loss", "loss", "Loss"),
    ("accuracy", "accuracy", "accuracy", "Accuracy"),
    ("learning_rate", "learning_rate", "learning rate", "Learning rate schedule"),
    ("throughput", "examples_per_sec", "examples / second", "Training throughput"),
)
MAX_CONFUSION_CLASSES = 100  # larger matrices are not drawn (nor computed at the end of training)


def _figure(figsize=(6.4, 4.2)):
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure
  fig = Figure(figsize=figsize, dpi=100)
  FigureCanvasAgg(fig)
  return fig


def _finite(v) -> bool:
  return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def curve_data(rows: list[dict], key: str) -> dict[str, tuple[list[int], list[float]]]:
  """{split: (steps, values)} of metric `key` in metrics.jsonl rows; train first."""
  out: dict[str, tuple[list, list]] = {}
  for row in sorted(rows, key=lambda r: (r.get("split") != "train", r["step"])):
    if _finite(row.get(key)):
      steps, values = out.setdefault(row["split"], ([], []))
      steps.append(int(row["step"]))
      values.append(float(row[key]))
  return out


def _lines(ax) -> dict[str, tuple[list, list]]:
  return {line.get_label(): (np.asarray(line.get_xdata()).tolist(), np.asarray(line.get_ydata()).tolist())
          for line in ax.get_lines()}


def plot_curve(rows: list[dict], key: str, ylabel: str, title: str, path) -> dict | None:
  """Plots metric `key` vs step, one line per split; None when no row has it.

  Returns what the axes hold: {'path', 'title', 'xlabel', 'ylabel', 'lines': {split: (steps, values)}}.
  """
  data = curve_data(rows, key)
  if not data:
    return None
  fig = _figure()
  ax = fig.add_subplot(1, 1, 1)
  for split, (steps, values) in data.items():
    style = dict(marker="o", markersize=3) if split != "train" or len(steps) < 3 else {}
    ax.plot(steps, values, label=split, **style)
  ax.set_xlabel("step")
  ax.set_ylabel(ylabel)
  ax.set_title(title)
  ax.grid(True, alpha=0.3)
  ax.legend()
  result = {"path": str(path), "title": ax.get_title(), "xlabel": ax.get_xlabel(),
            "ylabel": ax.get_ylabel(), "lines": _lines(ax)}
  fig.subplots_adjust(left=0.15, right=0.97, bottom=0.12, top=0.92)  # fixed: no layout pass
  fig.savefig(str(path))
  return result


def plot_eval_metrics(rows: list[dict], path, exclude=("loss",)) -> dict | None:
  """Every eval metric (all but loss) vs step, one line per split/metric."""
  fig = _figure()
  ax = fig.add_subplot(1, 1, 1)
  for split in sorted({r["split"] for r in rows if r.get("split") != "train"}):
    split_rows = [r for r in rows if r.get("split") == split]
    keys = sorted({k for r in split_rows for k, v in r.items()
                   if k not in ("step", "split") + tuple(exclude) and _finite(v)})
    for key in keys:
      steps, values = curve_data(split_rows, key).get(split, ([], []))
      ax.plot(steps, values, marker="o", markersize=3, label=f"{split} {key}")
  if not ax.get_lines():
    return None
  ax.set_xlabel("step")
  ax.set_ylabel("metric value")
  ax.set_title("Eval metrics")
  ax.grid(True, alpha=0.3)
  ax.legend(fontsize="small")
  result = {"path": str(path), "title": ax.get_title(), "xlabel": ax.get_xlabel(),
            "ylabel": ax.get_ylabel(), "lines": _lines(ax)}
  fig.subplots_adjust(left=0.15, right=0.97, bottom=0.12, top=0.92)  # fixed: no layout pass
  fig.savefig(str(path))
  return result


def plot_confusion(label_names, confusion, path, title: str = "Confusion matrix") -> dict:
  """Counts [true, predicted] as an image with the counts written in (up to 20 classes)."""
  confusion = np.asarray(confusion)
  n = confusion.shape[0]
  size = min(4.0 + 0.35 * n, 16.0)
  fig = _figure((size + 1.0, size))
  ax = fig.add_subplot(1, 1, 1)
  image = ax.imshow(confusion, cmap="Blues", interpolation="nearest")
  fig.colorbar(image, ax=ax, label="examples")
  ax.set_xticks(range(n))
  ax.set_yticks(range(n))
  ax.set_xticklabels(label_names, rotation=90 if n > 10 or max(map(len, label_names), default=0) > 3 else 0)
  ax.set_yticklabels(label_names)
  ax.set_xlabel("predicted label")
  ax.set_ylabel("true label")
  ax.set_title(title)
  if n <= 20:
    threshold = confusion.max() / 2 if confusion.size else 0
    for i in range(n):
      for j in range(n):
        ax.text(j, i, f"{int(confusion[i, j])}", ha="center", va="center", fontsize=8,
                color="white" if confusion[i, j] > threshold else "black")
  result = {"path": str(path), "title": ax.get_title(), "xlabel": ax.get_xlabel(),
            "ylabel": ax.get_ylabel(), "matrix": np.asarray(image.get_array()).tolist(),
            "xticklabels": [t.get_text() for t in ax.get_xticklabels()],
            "yticklabels": [t.get_text() for t in ax.get_yticklabels()]}
  fig.tight_layout()
  fig.savefig(str(path))
  return result


# ---------------------------------------------------------------- summary

def best_eval(rows: list[dict], split: str, metric: str, mode: str) -> dict | None:
  candidates = [r for r in rows if r.get("split") == split and _finite(r.get(metric))]
  if not candidates:
    return None
  sign = 1.0 if mode == "max" else -1.0
  return max(candidates, key=lambda r: (sign * r[metric], r["step"]))


def throughput(rows: list[dict]) -> dict:
  train = [r for r in rows if r.get("split") == "train"]
  eps = [r["examples_per_sec"] for r in train if _finite(r.get("examples_per_sec"))]
  out = {}
  if eps:
    out.update(examples_per_sec_median=float(np.median(eps)), examples_per_sec_final=float(eps[-1]))
  step_ms = [r["step_time_ms"] for r in train if _finite(r.get("step_time_ms"))]
  if step_ms:
    out["step_time_ms_median"] = float(np.median(step_ms))
  # Training time from the logs: each row's mean step time times the steps it covers.
  seconds, last = 0.0, 0
  for r in sorted(train, key=lambda r: r["step"]):
    if _finite(r.get("step_time_ms")):
      seconds += r["step_time_ms"] / 1000.0 * (r["step"] - last)
    last = r["step"]
  if step_ms:
    out["train_seconds_from_logs"] = seconds
  compile_s = [r["compile_seconds"] for r in train if _finite(r.get("compile_seconds"))]
  if compile_s:
    out["compile_seconds"] = float(compile_s[-1])
  return out


def _fmt(v) -> str:
  return format_number(v) if isinstance(v, float) else str(v)


def summary_facts(workdir, config, rows, wall_seconds=None) -> dict:
  workdir = epath.Path(workdir)
  record = {}
  if (workdir / "run.json").exists():
    record = json.loads((workdir / "run.json").read_text())
  split = config.eval.split if config is not None else "test"
  metric = config.eval.best_metric if config is not None else "accuracy"
  mode = config.eval.best_mode if config is not None else "max"
  evals = [r for r in rows if r.get("split") == split]
  final = max(evals, key=lambda r: r["step"]) if evals else None
  best = best_eval(rows, split, metric, mode)
  previous = {}
  if (workdir / "summary.json").exists():
    try:
      previous = json.loads((workdir / "summary.json").read_text())
    except ValueError:
      previous = {}
  facts = {
      "name": _config_name(config, workdir),
      "workdir": str(workdir),
      "experiment": config.experiment if config is not None else None,
      "model": config.model.name if config is not None else None,
      "dataset": record.get("dataset", {}).get("name", config.data.name if config is not None else None),
      "param_count": record.get("param_count"),
      "total_steps": record.get("total_steps"),
      "last_step": max((r["step"] for r in rows), default=None),
      "eval_split": split, "best_metric": metric, "best_mode": mode,
      "best": best, "final": final,
      "wall_seconds": wall_seconds if wall_seconds is not None else previous.get("wall_seconds"),
      "made_by": _made_by(record),
      **throughput(rows),
  }
  if config is not None:
    facts.update(batch_size=config.batch_size, optimizer=config.optimizer.name,
                 learning_rate=config.optimizer.learning_rate, schedule=config.optimizer.schedule)
  return facts


def _made_by(record: dict) -> list[tuple[str, str]]:
  latest = (record.get("provenance") or {}).get("latest")
  return provenance.summary_rows(latest) if latest else []


def _config_name(config, workdir) -> str:
  if config is not None:
    for key in ("name", "config_name"):
      if key in config and config[key]:
        return str(config[key])
    return f"{config.model.name} on {config.data.name} ({config.experiment}), {epath.Path(workdir).name}"
  return epath.Path(workdir).name


def summary_markdown(facts: dict, plots: dict) -> str:
  lines = [f"# {facts['name']}", "", "| | |", "|---|---|", f"| workdir | `{facts['workdir']}` |"]
  if facts.get("experiment"):
    params = f" ({facts['param_count']:,} parameters)" if facts.get("param_count") else ""
    lines.append(f"| experiment / model / dataset | {facts['experiment']} / {facts['model']}{params} / "
                 f"{facts['dataset']} |")
  if facts.get("optimizer"):
    lines.append(f"| optimizer | {facts['optimizer']}, learning rate {facts['learning_rate']:g} "
                 f"({facts['schedule']}), batch {facts['batch_size']} |")
  if facts.get("last_step") is not None:
    lines.append(f"| steps | {facts['last_step']:,}"
                 + (f" of {facts['total_steps']:,}" if facts.get("total_steps") else "") + " |")
  if facts.get("wall_seconds") is not None:
    lines.append(f"| wall time (last training command) | {format_duration(facts['wall_seconds'])} |")
  if facts.get("train_seconds_from_logs") is not None:
    lines.append(f"| training time (sum of logged step times) | "
                 f"{format_duration(facts['train_seconds_from_logs'])} |")
  if facts.get("compile_seconds") is not None:
    lines.append(f"| train step compile time | {facts['compile_seconds']:.1f}s |")
  if facts.get("examples_per_sec_median") is not None:
    lines.append(f"| throughput | {facts['examples_per_sec_median']:,.0f} examples/s median, "
                 f"{facts['examples_per_sec_final']:,.0f} at the last log |")
  if facts.get("step_time_ms_median") is not None:
    lines.append(f"| step time | {facts['step_time_ms_median']:.2f} ms median |")
  if facts.get("made_by"):
    lines += ["", "## What made this run (the latest start)", "", "| | |", "|---|---|"]
    lines += [f"| {label} | {value} |" for label, value in facts["made_by"]]
  for title, row in ((f"Best eval on `{facts['eval_split']}` by {facts['best_metric']} "
                      f"({facts['best_mode']})", facts.get("best")),
                     (f"Final eval on `{facts['eval_split']}`", facts.get("final"))):
    lines += ["", f"## {title}", ""]
    if row is None:
      lines.append("no eval recorded")
      continue
    keys = [k for k in row if k not in ("step", "split")]
    lines.append("| step | " + " | ".join(keys) + " |")
    lines.append("|---" * (len(keys) + 1) + "|")
    lines.append(f"| {row['step']} | " + " | ".join(_fmt(row[k]) for k in keys) + " |")
  if plots:
    lines += ["", "## Plots", ""]
    for name, info in plots.items():
      rel = epath.Path(info["path"]).relative_to(facts["workdir"]) if str(info["path"]).startswith(
          facts["workdir"]) else info["path"]
      lines.append(f"![{name}]({rel})")
  return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- the report

def _confusion_for(workdir, config, checkpoint="latest", compute=True):
  """(label_names, counts, source) for config.eval.split, or None."""
  path = evaluate.confusion_csv_path(workdir, config.eval.split)
  if not path.exists() and compute:
    evaluate.evaluate_workdir(config, str(workdir), checkpoint, config.eval.split, verbose=False)
  if not path.exists():
    return None
  names, counts = evaluate.read_confusion_csv(path)
  return names, counts, str(path)


def has_confusion(config) -> bool:
  """Whether the run's experiment counts a confusion matrix (the classification family)."""
  try:
    return bool(registry.get("experiment", config.experiment).has_confusion)
  except UserError:
    return False


def write_report(workdir, config=None, *, wall_seconds=None, checkpoint="latest",
                 compute_confusion: bool = True, verbose: bool = True) -> dict:
  """Writes the plots, summary.md and summary.json of `workdir`; returns
  {'plots': {name: what the axes hold}, 'summary': path, 'facts': {...}}."""
  workdir = epath.Path(workdir)
  if config is None:
    config = run_record.read_config(str(workdir))
  rows = read_metrics(str(workdir))
  if not rows:
    raise UserError(f"{workdir / 'metrics.jsonl'} is missing or empty: nothing to plot; train first")
  plot_dir = workdir / PLOTS_DIR
  plot_dir.mkdir(parents=True, exist_ok=True)
  plots = {}
  for stem, key, ylabel, title in CURVES:
    result = plot_curve(rows, key, ylabel, title, plot_dir / f"{stem}.png")
    if result is not None:
      plots[stem] = result
  result = plot_eval_metrics(rows, plot_dir / "eval_metrics.png")
  if result is not None:
    plots["eval_metrics"] = result
  confusion = None
  if has_confusion(config):
    try:
      confusion = _confusion_for(workdir, config, checkpoint, compute_confusion)
    except UserError as e:  # e.g. no checkpoint: the curves are still worth having
      if verbose:
        print(f"note: no confusion matrix: {e}")
  if confusion is not None:
    names, counts, source = confusion
    if len(names) <= MAX_CONFUSION_CLASSES:
      slug = evaluate.split_slug(config.eval.split)
      plots["confusion"] = plot_confusion(names, counts, plot_dir / f"confusion_{slug}.png",
                                          f"Confusion matrix, {config.eval.split}")
      plots["confusion"]["source"] = source
  facts = summary_facts(workdir, config, rows, wall_seconds)
  facts["generated"] = time.strftime("%Y-%m-%d %H:%M:%S")
  (workdir / "summary.md").write_text(summary_markdown(facts, plots))
  (workdir / "summary.json").write_text(json.dumps(facts, indent=2, default=str))
  if verbose:
    print(f"wrote {len(plots)} plots to {plot_dir} and {workdir / 'summary.md'}")
  return {"plots": plots, "summary": str(workdir / "summary.md"), "facts": facts}


def after_training(workdir, config, result) -> dict:
  """Called when training ends (process 0): the final evaluation's files (from the sums the
  loop already has: no second pass), then the plots and summary."""
  stats = result.eval_stats
  if stats is not None and "confusion" in stats:
    label_names = run_record.dataset_info(run_record.read(workdir)).label_names
    evaluate.write_results(workdir, config.eval.split, result.step, result.metrics, stats,
                           label_names)
  # The confusion pass is a collective over every process: only single-process runs do it here
  # (python -m lepton_jax.report computes it from the checkpoint later).
  # A rerun of a finished run trained nothing: the summary keeps the wall time of the training.
  return write_report(workdir, config, wall_seconds=result.wall_seconds if result.trained else None,
                      compute_confusion=jax.process_count() == 1, verbose=False)


def main(argv) -> int:
  p = CliParser(prog="python -m lepton_jax.report", description=__doc__)
  p.add_argument("workdir", help="the run's workdir")
  p.add_argument("--checkpoint", default="latest",
                 help="checkpoint for the confusion matrix when it must be computed: latest, best, STEP")
  p.add_argument("--no_confusion", action="store_true",
                 help="do not evaluate a checkpoint for a missing confusion matrix")
  args = p.parse_args(argv)
  result = write_report(args.workdir, checkpoint=args.checkpoint,
                        compute_confusion=not args.no_confusion)
  for name, info in result["plots"].items():
    print(f"  {name}: {info['path']}")
  return 0


def run(argv: list[str] | None = None) -> None:
  run_cli(main, argv)


if __name__ == "__main__":
  run()
