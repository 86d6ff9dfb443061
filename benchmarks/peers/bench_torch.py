"""PyTorch eager peer of the seed MNIST CNN: images/s over whole training epochs.

    python benchmarks/peers/bench_torch.py [--epochs 3] [--threads N]

Same model and optimizer as benchmarks/bench_pooling.py: Conv(32, 3x3, SAME)
relu -> max-pool 2x2 -> Dense(64) relu -> Dense(10), cross-entropy, Adam(1e-3),
batch 128 (the last batch of an epoch is partial, as in a real epoch), one
shuffle per epoch. Data: MNIST from ../shared/data/mnist/*.gz when present,
else uniform random images of the same shape (the speed does not depend on the
values). torch uses its default intra-op threads unless --threads is given.
Prints per-epoch times and `images/s: N`, the median over --epochs epochs after
a warm-up of --warmup-steps steps; also images per CPU-second (process time of
all threads), which a shared, loaded machine distorts less than wall time.
"""

import argparse
import gzip
import os
import statistics
import time

import numpy as np
import torch
from torch import nn

MNIST = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared",
                     "data", "mnist")


def load_mnist(n=60000):
  """(images float32 [n, 28, 28] in [0, 1], labels int64 [n], source)."""
  img_path = os.path.join(MNIST, "train-images-idx3-ubyte.gz")
  lbl_path = os.path.join(MNIST, "train-labels-idx1-ubyte.gz")
  if os.path.exists(img_path) and os.path.exists(lbl_path):
    with gzip.open(img_path) as f:
      images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(lbl_path) as f:
      labels = np.frombuffer(f.read(), np.uint8, offset=8)
    return images.astype(np.float32) / 255.0, labels.astype(np.int64), "MNIST"
  rng = np.random.default_rng(0)
  return (rng.random((n, 28, 28), np.float32), rng.integers(0, 10, n).astype(np.int64),
          "random")


def seed_cnn():
  return nn.Sequential(
      nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
      nn.Linear(32 * 14 * 14, 64), nn.ReLU(), nn.Linear(64, 10))


def main():
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--epochs", type=int, default=3)
  ap.add_argument("--batch", type=int, default=128)
  ap.add_argument("--warmup-steps", type=int, default=30)
  ap.add_argument("--threads", type=int, default=None)
  args = ap.parse_args()
  if args.threads:
    torch.set_num_threads(args.threads)
  torch.manual_seed(0)
  images, labels, source = load_mnist()
  x_all = torch.from_numpy(images).unsqueeze(1)  # NCHW
  y_all = torch.from_numpy(labels)
  n = len(x_all)
  model = seed_cnn()
  opt = torch.optim.Adam(model.parameters(), lr=1e-3)
  loss_fn = nn.CrossEntropyLoss()

  def step(xb, yb):
    opt.zero_grad(set_to_none=True)
    loss = loss_fn(model(xb), yb)
    loss.backward()
    opt.step()
    return loss

  print(f"torch {torch.__version__} threads={torch.get_num_threads()} data={source} n={n} "
        f"batch={args.batch}")
  for i in range(args.warmup_steps):
    step(x_all[i * args.batch:(i + 1) * args.batch], y_all[i * args.batch:(i + 1) * args.batch])
  rates, cpu_rates = [], []
  for epoch in range(args.epochs):
    t0, c0 = time.perf_counter(), time.process_time()
    perm = torch.randperm(n)
    for i in range(0, n, args.batch):
      idx = perm[i:i + args.batch]
      loss = step(x_all[idx], y_all[idx])
    loss.item()  # eager ops are synchronous on CPU; this just reads the result
    dt, dc = time.perf_counter() - t0, time.process_time() - c0
    rates.append(n / dt)
    cpu_rates.append(n / dc)
    print(f"epoch {epoch}: {dt:.2f} s ({dc:.2f} CPU s), {n / dt:.0f} images/s, "
          f"loss {loss.item():.4f}", flush=True)
  print(f"images per CPU-second: {statistics.median(cpu_rates):.0f}")
  print(f"images/s: {statistics.median(rates):.0f}")


if __name__ == "__main__":
  main()
