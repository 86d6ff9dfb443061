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
import re

import jax
import numpy as np
from etils import epath

from lepton_jax import run_record, task as task_lib
from lepton_jax.checkpoint import select
from lepton_jax.checkpoint.manager import Checkpointer
from lepton_jax.data import base as data_base, pipeline, sources, stream


# ---------------------------------------------------------------- evaluation

_add = jax.jit(lambda a, b: jax.tree.map(lambda x, y: x + y, a, b))


class Evaluator:
  """The experiment's eval statistics of a state over every example of a split.

  The split streams (data/stream.py): this process's shards in order, in padded batches whose
  `mask` marks the real rows; every process runs the same number of batches, and each example
  counts exactly once.
  """

  def __init__(self, task, dataset):
    self.task, self.dataset = task, dataset

  def batches(self, split: str) -> stream.Batches:
    """This process's padded eval batches of `split` (host arrays)."""
    task, data = self.task, self.task.config.data
    source = self.dataset.split_source(split)
    workers, threads = stream.resolve_workers(data.workers, sources.decodes_images(source))
    return stream.eval_batches(source, task.layout, task.eval_batch_size, workers=workers,
                               threads=threads, prefetch=data.prefetch)

  def statistics(self, state, split: str) -> dict[str, np.ndarray]:
    """Sums (loss, count, confusion...) over every example of `split`, each exactly once."""
    task = self.task
    stats = None
    # Batches go to the devices from this thread: the step runs asynchronously meanwhile, and
    # the workers read ahead. (Consumed from another thread, Grain's worker processes were
    # seen to leave shared memory behind.)
    with self.batches(split) as batches, task.tracing_context():
      num_examples = batches.num_examples
      for batch in batches:
        batch_stats = task.eval_step(state, pipeline.make_global(batch, task.batch_sharding))
        stats = batch_stats if stats is None else _add(stats, batch_stats)
    stats = {k: np.asarray(v) for k, v in jax.device_get(stats).items()}
    if int(round(float(stats["count"]))) != num_examples:
      raise RuntimeError(f"evaluated {stats['count']} examples of {split!r}, expected "
                         f"{num_examples}")
    return stats

  def evaluate(self, state, split: str) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """(metrics, statistics) of `state` on `split`."""
    stats = self.statistics(state, split)
    return self.task.experiment.summarize(stats), stats


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


def evaluate_workdir(config, workdir: str, checkpoint="latest", split: str | None = None,
                     write: bool = True, verbose: bool = True) -> dict:
  """Evaluates checkpoint `checkpoint` (latest, best or a step) of `workdir` on `split`
  (default config.eval.split); returns the metrics plus `step`. Reads only that split."""
  split = split or config.eval.split
  step = select.resolve_checkpoint(workdir, checkpoint, config)
  dataset = data_base.build(config.data)
  info = dataset.info()
  info.split_size(split)  # an unknown split fails before the restore
  specs = run_record.op_specs(run_record.read(workdir), config)
  task = task_lib.build(config, info, specs)
  checkpointer = Checkpointer(workdir)
  try:
    state = checkpointer.restore(task.abstract_state, step)
  finally:
    checkpointer.close()
  metrics, stats = Evaluator(task, dataset).evaluate(state, split)
  is_primary = jax.process_index() == 0
  paths = write_results(workdir, split, step, metrics, stats, info.label_names) if (
      write and is_primary) else {}
  if verbose and is_primary:
    print(f"restored checkpoint {step} ({select.describe_choice(workdir, checkpoint, step, config)})")
    n = int(round(float(stats["count"])))
    print(format_table(metrics, f"eval of {workdir} checkpoint {step} on {split!r} ({n:,} examples)"))
    for path in paths.values():
      print(f"wrote {path}")
  return dict(metrics, step=step)
