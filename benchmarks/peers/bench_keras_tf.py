"""Keras 3 on TensorFlow peer of the seed MNIST CNN: images/s of `model.fit`.

    KERAS_BACKEND=tensorflow python benchmarks/peers/bench_keras_tf.py [--epochs 3]

Same model and optimizer as benchmarks/bench_pooling.py: Conv2D(32, 3x3,
padding='same') relu -> MaxPooling2D(2) -> Dense(64) relu -> Dense(10),
sparse categorical cross-entropy from logits, Adam(1e-3), batch 128, shuffled.
Each timed epoch is one `model.fit(..., epochs=1)` call on the full training
set, as a user would run it (jit_compile is Keras' default, 'auto', unless
--jit-compile is given). Data: MNIST from ../shared/data/mnist/*.gz when
present, else random images of the same shape. Prints per-epoch times and
`images/s: N`, the median over --epochs epochs after a warm-up epoch; also
images per CPU-second (process time of all threads), which a shared, loaded
machine distorts less than wall time.
"""

import argparse
import gzip
import os
import statistics
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

MNIST = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared",
                     "data", "mnist")


def load_mnist(n=60000):
  """(images float32 [n, 28, 28, 1] in [0, 1], labels int32 [n], source)."""
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


def seed_cnn():
  return keras.Sequential([
      keras.Input((28, 28, 1)),
      keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
      keras.layers.MaxPooling2D(2),
      keras.layers.Flatten(),
      keras.layers.Dense(64, activation="relu"),
      keras.layers.Dense(10),
  ])


def main():
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--epochs", type=int, default=3)
  ap.add_argument("--batch", type=int, default=128)
  ap.add_argument("--jit-compile", choices=["auto", "true", "false"], default="auto")
  args = ap.parse_args()
  keras.utils.set_random_seed(0)
  x, y, source = load_mnist()
  model = seed_cnn()
  jit = {"auto": "auto", "true": True, "false": False}[args.jit_compile]
  model.compile(optimizer=keras.optimizers.Adam(1e-3),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                jit_compile=jit)
  print(f"keras {keras.__version__} tensorflow {tf.__version__} backend={keras.backend.backend()} "
        f"jit_compile={args.jit_compile} data={source} n={len(x)} batch={args.batch}")
  model.fit(x, y, batch_size=args.batch, epochs=1, shuffle=True, verbose=0)  # warm-up epoch
  rates, cpu_rates = [], []
  for epoch in range(args.epochs):
    t0, c0 = time.perf_counter(), time.process_time()
    hist = model.fit(x, y, batch_size=args.batch, epochs=1, shuffle=True, verbose=0)
    dt, dc = time.perf_counter() - t0, time.process_time() - c0
    rates.append(len(x) / dt)
    cpu_rates.append(len(x) / dc)
    print(f"epoch {epoch}: {dt:.2f} s ({dc:.2f} CPU s), {len(x) / dt:.0f} images/s, "
          f"loss {hist.history['loss'][-1]:.4f}", flush=True)
  print(f"images per CPU-second: {statistics.median(cpu_rates):.0f}")
  print(f"images/s: {statistics.median(rates):.0f}")


if __name__ == "__main__":
  main()
