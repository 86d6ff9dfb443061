"""PyTorch peer of the seed MNIST CNN: training images/s, timed like lepton_jax.bench's loop.

    /work/peers-venv-torch/bin/python benchmarks/peers/bench_torch.py [--steps 100] [--repeats 5]
        [--threads N] [--compile] [--mnist-dir ../shared/data/mnist]

Model: Conv2d(1, 32, 3, padding=1) (= SAME) relu -> MaxPool2d(2) -> flatten -> Linear(6272, 64)
relu -> Linear(64, 10): 402,442 parameters, float32; cross-entropy, torch.optim.Adam(1e-3),
batch 128. Set up as its users run it: eager mode, NCHW tensors, the default intra-op threads
(torch.get_num_threads(), printed) unless --threads is given. Data: MNIST's training split from
its IDX files, held in memory as tensors, normalized like configs/mnist_cnn.py; each epoch
draws a torch.randperm and indexes batches out of it, the last partial batch included.

--compile wraps the model in torch.compile (default mode) and, as is usual with it, drops the
partial last batch, so that no new shape recompiles inside a timed interval.

Timing (benchmarks/peers/common.py StepClock): one continuous run of (repeats + 1) x steps
steps across epochs; the first interval is the warm-up (and with --compile holds the
compilation); images/s of each later interval, median reported. Eager CPU ops run synchronously,
so the clock, read before a step, counts every earlier step as done.
"""

import numpy as np
import torch
from torch import nn

import common


def seed_cnn() -> nn.Module:
  return nn.Sequential(
      nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
      nn.Linear(32 * 14 * 14, 64), nn.ReLU(), nn.Linear(64, 10))


def train(model, x_all, y_all, clock: common.StepClock, drop_last: bool) -> float:
  """Trains epoch after epoch until `clock` has timed its intervals; the last loss."""
  opt = torch.optim.Adam(model.parameters(), lr=1e-3)
  loss_fn = nn.CrossEntropyLoss()
  n, batch = len(x_all), clock.batch
  starts = range(0, n - n % batch if drop_last else n, batch)
  loss = None
  while not clock.done:
    perm = torch.randperm(n)
    for i, start in enumerate(starts):
      if not clock.before_step(i):
        break
      idx = perm[start:start + batch]
      opt.zero_grad(set_to_none=True)
      loss = loss_fn(model(x_all[idx]), y_all[idx])
      loss.backward()
      opt.step()
  return loss.item()


def main() -> int:
  p = common.parser(__doc__.split("\n\n")[0])
  p.add_argument("--threads", type=int, default=None,
                 help="torch.set_num_threads(N); default: torch's own default")
  p.add_argument("--compile", action="store_true", help="torch.compile the model")
  args = p.parse_args()
  common.check_args(args)
  if args.threads is not None:
    if args.threads < 1:
      raise common.PeerError(f"--threads must be at least 1, got {args.threads}")
    torch.set_num_threads(args.threads)
  torch.manual_seed(0)
  images, labels = common.load_mnist(args.mnist_dir)
  x_all = torch.from_numpy(np.ascontiguousarray(images[:, None]))  # NCHW, as torch users hold it
  y_all = torch.from_numpy(labels.astype(np.int64))
  model = seed_cnn()
  params = sum(p.numel() for p in model.parameters())
  setup = {"threads": torch.get_num_threads(), "interop_threads": torch.get_num_interop_threads(),
           "threads_from": "--threads" if args.threads is not None else "torch default",
           "mode": "torch.compile (default mode)" if args.compile else "eager",
           "partial_last_batch": not args.compile}
  print(f"torch {torch.__version__}: {params:,} parameters; {setup['mode']}; "
        f"{setup['threads']} intra-op threads ({setup['threads_from']}), "
        f"{setup['interop_threads']} inter-op; MNIST n={len(x_all)} batch={args.batch}", flush=True)
  if args.compile:
    model = torch.compile(model)
  clock = common.StepClock(args.steps, args.repeats, len(x_all), args.batch)
  loss = train(model, x_all, y_all, clock, drop_last=args.compile)
  print(f"last loss {loss:.4f}")
  name = "PyTorch (torch.compile)" if args.compile else "PyTorch (eager)"
  common.report(name, clock, params, {"torch": torch.__version__}, setup)
  return 0


if __name__ == "__main__":
  common.run(main)
