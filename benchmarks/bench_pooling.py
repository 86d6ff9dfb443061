"""Times the seed MNIST CNN's jitted train step per pooling / conv impl.

    PYTHONPATH=. python benchmarks/bench_pooling.py [--repeats 50] [--batch 128]
    PYTHONPATH=. python benchmarks/bench_pooling.py --epochs 3   # whole MNIST epochs

Model (the seeds' MNIST net, as lepton_jax.models.cnn.CNN with its defaults):
Conv(32, 3x3, SAME) relu -> max-pool 2x2/2 -> flatten -> Dense(64) relu -> Dense(10),
softmax cross-entropy, optax.adam(1e-3). The model is defined here rather than
imported so the timing covers exactly this architecture whatever the model zoo
does; --conv picks the first layer: 'flax' (nn.Conv) or a lepton_jax.kernels.conv impl.

Step mode: every (pool, conv) variant is compiled and warmed up first, then
the variants are timed round-robin, one step each per round, so that load from
other processes on a shared machine hits all of them alike. Prints the median
step in ms, img/s and the speed-up over reduce_window pooling with flax's conv,
in wall time and in CPU time (process time of all threads).

Epoch mode (--epochs N): the same loop as the peers in benchmarks/peers/ -- one
shuffle per epoch, batches gathered from host numpy arrays (MNIST from
../shared/data/mnist when present), last partial batch included -- and prints
`images/s: N`, the median over N epochs after a warm-up epoch, and images per
CPU-second (process time of all threads: less distorted by other load).
"""

import argparse
import gzip
import os
import statistics
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from lepton_jax.kernels import conv as conv_ops
from lepton_jax.kernels import pooling

MNIST = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data",
                     "mnist")


class SeedCNN(nn.Module):
  pool_impl: str = "auto"
  conv_impl: str = "flax"

  @nn.compact
  def __call__(self, x):
    if self.conv_impl == "flax":
      x = nn.Conv(32, (3, 3), padding="SAME")(x)
    else:
      x = conv_ops.Conv(32, (3, 3), padding="SAME", impl=self.conv_impl)(x)
    x = nn.relu(x)
    x = pooling.max_pool(x, (2, 2), strides=(2, 2), impl=self.pool_impl)
    x = x.reshape((x.shape[0], -1))
    x = nn.relu(nn.Dense(64)(x))
    return nn.Dense(10)(x)


def make_train_state(pool_impl, conv_impl, x):
  model = SeedCNN(pool_impl=pool_impl, conv_impl=conv_impl)
  params = model.init(jax.random.PRNGKey(0), x)["params"]
  tx = optax.adam(1e-3)

  def loss_fn(params, x, y):
    logits = model.apply({"params": params}, x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  @jax.jit
  def step(params, opt_state, x, y):
    loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  return step, params, tx.init(params)


def load_mnist(n=60000):
  img_path = os.path.join(MNIST, "train-images-idx3-ubyte.gz")
  lbl_path = os.path.join(MNIST, "train-labels-idx1-ubyte.gz")
  if os.path.exists(img_path) and os.path.exists(lbl_path):
    with gzip.open(img_path) as f:
      images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28, 1)
    with gzip.open(lbl_path) as f:
      labels = np.frombuffer(f.read(), np.uint8, offset=8)
    return images.astype(np.float32) / 255.0, labels.astype(np.int32), "MNIST"
  rng = np.random.default_rng(0)
  return (rng.random((n, 28, 28, 1), np.float32), rng.integers(0, 10, n).astype(np.int32),
          "random")


def bench_steps(variants, batch, repeats, warmup=5):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.random((batch, 28, 28, 1), np.float32))
  y = jnp.asarray(rng.integers(0, 10, batch).astype(np.int32))
  states = {}
  for v in variants:
    step, params, opt_state = make_train_state(*v, x)
    for _ in range(warmup):
      params, opt_state, loss = step(params, opt_state, x, y)
    jax.block_until_ready(loss)
    states[v] = [step, params, opt_state]
  times = {v: [] for v in variants}
  cpu = {v: [] for v in variants}
  for _ in range(repeats):
    for v, st in states.items():
      step, params, opt_state = st
      t0, c0 = time.perf_counter(), time.process_time()
      params, opt_state, loss = step(params, opt_state, x, y)
      jax.block_until_ready((params, loss))
      times[v].append(time.perf_counter() - t0)
      cpu[v].append(time.process_time() - c0)
      st[1:] = params, opt_state
  return {v: (statistics.median(times[v]) * 1e3, statistics.median(cpu[v]) * 1e3)
          for v in variants}


def bench_epochs(pool_impl, conv_impl, batch, epochs):
  images, labels, source = load_mnist()
  n = len(images)
  step, params, opt_state = make_train_state(pool_impl, conv_impl, jnp.asarray(images[:batch]))
  rng = np.random.default_rng(0)
  print(f"data={source} n={n} pool={pool_impl} conv={conv_impl}")
  rates, cpu_rates = [], []
  for epoch in range(epochs + 1):  # epoch 0 warms up (compiles the partial last batch too)
    t0, c0 = time.perf_counter(), time.process_time()
    perm = rng.permutation(n)
    for i in range(0, n, batch):
      idx = perm[i:i + batch]
      params, opt_state, loss = step(params, opt_state, images[idx], labels[idx])
    jax.block_until_ready((params, loss))
    dt, dc = time.perf_counter() - t0, time.process_time() - c0
    tag = "warm-up" if epoch == 0 else f"epoch {epoch - 1}"
    print(f"{tag}: {dt:.2f} s ({dc:.2f} CPU s), {n / dt:.0f} images/s, loss {float(loss):.4f}",
          flush=True)
    if epoch:
      rates.append(n / dt)
      cpu_rates.append(n / dc)
  print(f"images per CPU-second: {statistics.median(cpu_rates):.0f}")
  print(f"images/s: {statistics.median(rates):.0f}")


def main():
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--batch", type=int, default=128)
  ap.add_argument("--repeats", type=int, default=50)
  ap.add_argument("--pool", nargs="+", default=["reduce_window", "reshape", "mask_vjp"],
                  choices=pooling.IMPLS)
  ap.add_argument("--conv", nargs="+", default=["flax", "shifted"],
                  choices=("flax",) + conv_ops.IMPLS)
  ap.add_argument("--epochs", type=int, default=0,
                  help="time N whole MNIST epochs of the first --pool/--conv instead")
  args = ap.parse_args()
  print(f"jax {jax.__version__} backend={jax.default_backend()} batch={args.batch}; "
        f"auto: pool={pooling.auto_impl()} conv={conv_ops.auto_impl()}")
  if args.epochs:
    bench_epochs(args.pool[0], args.conv[0], args.batch, args.epochs)
    return
  variants = [(p, c) for c in args.conv for p in args.pool]
  medians = bench_steps(variants, args.batch, args.repeats)
  base = medians.get(("reduce_window", "flax"))
  print(f"repeats={args.repeats}, round-robin; CPU ms = process time of all threads")
  print(f"{'pool':>14} {'conv':>8} {'median ms':>10} {'img/s':>9} {'vs reduce_window':>17} "
        f"{'CPU ms':>8} {'vs (CPU)':>9}")
  for (p, c), (ms, cpu_ms) in medians.items():
    ratio = f"{base[0] / ms:.2f}x" if base else "-"
    cpu_ratio = f"{base[1] / cpu_ms:.2f}x" if base else "-"
    print(f"{p:>14} {c:>8} {ms:10.2f} {args.batch / ms * 1e3:9.0f} {ratio:>17} "
          f"{cpu_ms:8.2f} {cpu_ratio:>9}")


if __name__ == "__main__":
  main()
