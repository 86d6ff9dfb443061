"""What async checkpointing costs the training loop.

    PYTHONPATH=. python benchmarks/bench_checkpointing.py [--steps 600] [--repeats 3]
    PYTHONPATH=. python benchmarks/bench_checkpointing.py --dataset digits   # no MNIST at hand
    PYTHONPATH=. python benchmarks/bench_checkpointing.py --writer_priority normal  # compare

Trains configs/mnist_cnn.py (Conv 32 -> pool -> Dense 64 -> Dense 10, Adam, batch 128,
402k parameters: a 4.8 MB state; on MNIST from ../shared/data/mnist, prepared once
under --data_dir) with the real loop (`train.train_and_evaluate`), logging every 100
steps. Two estimates of the cost of an async checkpoint every 100 steps:

  * runs: alternating runs that save every 100 steps and only at the end, `--repeats`
    times each; throughput from metrics.jsonl (every logged interval but the first,
    which holds the compile; the final save falls after the last one in both). Simple,
    but on a shared machine the load drifts between runs.
  * paired: one run of `--paired_steps` that saves every 200 steps, so that 100-step
    intervals alternate between one that pays for a save (its blocking part and the
    background write) and one that does not; the cost is the median, over adjacent
    pairs, of (time with a save) / (time without) - 1. Adjacent intervals see about
    the same load, so this one holds up on a busy machine (or one whose speed drifts
    from run to run), the more so the more pairs.

The checkpoint writer runs at `--writer_priority` (default: the config's, auto = idle
on the CPU backend; see lepton_jax/checkpoint/writer.py).

Also prints how long the loop was blocked per save: with the idle-priority writer,
dispatching the device-side copy of the state; at normal priority, the synchronous
part of the save (the device-to-host copy, checksums, and Orbax's bookkeeping).
"""

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time

from lepton_jax.checkpoint.writer import WRITER_PRIORITIES

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
MNIST = os.path.join(REPO, "..", "shared", "data", "mnist")


def intervals(workdir: str, batch_size: int) -> list[tuple[int, float]]:
  """(end step, seconds) of every logged train interval but the first."""
  rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
  rows = [r for r in rows if r["split"] == "train"]
  out = []
  for previous, row in zip(rows, rows[1:]):
    out.append((row["step"], (row["step"] - previous["step"]) * batch_size / row["examples_per_sec"]))
  return out


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--steps", type=int, default=600, help="steps of each alternating run")
  p.add_argument("--repeats", type=int, default=3, help="alternating runs of each kind")
  p.add_argument("--paired_steps", type=int, default=4000, help="steps of the paired run; 0: skip")
  p.add_argument("--every", type=int, default=100, help="checkpoint every N steps")
  p.add_argument("--dataset", choices=("mnist", "digits"), default="mnist")
  p.add_argument("--writer_priority", choices=WRITER_PRIORITIES, default="auto")
  p.add_argument("--data_dir", default=os.path.join(tempfile.gettempdir(), "lepton_bench_tfds"))
  args = p.parse_args()

  from lepton_jax import config_lib, train
  from lepton_jax.checkpoint import manager as checkpointing

  blocked: list[float] = []
  save = checkpointing.Checkpointer.save

  def timed_save(self, *a, **k):
    t0 = time.perf_counter()
    try:
      return save(self, *a, **k)
    finally:
      blocked.append(time.perf_counter() - t0)

  checkpointing.Checkpointer.save = timed_save

  def run(steps: int, every: int):
    """(intervals, blocked seconds of each save but the final one)."""
    config = config_lib.load(os.path.join(REPO, "configs", "mnist_cnn.py"))
    config_lib.apply_overrides(config, [
        ("data.name", args.dataset), ("data.data_dir", args.data_dir),
        ("data.manual_dir", MNIST if args.dataset == "mnist" else ""),
        ("num_train_steps", str(steps)), ("log_every_steps", str(args.every)),
        ("eval_every_steps", str(10 * steps)), ("checkpoint_every_steps", str(every)),
        ("checkpoint.writer_priority", args.writer_priority),
    ])
    # (the learning-rate schedule does not change the speed; the warm-up must fit the run)
    config_lib.apply_overrides(config, [
        ("optimizer.warmup_steps", str(min(config.optimizer.warmup_steps, steps // 4)))])
    if args.dataset == "digits":
      config_lib.apply_overrides(config, [("data.preprocess", "to_float")])
    workdir = tempfile.mkdtemp(prefix="bench_ckpt_")
    try:
      del blocked[:]
      train.train_and_evaluate(config, workdir)
      return intervals(workdir, config.batch_size), blocked[:-1]
    finally:
      shutil.rmtree(workdir, ignore_errors=True)

  batch = 128
  run(2 * args.every, 2 * args.every)  # prepares the data and warms everything up
  lines = [f"{args.dataset} CNN (configs/mnist_cnn.py), batch {batch}, async checkpoint every "
           f"{args.every} steps, writer priority {args.writer_priority}"]
  per_save = []

  if args.repeats:
    results = {"none": [], "every": []}
    for _ in range(args.repeats):
      for variant in ("none", "every"):
        spans, saves = run(args.steps, args.steps if variant == "none" else args.every)
        results[variant].append(sum(args.every for _ in spans) * batch / sum(s for _, s in spans))
        per_save += saves
    base, ckpt = statistics.median(results["none"]), statistics.median(results["every"])
    lines += [
        f"  runs ({args.repeats} x {args.steps} steps each, alternating; median):",
        f"    no checkpoints (only at the end): {base:8,.0f} examples/s  "
        f"{[round(x) for x in results['none']]}",
        f"    checkpoint every {args.every} steps:     {ckpt:8,.0f} examples/s  "
        f"{[round(x) for x in results['every']]}",
        f"    ratio {ckpt / base:.3f} (cost {100 * (1 - ckpt / base):+.1f}%)"]

  if args.paired_steps:
    spans, saves = run(args.paired_steps, 2 * args.every)
    per_save += saves
    seconds = dict(spans)
    # The save at step 2k*every stalls the interval ending at 2k*every + every.
    costs = [seconds[s + args.every] / seconds[s + 2 * args.every] - 1
             for s in range(2 * args.every, args.paired_steps - 2 * args.every + 1, 2 * args.every)
             if s + 2 * args.every in seconds]
    with_save = sum(seconds[s + args.every] for s in range(2 * args.every, args.paired_steps -
                                                          2 * args.every + 1, 2 * args.every))
    without = sum(seconds[s + 2 * args.every] for s in range(2 * args.every, args.paired_steps -
                                                            2 * args.every + 1, 2 * args.every))
    lines += [
        f"  paired (one run of {args.paired_steps} steps, {len(costs)} adjacent interval pairs):",
        f"    {args.every} steps with a save: {with_save / len(costs):.3f} s; without: "
        f"{without / len(costs):.3f} s (mean)",
        f"    cost of a checkpoint every {args.every} steps: median {100 * statistics.median(costs):+.1f}%"
        f" (pairs: {' '.join(f'{100 * c:+.0f}' for c in costs)})",
        f"    throughput ratio (sums) {without / with_save:.3f}"]

  lines.append(f"  the loop was blocked {1000 * statistics.median(per_save):.0f} ms per save "
               f"(median of {len(per_save)} saves)")
  print("\n" + "\n".join(lines))


if __name__ == "__main__":
  main()
