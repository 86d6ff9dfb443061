"""Host memory of a whole training run on an image folder, as the folder grows.

    PYTHONPATH=. python benchmarks/bench_input_memory.py [--sizes 500,5000] [--steps 100] \
        [--workers -1] [-- --config.KEY=VALUE ...]

For each size N: writes N 128x128 RGB JPEGs (bench_input_speed.write_jpegs: smooth random
pictures, quality 90, 4 class folders), then runs, in a fresh process, the real training command
on them: `python -m lepton_jax.main --config configs/imagefolder_cnn.py:FOLDER` with
data.image_size 128x128, `--steps` steps of batch 64, an evaluation of the validation split at
the end, and the train split streamed (data.on_device_max_mb=0; with the default, a split this
small would be copied to the devices, which on the CPU backend is host memory). The run
prepares the folder (every JPEG is stored as it is), computes the dataset statistics of
`normalize(mean='dataset', std='dataset')`, compiles, trains and evaluates. Prints that
process's peak RSS (ru_maxrss: imports, JAX, the model and compilation included), the largest
peak of its child processes (preparation helpers, input workers) and the growth of the peak from
the first size to the others.
"""

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
SIZE = 128


def child(argv: list[str]) -> None:
  """Runs the training command in this process; prints one JSON line of peaks."""
  from lepton_jax import main
  code = main.main(argv)
  kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  children_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
  print(json.dumps({"exit": code, "peak_rss_mb": kb / 1024, "children_peak_rss_mb": children_kb / 1024}))


def measure(n: int, tmp: str, steps: int, workers: int, overrides: list[str]) -> dict:
  sys.path.insert(0, HERE)
  import bench_input_speed
  root = os.path.join(tmp, f"images_{n}")
  if not os.path.isdir(root):
    bench_input_speed.write_jpegs(root, n, SIZE)
  argv = ["--config", os.path.join(REPO, "configs", "imagefolder_cnn.py") + ":" + root,
          "--workdir", os.path.join(tmp, f"work_{n}"),
          f"--config.data.data_dir={os.path.join(tmp, f'data_{n}')}",
          f"--config.data.image_size={SIZE},{SIZE}", "--config.batch_size=64",
          f"--config.num_train_steps={steps}", f"--config.log_every_steps={steps}",
          f"--config.eval_every_steps={steps}", f"--config.checkpoint_every_steps={steps}",
          "--config.data.on_device_max_mb=0", f"--config.data.workers={workers}", *overrides]
  command = [sys.executable, os.path.abspath(__file__), "--child", *argv]
  out = subprocess.run(command, capture_output=True, text=True, check=True, cwd=REPO).stdout
  shutil.rmtree(os.path.join(tmp, f"work_{n}"), ignore_errors=True)
  shutil.rmtree(os.path.join(tmp, f"data_{n}"), ignore_errors=True)
  return json.loads(out.strip().splitlines()[-1])


def main(argv: list[str]) -> int:
  if argv[:1] == ["--child"]:
    child(argv[1:])
    return 0
  import argparse
  rest, overrides = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (
      argv, [])
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--sizes", default="500,5000", help="image counts, comma-separated")
  p.add_argument("--steps", type=int, default=100)
  p.add_argument("--workers", type=int, default=-1, help="data.workers of the runs")
  p.add_argument("--repeats", type=int, default=1, help="runs per size (the machine is shared)")
  args = p.parse_args(rest)
  tmp = tempfile.mkdtemp(prefix="bench_input_memory_")
  try:
    sizes = [int(s) for s in args.sizes.split(",")]
    peaks = {n: [] for n in sizes}
    for _ in range(args.repeats):
      for n in sizes:
        r = measure(n, tmp, args.steps, args.workers, overrides)
        peaks[n].append(r["peak_rss_mb"])
        print(f"{n:>7,} images: peak RSS {r['peak_rss_mb']:,.0f} MB (children: "
              f"{r['children_peak_rss_mb']:,.0f} MB), exit {r['exit']}", flush=True)
    base = min(peaks[sizes[0]])
    for n in sizes[1:]:
      print(f"peak RSS growth from {sizes[0]:,} to {n:,} images: "
            f"{min(peaks[n]) - base:+,.0f} MB (lowest peaks), "
            f"{max(peaks[n]) - max(peaks[sizes[0]]):+,.0f} MB (highest)")
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
