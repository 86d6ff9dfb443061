"""Times a config's train step, its input pipeline and the full train loop.

    python -m lepton_jax.bench --config configs/mnist_cnn.py \
        --config.data.manual_dir=../shared/data/mnist [--steps 100] [--repeats 5] [--rounds 3]

Prints medians over `rounds` x `repeats` timed intervals of `steps` steps each
(each after a warm-up interval; the rounds alternate bare step and loop, so a
drifting machine load affects both alike):
  step       the bare jitted train step on one fixed on-device batch
             (synthetic-data mode: no input pipeline at all) - the floor;
  input      the input pipeline alone, as the run feeds it: host batch assembly + transfer,
             or (a split kept on the devices, gathered inside the step) the per-epoch
             row-order transfer, amortized;
  loop       the real train loop (train_and_evaluate: prefetch, step, logging),
             read from the live figures it logs;
and the ratio loop / step.
"""

import statistics
import tempfile
import time

import jax

from lepton_jax import config_lib, metric_writers
from lepton_jax.train import loop
from lepton_jax.train.feed import TrainFeed
from lepton_jax.cli import CliParser, run_cli, split_overrides


def _intervals(fn, steps: int, repeats: int) -> list[float]:
  """Seconds per step of `fn(steps)` over `repeats` intervals (after one warm-up)."""
  fn(steps)
  return [fn(steps) / steps for _ in range(repeats)]


def _median_interval(fn, steps: int, repeats: int) -> float:
  return statistics.median(_intervals(fn, steps, repeats))


def bare_step_timer(task, feed: TrainFeed):
  """fn(n) -> seconds for n bare train steps on one fixed on-device batch."""
  batch = feed.to_device(feed.host_batch(0))
  holder = {"state": task.init_state(task.init_rng)}

  def interval(n):
    s = holder["state"]
    t0 = time.perf_counter()
    for _ in range(n):
      s, metrics = task.train_step(s, batch)
    jax.block_until_ready((s, metrics))
    holder["state"] = s
    return time.perf_counter() - t0

  return interval


def time_input(feed: TrainFeed, steps: int, repeats: int) -> float:
  """Host time per step to produce the step's input arguments, as the run feeds them."""

  def interval(n):
    t0 = time.perf_counter()
    for _ in range(n):
      args = feed.next_args()
    jax.block_until_ready(args)
    return time.perf_counter() - t0

  return _median_interval(interval, steps, repeats)


def time_loop(config, steps: int, repeats: int) -> tuple[list[float], list[float]]:
  """(seconds/step, input-wait fraction) of each of the real loop's logged intervals."""
  config = config.copy_and_resolve_references()
  total = steps * (repeats + 1)
  with config.unlocked():
    config.num_train_steps = total
    config.log_every_steps = steps
    config.eval_every_steps = total
    config.checkpoint_every_steps = total
  with tempfile.TemporaryDirectory() as workdir:
    loop.train(config, workdir)
    rows = [r for r in metric_writers.read_metrics(workdir) if r["split"] == "train"][1:]
  return [r["step_time_ms"] / 1000 for r in rows], [r["input_wait_fraction"] for r in rows]


def main(argv: list[str]) -> int:
  rest, overrides = split_overrides(argv)
  parser = CliParser(prog="python -m lepton_jax.bench", description=__doc__.split("\n\n")[0])
  parser.add_argument("--config", required=True)
  parser.add_argument("--steps", type=int, default=100, help="steps per timed interval")
  parser.add_argument("--repeats", type=int, default=5, help="timed intervals (median reported)")
  parser.add_argument("--rounds", type=int, default=3,
                      help="alternations of bare step and loop (a drifting load affects both)")
  parser.add_argument("--only", choices=("step", "input", "loop"), action="append",
                      help="time only these parts (repeatable)")
  args = parser.parse_args(rest)
  config = config_lib.load(args.config)
  config_lib.apply_overrides(config, overrides)
  parts = args.only or ["step", "input", "loop"]
  batch = config.batch_size
  results, step_times, loop_times, waits = {}, [], [], []
  dataset, task = loop.build(config)
  feed = TrainFeed(task, dataset, 0)
  on_device = feed.on_device
  print(f"{config.model.name} on {task.info.name}, global batch {batch}, "
        f"{jax.device_count()} {jax.devices()[0].platform} device(s); medians of "
        f"{args.rounds} rounds x {args.repeats} intervals x {args.steps} steps")
  try:
    if "input" in parts:
      results["input"] = time_input(feed, args.steps, args.repeats)
    bare_step = bare_step_timer(task, feed) if "step" in parts else None
    for _ in range(args.rounds if "loop" in parts else 1):
      if bare_step:
        step_times += _intervals(bare_step, args.steps, args.repeats)
      if "loop" in parts:
        times, fractions = time_loop(config, args.steps, args.repeats)
        loop_times += times
        waits += fractions
  finally:
    feed.close()
  if step_times:
    results["step"] = statistics.median(step_times)
  if loop_times:
    results["loop"] = statistics.median(loop_times)
  wait = statistics.median(waits) if waits else None
  for name, seconds in results.items():
    if name == "input" and on_device:
      print(f"input  {seconds * 1000:8.2f} ms/step  (the split is on the devices; the step gathers "
            "its batch)")
      continue
    print(f"{name:<6} {seconds * 1000:8.2f} ms/step  {batch / seconds:10,.0f} examples/s")
  if wait is not None:
    print(f"loop input wait: {100 * wait:.1f}% of step time")
  if "step" in results and "loop" in results:
    print(f"loop / bare step throughput: {results['step'] / results['loop']:.3f}")
  return 0


if __name__ == "__main__":
  run_cli(main)
