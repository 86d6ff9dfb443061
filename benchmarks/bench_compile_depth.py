"""Compile time of a language model's whole train step against its depth: with scanned layers
(model.scan_layers, the default) it does not grow with depth.

    PYTHONPATH=. python benchmarks/bench_compile_depth.py [--config configs/gpt2_small.py:tiny]
        [--depths 12,24] [--repeats 3]

For each depth (and scan_layers on and off) the real train step of the config (loss, gradients,
AdamW) is lowered and compiled from its abstract state and batch, fresh each time; prints the
median seconds and the ratio to the first depth.
"""

import statistics
import sys
import time

import jax
import numpy as np

from lepton_jax import config_lib, task as task_lib
from lepton_jax.cli import CliParser, run_cli
from lepton_jax.data.info import DatasetInfo


def compile_seconds(config, depth: int, scan: bool) -> float:
  config = config.copy_and_resolve_references()
  with config.unlocked():
    config.model.depth = depth
    config.model.scan_layers = scan
  t = config.data.seq_len
  info = DatasetInfo("synthetic", "tokens", (t,), np.int32, 256, {"train": 4096, "validation": 64},
                     label_key="targets")
  task = task_lib.build(config, info, devices=jax.devices()[:1])
  batch = {k: jax.ShapeDtypeStruct((config.batch_size, t), np.int32, sharding=task.batch_sharding)
           for k in ("tokens", "targets")}
  jax.clear_caches()
  t0 = time.perf_counter()
  task.train_step.lower(task.abstract_state, batch).compile()
  return time.perf_counter() - t0


def main(argv) -> int:
  p = CliParser(prog="benchmarks/bench_compile_depth.py", description=__doc__)
  p.add_argument("--config", default="configs/gpt2_small.py:tiny")
  p.add_argument("--depths", default="12,24")
  p.add_argument("--repeats", type=int, default=3)
  args = p.parse_args(argv)
  config = config_lib.load(args.config)
  depths = [int(d) for d in args.depths.split(",")]
  for scan in (True, False):
    times = {d: statistics.median(compile_seconds(config, d, scan) for _ in range(args.repeats))
             for d in depths}
    first = times[depths[0]]
    print(f"scan_layers={scan}: " + ", ".join(
        f"depth {d} {s:.2f}s ({s / first:.2f}x)" for d, s in times.items()))
  return 0


if __name__ == "__main__":
  run_cli(main, sys.argv[1:])
