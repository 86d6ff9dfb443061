"""Keras 3 on TensorFlow peer of the seed MNIST CNN: `model.fit` images/s, timed like lepton_jax.bench.

    KERAS_BACKEND=tensorflow /work/main/.venv/bin/python benchmarks/peers/bench_keras_tf.py \
        [--steps 100] [--repeats 5] [--jit-compile auto|true|false] [--mnist-dir ../shared/data/mnist]

Model: Conv2D(32, 3, padding='same') relu -> MaxPooling2D(2) -> Flatten -> Dense(64) relu ->
Dense(10): 402,442 parameters, float32; sparse categorical cross-entropy from logits,
Adam(1e-3), batch 128. Set up as its users run it: one `model.fit(x, y, batch_size=128,
epochs=E, shuffle=True, verbose=0)` on the training split held in memory as numpy arrays
(normalized like configs/mnist_cnn.py), the last partial batch of each epoch included,
TensorFlow's default threads, and Keras' default `jit_compile='auto'` (which Keras resolves to
no XLA on a machine with only CPUs; the resolved value is printed) unless --jit-compile is given.

Timing (benchmarks/peers/common.py StepClock): one fit of (repeats + 1) x steps steps across
epochs, read by a callback's on_train_batch_begin every `steps` steps. That hook leaves fit's
path as it is (Keras dispatches batch-end callbacks to a thread only when no callback overrides
a batch-end hook), and TensorFlow runs the train function synchronously on CPU, so the previous
step is done when it is read. The first interval (with the tracing) is dropped; images/s of each
later interval, median reported.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

import common  # noqa: E402


def seed_cnn():
  return keras.Sequential([
      keras.Input((28, 28, 1)),
      keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
      keras.layers.MaxPooling2D(2),
      keras.layers.Flatten(),
      keras.layers.Dense(64, activation="relu"),
      keras.layers.Dense(10),
  ])


class ClockCallback(keras.callbacks.Callback):
  """Feeds fit's batches to a StepClock and stops fit once the clock has its intervals."""

  def __init__(self, clock: common.StepClock):
    super().__init__()
    self.clock = clock

  def on_train_batch_begin(self, batch, logs=None):
    if not self.clock.before_step(batch):
      self.model.stop_training = True  # fit still finishes this (untimed) step


def main() -> int:
  p = common.parser(__doc__.split("\n\n")[0])
  p.add_argument("--jit-compile", choices=["auto", "true", "false"], default="auto",
                 help="model.compile(jit_compile=...); Keras' default is auto")
  args = p.parse_args()
  common.check_args(args)
  keras.utils.set_random_seed(0)
  images, labels = common.load_mnist(args.mnist_dir)
  x, y = images[..., None], labels.astype("int32")
  model = seed_cnn()
  model.compile(optimizer=keras.optimizers.Adam(1e-3),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                jit_compile={"auto": "auto", "true": True, "false": False}[args.jit_compile])
  setup = {"jit_compile": args.jit_compile, "jit_compile_resolved": bool(model.jit_compile),
           "backend": keras.backend.backend(), "steps_per_execution": 1,
           "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
           "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
           "threads_note": "0 = TensorFlow's default (it picks)", "partial_last_batch": True}
  print(f"keras {keras.__version__} tensorflow {tf.__version__} backend={setup['backend']}: "
        f"{model.count_params():,} parameters; jit_compile={args.jit_compile} (resolved: "
        f"{setup['jit_compile_resolved']}); TF threads intra/inter {setup['intra_op_threads']}/"
        f"{setup['inter_op_threads']} (0 = default); MNIST n={len(x)} batch={args.batch}",
        flush=True)
  clock = common.StepClock(args.steps, args.repeats, len(x), args.batch)
  steps_per_epoch = -(-len(x) // args.batch)
  epochs = -(-(args.repeats + 1) * args.steps // steps_per_epoch) + 1  # the clock stops fit
  hist = model.fit(x, y, batch_size=args.batch, epochs=epochs, shuffle=True, verbose=0,
                   callbacks=[ClockCallback(clock)])
  if not clock.done:
    raise common.PeerError(f"fit ended after {clock.started} steps, before the clock's last interval")
  print(f"last epoch loss {hist.history['loss'][-1]:.4f}")
  name = f"Keras 3 / TF model.fit (jit_compile={args.jit_compile})"
  common.report(name, clock, model.count_params(),
                {"keras": keras.__version__, "tensorflow": tf.__version__}, setup)
  return 0


if __name__ == "__main__":
  common.run(main)
