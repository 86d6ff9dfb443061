"""What the peer benchmarks share: the command line, MNIST from its IDX files, the step clock.

The peers run in their own interpreters (PyTorch in a Python 3.11 venv without jax), so this
module imports only the standard library and numpy, not lepton_jax.
"""

import argparse
import gzip
import json
import os
import platform
import statistics
import struct
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_MNIST = os.path.join(os.path.dirname(REPO), "shared", "data", "mnist")
# configs/mnist_cnn.py's preprocess: normalize(mean=0.1307, std=0.3081) of pixels in [0, 1].
MEAN, STD = 0.1307, 0.3081
PARAMS = 402_442  # 320 + 401,472 + 650 (lepton_jax/models/cnn.py)


class PeerError(Exception):
  """A bad command line or missing data: shown as one line `error: ...`, exit status 2."""


class PeerParser(argparse.ArgumentParser):
  """argparse whose usage errors are one line `error: ... (see --help)`, like lepton_jax.cli."""

  def error(self, message):
    raise PeerError(f"{message} (see --help)")


def parser(description: str) -> PeerParser:
  """The options every peer takes: the same step clock and data as lepton_jax.bench's loop."""
  p = PeerParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--steps", type=int, default=100, help="steps per timed interval")
  p.add_argument("--repeats", type=int, default=5,
                 help="timed intervals (after one warm-up interval); the median is reported")
  p.add_argument("--batch", type=int, default=128)
  p.add_argument("--mnist-dir", default=DEFAULT_MNIST,
                 help="folder with train-images-idx3-ubyte[.gz] and train-labels-idx1-ubyte[.gz]")
  return p


def run(main) -> None:
  """Exits with main()'s status; a PeerError becomes one line `error: ...` and status 2."""
  try:
    code = main()
  except PeerError as e:
    print(f"error: {e}", file=sys.stderr)
    code = 2
  sys.stdout.flush()
  sys.exit(code)


def check_args(args) -> None:
  for name in ("steps", "repeats", "batch"):
    if getattr(args, name) < 1:
      raise PeerError(f"--{name} must be at least 1, got {getattr(args, name)}")


def _read_idx(folder: str, name: str, magic: int) -> np.ndarray:
  """One IDX file (gzipped or not) as a uint8 array of the shape its header gives."""
  for path in (os.path.join(folder, name + ".gz"), os.path.join(folder, name)):
    if os.path.exists(path):
      opener = gzip.open if path.endswith(".gz") else open
      with opener(path, "rb") as f:
        data = f.read()
      break
  else:
    raise PeerError(f"no {name}[.gz] in {folder}: give --mnist-dir, the folder of MNIST's IDX files")
  if struct.unpack(">I", data[:4])[0] != magic:
    raise PeerError(f"{path}: not an IDX file of unsigned bytes with {magic & 0xff} dimensions")
  ndim = magic & 0xff
  shape = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
  return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_mnist(folder: str) -> tuple[np.ndarray, np.ndarray]:
  """MNIST's training split in memory: (images float32 [n, 28, 28] normalized, labels uint8 [n])."""
  images = _read_idx(folder, "train-images-idx3-ubyte", 0x803)
  labels = _read_idx(folder, "train-labels-idx1-ubyte", 0x801)
  if len(images) != len(labels):
    raise PeerError(f"{folder}: {len(images)} images but {len(labels)} labels")
  return (images.astype(np.float32) / 255.0 - MEAN) / STD, labels


class StepClock:
  """Times `repeats` + 1 intervals of `steps` training steps; the first one (the warm-up, which
  holds any tracing or compiling) is dropped. lepton_jax.bench's loop figure is timed the same
  way: wall time between log points `steps` steps apart, first interval dropped.

  Call `before_step(i)` before the step on batch `i` of an epoch; it notes the time every
  `steps` steps (at that point the eager CPU frameworks have finished the previous step) and
  returns False once the last interval has ended. Images are counted per step, so a partial
  last batch of an epoch counts what it holds.
  """

  def __init__(self, steps: int, repeats: int, n: int, batch: int):
    self.steps, self.repeats, self.n, self.batch = steps, repeats, n, batch
    self.started = self.images = 0
    self.marks: list[tuple[float, float, int]] = []  # (wall, process CPU, images so far)

  def before_step(self, index_in_epoch: int) -> bool:
    if self.started % self.steps == 0:
      self.marks.append((time.perf_counter(), time.process_time(), self.images))
      if len(self.marks) == self.repeats + 2:
        return False
    self.images += min(self.batch, self.n - index_in_epoch * self.batch)
    self.started += 1
    return True

  @property
  def done(self) -> bool:
    return len(self.marks) == self.repeats + 2

  def rates(self) -> tuple[list[float], list[float]]:
    """(images/s, images per CPU-second) of each timed interval, the warm-up left out."""
    walls, cpus = [], []
    for (w0, c0, i0), (w1, c1, i1) in zip(self.marks[1:], self.marks[2:]):
      walls.append((i1 - i0) / (w1 - w0))
      cpus.append((i1 - i0) / max(c1 - c0, 1e-9))
    return walls, cpus


def report(program: str, clock: StepClock, params: int, versions: dict, setup: dict) -> None:
  """Prints the human summary and one `result: {json}` line that benchmarks/compare_peers.py reads."""
  walls, cpus = clock.rates()
  versions = dict(versions, python=platform.python_version(), numpy=np.__version__)
  print("interval images/s: " + ", ".join(f"{r:,.0f}" for r in walls))
  print(f"images per CPU-second: {statistics.median(cpus):,.0f} (process time of all threads)")
  print(f"images/s: {statistics.median(walls):,.0f} (median of {len(walls)} intervals x "
        f"{clock.steps} steps)")
  print("result: " + json.dumps({
      "program": program, "params": params, "versions": versions, "setup": setup,
      "steps": clock.steps, "interval_images_per_s": walls, "interval_images_per_cpu_s": cpus,
      "images_per_s": statistics.median(walls)}))
