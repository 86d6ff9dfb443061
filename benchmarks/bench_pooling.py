"""Times one jitted train step of the seed MNIST CNN per pooling impl.

    PYTHONPATH=. python benchmarks/bench_pooling.py [--repeats 50] [--batch 128]

Model (the seeds' MNIST net, as lepton_jax.models.cnn.CNN with its defaults):
Conv(32, 3x3, SAME) relu -> max-pool 2x2/2 -> flatten -> Dense(64) relu -> Dense(10),
softmax cross-entropy, optax.adam(1e-3). The model is defined here rather than
imported so the timing covers exactly this architecture whatever the model zoo
does; `--conv` switches the first layer between flax's nn.Conv and
lepton_jax.ops.conv.conv2d.
"""

import argparse
import statistics
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from lepton_jax.ops import conv as conv_ops
from lepton_jax.ops import pooling


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


def make_step(model, tx):
  def loss_fn(params, x, y):
    logits = model.apply({"params": params}, x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  @jax.jit
  def step(params, opt_state, x, y):
    loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  return step


def time_step(pool_impl, conv_impl, batch, repeats, warmup=5):
  model = SeedCNN(pool_impl=pool_impl, conv_impl=conv_impl)
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.random((batch, 28, 28, 1), np.float32))
  y = jnp.asarray(rng.integers(0, 10, batch))
  params = model.init(jax.random.PRNGKey(0), x)["params"]
  tx = optax.adam(1e-3)
  opt_state = tx.init(params)
  step = make_step(model, tx)
  for _ in range(warmup):
    params, opt_state, loss = step(params, opt_state, x, y)
  jax.block_until_ready(loss)
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    params, opt_state, loss = step(params, opt_state, x, y)
    jax.block_until_ready((params, loss))
    times.append(time.perf_counter() - t0)
  return statistics.median(times) * 1e3


def main():
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--batch", type=int, default=128)
  ap.add_argument("--repeats", type=int, default=50)
  ap.add_argument("--pool", nargs="+", default=["reduce_window", "reshape", "mask_vjp", "auto"],
                  choices=pooling.IMPLS)
  ap.add_argument("--conv", nargs="+", default=["flax", "auto"],
                  help="first-layer conv: 'flax' (nn.Conv) or a lepton_jax.ops.conv impl")
  args = ap.parse_args()
  print(f"jax {jax.__version__} backend={jax.default_backend()} batch={args.batch} "
        f"repeats={args.repeats}; auto pool={pooling.auto_impl()} conv={conv_ops.auto_impl()}")
  base = None
  print(f"{'pool':>14} {'conv':>8} {'median ms':>10} {'img/s':>9} {'vs reduce_window':>17}")
  for conv_impl in args.conv:
    for pool_impl in args.pool:
      ms = time_step(pool_impl, conv_impl, args.batch, args.repeats)
      if base is None and pool_impl == "reduce_window" and conv_impl == "flax":
        base = ms
      ratio = f"{base / ms:.2f}x" if base else "-"
      print(f"{pool_impl:>14} {conv_impl:>8} {ms:10.2f} {args.batch / ms * 1e3:9.0f} {ratio:>17}",
            flush=True)


if __name__ == "__main__":
  main()
