"""The train loop fed two ways, alternating: the split on the devices vs streamed.

    PYTHONPATH=. python benchmarks/bench_input_feed.py --config configs/mnist_cnn.py \
        --config.data.manual_dir=../shared/data/mnist [--rounds 3] [--steps 50] [--repeats 3]
    PYTHONPATH=. python benchmarks/bench_input_feed.py --config configs/cifar10_resnet.py:small \
        --fake_cifar10 50000

Each round runs the real train loop (lepton_jax.bench.time_loop: train_and_evaluate for
(repeats + 1) x steps steps, the first logged interval left out) once with the config as it is
(a split that fits data.on_device_max_mb lives on the devices) and once forced to stream
(data.on_device_max_mb=0: read, decoded and batched on the host, prefetched to the devices),
alternating, so that a drifting machine load affects both alike. Prints, per way, the median
examples/s and the range over every logged interval, the median input wait (the share of the
step the loop spent waiting for its next batch), and streamed / on-device throughput.

--fake_cifar10 N writes a python-version CIFAR-10 archive of N random train images (and N/5
test images) and prepares it like the real one (checksums off): CIFAR-10's shapes and record
sizes where the archive itself is not at hand.
"""

import io
import os
import pickle
import statistics
import sys
import tarfile
import tempfile

import numpy as np

from lepton_jax import bench, config_lib
from lepton_jax.cli import CliParser, split_overrides


def fake_cifar10(folder: str, train: int, seed: int = 0) -> None:
  """A cifar-10-python.tar.gz of random images in the original's format."""
  rng = np.random.default_rng(seed)
  sizes = [train // 5 + (1 if i < train % 5 else 0) for i in range(5)] + [max(1, train // 5)]
  names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
  with tarfile.open(os.path.join(folder, "cifar-10-python.tar.gz"), "w:gz", compresslevel=1) as tar:
    members = {name: {b"labels": rng.integers(0, 10, n).tolist(),
                      b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8)}
               for name, n in zip(names, sizes)}
    members["batches.meta"] = {b"label_names": [f"class{i}".encode() for i in range(10)]}
    for name, obj in members.items():
      raw = pickle.dumps(obj, protocol=2)
      info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
      info.size = len(raw)
      tar.addfile(info, io.BytesIO(raw))


def describe(times: list[float], waits: list[float], batch: int) -> str:
  rates = [batch / t for t in times]
  return (f"{statistics.median(rates):8,.0f} examples/s (range {min(rates):,.0f}-"
          f"{max(rates):,.0f} over {len(rates)} intervals), input wait "
          f"{100 * statistics.median(waits):.1f}% (median)")


def main(argv: list[str]) -> int:
  rest, overrides = split_overrides(argv)
  p = CliParser(prog="benchmarks/bench_input_feed.py", description=__doc__.split("\n\n")[0])
  p.add_argument("--config", required=True)
  p.add_argument("--rounds", type=int, default=3)
  p.add_argument("--steps", type=int, default=50, help="steps per logged interval")
  p.add_argument("--repeats", type=int, default=3, help="timed intervals per run")
  p.add_argument("--fake_cifar10", type=int, default=0, help="train images of a fake CIFAR-10")
  args = p.parse_args(rest)
  config = config_lib.load(args.config)
  config_lib.apply_overrides(config, overrides)
  with tempfile.TemporaryDirectory(prefix="bench_input_feed_") as tmp:
    if args.fake_cifar10:
      fake_cifar10(tmp, args.fake_cifar10)
      config_lib.apply_overrides(config, [("data.manual_dir", tmp),
                                          ("data.verify_checksums", "False")])
      if not config.data.data_dir:
        config_lib.apply_overrides(config, [("data.data_dir", os.path.join(tmp, "data"))])
    streamed = config.copy_and_resolve_references()
    config_lib.apply_overrides(streamed, [("data.on_device_max_mb", "0")])
    results = {"on devices": ([], []), "streamed": ([], [])}
    print(f"{config.model.name} on {config.data.name}, batch {config.batch_size}: "
          f"{args.rounds} rounds x {args.repeats} intervals x {args.steps} steps", flush=True)
    for r in range(args.rounds):
      for name, c in (("on devices", config), ("streamed", streamed)):
        times, waits = bench.time_loop(c, args.steps, args.repeats)
        results[name][0].extend(times)
        results[name][1].extend(waits)
        print(f"round {r + 1} {name:>10}: {describe(times, waits, config.batch_size)}", flush=True)
  for name, (times, waits) in results.items():
    print(f"{name:>10}: {describe(times, waits, config.batch_size)}")
  ratio = statistics.median(results["on devices"][0]) / statistics.median(results["streamed"][0])
  print(f"streamed / on devices throughput: {ratio:.3f}")
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
