"""Host memory of preparing and streaming an image folder, as the folder grows.

    PYTHONPATH=. python benchmarks/bench_input_memory.py [--sizes 500,5000] [--batch 64] \
        [--workers -1] [--epochs 1]

For each size N: writes N 128x128 RGB JPEGs (bench_input_speed.write_jpegs: smooth random
pictures, quality 90, 4 class folders), then, in a fresh process, prepares them into records
(image_size 128x128: every file is stored as it is; helper processes for big folders) and
streams `--epochs` epochs of training batches of `--batch` (stream.train_batches, `--workers`
worker processes, -1: the host default). Prints that process's peak RSS (ru_maxrss: imports
included), the largest peak of its child processes (preparation helpers, stream workers), the
preparation and streaming times, and the growth of the peak from the first size to the others.
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SIZE = 128


def child(root: str, data_dir: str, batch: int, workers: int, epochs: int) -> None:
  """Prepares and streams; prints one JSON line of measurements."""
  from lepton_jax.data import order, pipeline, sources, stream
  from lepton_jax.data.prepare import core, image_folder
  start = time.perf_counter()
  manifest = core.ensure(image_folder.ImageFolder(root, (SIZE, SIZE), 3, 0.01), data_dir,
                         verbose=False)
  prepared = time.perf_counter()
  source = sources.RecordSource(manifest, "train")
  layout = order.ShardLayout.create(0, 0, 1)
  steps = epochs * order.TrainOrder.create(len(source), layout, batch, 0).steps_per_epoch
  with stream.train_batches(source, layout, batch, seed=0, workers=workers) as batches:
    for _ in range(steps):
      next(batches)
  streamed = time.perf_counter()
  kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  children_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
  print(json.dumps({"examples": len(source), "steps": steps,
                    "prepare_s": prepared - start, "stream_s": streamed - prepared,
                    "peak_rss_mb": kb / 1024, "children_peak_rss_mb": children_kb / 1024}))


def measure(n: int, tmp: str, args) -> dict:
  sys.path.insert(0, HERE)
  import bench_input_speed
  root = os.path.join(tmp, f"images_{n}")
  bench_input_speed.write_jpegs(root, n, SIZE)
  env = dict(os.environ)
  command = [sys.executable, os.path.abspath(__file__), "--child", root,
             os.path.join(tmp, f"data_{n}"), "--batch", str(args.batch), "--workers",
             str(args.workers), "--epochs", str(args.epochs)]
  out = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
  shutil.rmtree(root, ignore_errors=True)
  shutil.rmtree(os.path.join(tmp, f"data_{n}"), ignore_errors=True)
  return json.loads(out.strip().splitlines()[-1])


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--sizes", default="500,5000", help="image counts, comma-separated")
  p.add_argument("--batch", type=int, default=64)
  p.add_argument("--workers", type=int, default=-1)
  p.add_argument("--epochs", type=int, default=1)
  p.add_argument("--child", nargs=2, metavar=("ROOT", "DATA_DIR"), help=argparse.SUPPRESS)
  args = p.parse_args()
  if args.child:
    child(*args.child, args.batch, args.workers, args.epochs)
    return 0
  tmp = tempfile.mkdtemp(prefix="bench_input_memory_")
  try:
    results = []
    sizes = [int(s) for s in args.sizes.split(",")]
    for n in sizes:
      r = measure(n, tmp, args)
      results.append(r)
      print(f"{n:>7,} images: peak RSS {r['peak_rss_mb']:,.0f} MB (children: "
            f"{r['children_peak_rss_mb']:,.0f} MB), prepare {r['prepare_s']:.1f} s, stream "
            f"{r['steps']} batches in {r['stream_s']:.1f} s", flush=True)
    for n, r in zip(sizes[1:], results[1:]):
      print(f"peak RSS growth from {sizes[0]:,} to {n:,} images: "
            f"{r['peak_rss_mb'] - results[0]['peak_rss_mb']:+,.0f} MB")
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
