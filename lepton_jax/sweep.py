"""Hyperparameter sweeps: several runs of one config, each with its own overrides.

A config file defines its sweep next to get_config:

    def get_sweep(arg=None):
      return [{"optimizer.learning_rate": lr} for lr in (1e-3, 3e-3, 1e-2)]
      # or a grid: sweep.product({"optimizer.learning_rate": (1e-3, 1e-2), "batch_size": (32, 64)})

    python -m lepton_jax.main --config configs/x.py --workdir W --sweep [--config.k=v ...]

runs every point, one after the other, in W/<index>_<key=value,...> (the
command-line overrides apply to every point; a point's own keys win). Before
training, the exact command that runs each point alone is printed (and saved in
W/sweep_commands.sh), so points can also be launched separately, e.g. on
several machines. Finished points are skipped when the sweep runs again. At the
end, W/sweep_results.csv and W/sweep_results.md list every point's final eval
metrics, sorted by eval.best_metric (best first, by eval.best_mode).
`--sweep --mode=eval` evaluates each point's checkpoint instead of training.
"""

import csv
import importlib.util
import io
import itertools
import json
import math
import os
import re
import shlex
import sys
from typing import Any, Iterable, Mapping, Sequence

from etils import epath

from lepton_jax import config_lib
from lepton_jax.errors import UserError

RESULTS_CSV = "sweep_results.csv"
RESULTS_MD = "sweep_results.md"
COMMANDS_FILE = "sweep_commands.sh"
POINT_FILE = "sweep_point.json"


def product(grid: Mapping[str, Sequence[Any]]) -> list[dict]:
  """Every combination of the values of `grid` (keys in order, the last varying fastest)."""
  for key, values in grid.items():
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
      raise UserError(f"sweep.product: the values of {key!r} must be a list or tuple, got {values!r}")
  keys = list(grid)
  return [dict(zip(keys, combo)) for combo in itertools.product(*(list(grid[k]) for k in keys))]


def load_sweep(spec: str) -> list[dict]:
  """The override dicts of get_sweep(arg) in config file `path.py[:arg]`."""
  path, _, arg = spec.partition(":")
  if not os.path.isfile(path):
    raise UserError(f"config file {path!r} does not exist")
  name = "lepton_sweep_" + re.sub(r"\W", "_", os.path.splitext(os.path.basename(path))[0])
  module_spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(module_spec)
  try:
    module_spec.loader.exec_module(module)
  except SystemExit as e:
    raise config_lib.exit_error(path, e) from None
  except Exception as e:  # a user's config file may raise anything
    raise UserError(f"config file {path!r} failed to load: {type(e).__name__}: {e}") from e
  if not hasattr(module, "get_sweep"):
    raise UserError(f"{path} defines no get_sweep(arg=None); add one returning a list of override "
                    "dicts, e.g. [{'optimizer.learning_rate': lr} for lr in (1e-3, 1e-2)]")
  try:
    points = module.get_sweep(arg) if arg else module.get_sweep()
  except UserError:
    raise
  except SystemExit as e:
    raise config_lib.exit_error(path, e) from None
  except Exception as e:
    raise UserError(f"{path}: get_sweep({arg!r}) failed: {type(e).__name__}: {e}") from e
  if not isinstance(points, (list, tuple)) or not points or not all(isinstance(p, Mapping) for p in points):
    raise UserError(f"{path}: get_sweep() must return a non-empty list of dicts of overrides "
                    "({'dotted.key': value, ...})")
  return [dict(p) for p in points]


def format_value(value) -> str:
  """A value as it is written on the command line (--config.key=VALUE)."""
  if isinstance(value, str):
    return value
  if isinstance(value, float):
    return repr(value)
  if isinstance(value, (list, tuple)):
    return "(" + ", ".join(repr(v) for v in value) + ("," if len(value) == 1 else "") + ")"
  return repr(value)


def point_name(index: int, point: Mapping[str, Any]) -> str:
  """'<index>_<key=value,...>' with each key's last component (the full key where two clash)."""
  leaves = [k.rpartition(".")[2] for k in point]
  parts = []
  for key, leaf in zip(point, leaves):
    label = leaf if leaves.count(leaf) == 1 else key
    value = re.sub(r"[^A-Za-z0-9.+-]+", "-", format_value(point[key])).strip("-")
    parts.append(f"{label}={value}")
  name = f"{index}_" + ",".join(parts) if parts else str(index)
  return name[:200]


def point_command(config_spec: str, workdir: str, overrides: Sequence[tuple[str, str]]) -> str:
  args = [sys.executable if os.path.basename(sys.executable).startswith("python") else "python",
          "-m", "lepton_jax.main", "--config", config_spec, "--workdir", workdir]
  args += [f"--config.{k}={v}" for k, v in overrides]
  return " ".join(shlex.quote(a) for a in args)


def _merge(base: Sequence[tuple[str, str]], point: Mapping[str, Any]) -> list[tuple[str, str]]:
  merged = [(k, v) for k, v in base if k not in point]
  return merged + [(k, format_value(v)) for k, v in point.items()]


def plan(config_spec: str, workdir: str, base_overrides=()) -> list[dict]:
  """Every point: index, name, overrides, workdir, command and the config (checked)."""
  points = load_sweep(config_spec)
  out = []
  for index, point in enumerate(points):
    overrides = _merge(base_overrides, point)
    config = config_lib.load(config_spec)
    try:
      config_lib.apply_overrides(config, overrides)
      config_lib.validate(config)
    except UserError as e:
      raise UserError(f"sweep point {index + 1}/{len(points)} {point}: {e}") from e
    name = point_name(index, point)
    sub = str(epath.Path(workdir) / name)
    out.append({"index": index, "name": name, "point": point, "overrides": overrides,
                "workdir": sub, "command": point_command(config_spec, sub, overrides),
                "config": config})
  names = [p["name"] for p in out]
  if len(set(names)) != len(names):
    raise UserError("two sweep points have the same overrides; make every point different")
  return out


def _finite(v) -> bool:
  return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def point_result(entry: dict, status: str, error: str = "", evaluated: dict | None = None) -> dict:
  """The point's final and best eval metrics, read back from its metrics.jsonl
  (`evaluated`: metrics of a --mode=eval pass, which replace the final ones)."""
  from lepton_jax.metric_writers import read_metrics
  config = entry["config"]
  split, metric, mode = config.eval.split, config.eval.best_metric, config.eval.best_mode
  rows = [r for r in read_metrics(entry["workdir"]) if r.get("split") == split]
  result = {"index": entry["index"], "name": entry["name"], "status": status,
            **{k: v for k, v in entry["point"].items()}}
  if rows:
    final = max(rows, key=lambda r: r["step"])
    result["step"] = final["step"]
    result.update({k: v for k, v in final.items() if k not in ("step", "split")})
    scored = [r for r in rows if _finite(r.get(metric))]
    if scored:
      sign = 1 if mode == "max" else -1
      best = max(scored, key=lambda r: (sign * r[metric], r["step"]))
      result[f"best_{metric}"] = best[metric]
      result[f"best_{metric}_step"] = best["step"]
  if evaluated:
    result.update(evaluated)
  if error:
    result["error"] = error
  result["workdir"] = entry["workdir"]
  return result


def sort_results(results: list[dict], metric: str, mode: str) -> list[dict]:
  """Best final `metric` first; points without one (failed, not run) last, in index order."""
  def key(r):
    v = r.get(metric)
    if not _finite(v):
      return (1, 0.0, r["index"])
    return (0, -v if mode == "max" else v, r["index"])
  return sorted(results, key=key)


def _columns(results: list[dict], point_keys: list[str]) -> list[str]:
  first = ["index", "name", "status"] + point_keys + ["step"]
  rest = []
  for r in results:
    for k in r:
      if k not in first and k not in rest and k not in ("workdir", "error"):
        rest.append(k)
  return first + rest + ["workdir", "error"]


def _cell(v) -> str:
  if v is None:
    return ""
  if isinstance(v, float):
    return f"{v:.6g}"
  return str(v)


def results_csv(results: list[dict], point_keys: list[str]) -> str:
  columns = _columns(results, point_keys)
  out = io.StringIO()
  w = csv.writer(out)
  w.writerow(columns)
  for r in results:
    w.writerow(["" if r.get(c) is None else r.get(c) for c in columns])  # full precision
  return out.getvalue()


def results_markdown(results: list[dict], point_keys: list[str], metric: str, mode: str) -> str:
  columns = [c for c in _columns(results, point_keys) if c not in ("workdir", "error", "index")]
  lines = [f"Sweep results, sorted by {metric} ({mode}, best first)", "",
           "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
  for r in results:
    lines.append("| " + " | ".join(_cell(r.get(c)) for c in columns) + " |")
  errors = [r for r in results if r.get("error")]
  if errors:
    lines += [""] + [f"- {r['name']}: {r['error']}" for r in errors]
  return "\n".join(lines) + "\n"


def _ordinal(entry: dict, entries: list[dict]) -> str:
  """'2/3' for the second of three points (counted from 1; directory names keep the index)."""
  return f"{entry['index'] + 1}/{len(entries)}"


def run_sweep(config_spec: str, workdir: str, overrides=(), *, mode: str = "train",
              checkpoint: str = "latest", stop_requested=None, devices=None) -> int:
  """Runs (or evaluates) every point of the config's sweep; returns the exit status."""
  import jax
  from lepton_jax import run_record, train
  primary = jax.process_index() == 0
  entries = plan(config_spec, workdir, list(overrides))
  root = run_record.prepare(workdir)
  say = print if primary else (lambda *a, **k: None)
  commands = "\n".join(f"# point {_ordinal(e, entries)}: {json.dumps(e['point'], default=str)}\n"
                       f"{e['command']}" for e in entries)
  if primary:
    (root / COMMANDS_FILE).write_text("#!/bin/sh\n# Each point of the sweep, runnable alone.\n"
                                      + commands + "\n")
  say(f"sweep of {len(entries)} point(s) in {workdir}; each point alone:")
  for e in entries:
    say(f"  {_ordinal(e, entries)}: {e['command']}")
  results = []
  status_code = 0
  for e in entries:
    marker = epath.Path(e["workdir"]) / POINT_FILE
    done = False
    if mode == "train" and marker.exists():
      try:
        saved = json.loads(marker.read_text())
        done = saved.get("status") == "done" and saved.get("overrides") == [list(o) for o in e["overrides"]]
      except ValueError:
        done = False
    if done:
      say(f"\n=== point {_ordinal(e, entries)}: {e['name']} (done before; skipped)")
      results.append(point_result(e, "done"))
      continue
    say(f"\n=== point {_ordinal(e, entries)}: {e['name']}")
    try:
      evaluated = None
      if mode == "eval":
        from lepton_jax import evaluate
        evaluated = evaluate.evaluate_workdir(e["config"], e["workdir"], checkpoint=checkpoint)
      else:
        train.train_and_evaluate(e["config"], e["workdir"], devices=devices,
                                 stop_requested=stop_requested)
        if primary:
          marker.write_text(json.dumps({"status": "done", "overrides": e["overrides"],
                                        "point": e["point"]}, default=str))
      results.append(point_result(e, "done" if mode == "train" else "evaluated", evaluated=evaluated))
    except train.Preempted:
      say(f"sweep stopped at point {_ordinal(e, entries)}: run the same command to continue")
      return train.PREEMPTED_EXIT_CODE
    except UserError as ex:  # e.g. diverged: the other points still run
      say(f"error: point {_ordinal(e, entries)} ({e['name']}): {ex}")
      results.append(point_result(e, "failed", str(ex)))
      status_code = max(status_code, ex.exit_code)
  config = entries[0]["config"]
  metric, best_mode = config.eval.best_metric, config.eval.best_mode
  results = sort_results(results, metric, best_mode)
  point_keys = list(dict.fromkeys(k for e in entries for k in e["point"]))
  if primary:
    (root / RESULTS_CSV).write_text(results_csv(results, point_keys))
    markdown = results_markdown(results, point_keys, metric, best_mode)
    (root / RESULTS_MD).write_text(markdown)
    say("\n" + markdown)
    say(f"wrote {root / RESULTS_CSV} and {root / RESULTS_MD}")
  return status_code
