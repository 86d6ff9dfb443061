"""What async checkpointing costs the training loop.

    PYTHONPATH=. python benchmarks/bench_checkpointing.py [--steps 1000] [--repeats 3]
    PYTHONPATH=. python benchmarks/bench_checkpointing.py --dataset digits   # no MNIST at hand

Trains configs/mnist_cnn.py (Conv 32 -> pool -> Dense 64 -> Dense 10, Adam, batch 128; on
MNIST from ../shared/data/mnist, prepared once under --data_dir) with the real loop
(`train.train_and_evaluate`), once saving a checkpoint every 100 steps (async, the
default) and once saving only at the end, alternating the two `--repeats` times so
that load from other processes hits both alike. Throughput is taken from
metrics.jsonl (examples/s of every logged interval but the first, which holds the
compile and warm-up); the save at the very end falls outside it in both variants,
so the difference is the cost of the periodic saves, including their background
writes competing for the CPU. Prints both throughputs (median over repeats), their
ratio, and how long the loop was blocked per save.
"""

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
MNIST = os.path.join(REPO, "..", "shared", "data", "mnist")


def throughput(workdir: str, batch_size: int) -> float:
  """Examples/s over every logged train interval but the first."""
  rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
  rows = [r for r in rows if r["split"] == "train"]
  examples = seconds = 0.0
  previous = rows[0]["step"]
  for row in rows[1:]:
    n = (row["step"] - previous) * batch_size
    examples += n
    seconds += n / row["examples_per_sec"]
    previous = row["step"]
  return examples / seconds


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--steps", type=int, default=1000)
  p.add_argument("--every", type=int, default=100, help="checkpoint every N steps")
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--dataset", choices=("mnist", "digits"), default="mnist")
  p.add_argument("--data_dir", default=os.path.join(tempfile.gettempdir(), "lepton_bench_tfds"))
  args = p.parse_args()

  from lepton_jax import checkpointing, config_lib, train

  blocked: list[float] = []
  save = checkpointing.Checkpointer.save

  def timed_save(self, *a, **k):
    t0 = time.perf_counter()
    try:
      return save(self, *a, **k)
    finally:
      blocked.append(time.perf_counter() - t0)

  checkpointing.Checkpointer.save = timed_save

  def run(every: int) -> float:
    config = config_lib.load(os.path.join(REPO, "configs", "mnist_cnn.py"))
    config_lib.apply_overrides(config, [
        ("data.name", args.dataset), ("data.data_dir", args.data_dir),
        ("data.manual_dir", MNIST if args.dataset == "mnist" else ""),
        ("num_train_steps", str(args.steps)), ("log_every_steps", str(args.every)),
        ("eval_every_steps", str(10 * args.steps)), ("checkpoint_every_steps", str(every)),
    ])
    if args.dataset == "digits":
      config_lib.apply_overrides(config, [("data.preprocess", "to_float")])
    workdir = tempfile.mkdtemp(prefix="bench_ckpt_")
    try:
      del blocked[:]
      train.train_and_evaluate(config, workdir)
      saves = blocked[:-1]  # the final save is outside the timed intervals
      ex_per_sec = throughput(workdir, config.batch_size)
      timed_steps = args.steps - args.every  # every logged interval but the first
      return ex_per_sec, saves, timed_steps * config.batch_size / ex_per_sec
    finally:
      shutil.rmtree(workdir, ignore_errors=True)

  results = {"none": [], "every": []}
  per_save, blocked_fraction = [], []
  run(args.steps)  # prepares the data and warms everything up
  for _ in range(args.repeats):
    for variant in ("none", "every"):
      ex_per_sec, saves, seconds = run(args.steps if variant == "none" else args.every)
      results[variant].append(ex_per_sec)
      if variant == "every":
        per_save += saves
        # The saves at every, 2*every, ... stall the timed intervals that follow them.
        blocked_fraction.append(sum(saves) / seconds)

  base, ckpt = statistics.median(results["none"]), statistics.median(results["every"])
  print(f"\n{args.dataset} CNN, {args.steps} steps, batch 128, "
        f"{args.repeats} alternating repeats")
  print(f"  no checkpoints (only at the end): {base:10,.0f} examples/s  "
        f"{[round(x) for x in results['none']]}")
  print(f"  async checkpoint every {args.every} steps: {ckpt:9,.0f} examples/s  "
        f"{[round(x) for x in results['every']]}")
  print(f"  ratio {ckpt / base:.3f} (cost {100 * (1 - ckpt / base):+.1f}%)")
  print(f"  the loop was blocked {1000 * statistics.median(per_save):.0f} ms per save (median of "
        f"{len(per_save)}), {100 * statistics.median(blocked_fraction):.2f}% of the training time")


if __name__ == "__main__":
  main()
