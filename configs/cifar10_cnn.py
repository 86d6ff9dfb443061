"""The seeds' CIFAR-10 CNN: Conv 32 -> pool -> Conv 64 -> pool -> Conv 64 -> Dense 64 -> Dense 10.

    python -m lepton_jax.main --config configs/cifar10_cnn.py --workdir /tmp/lepton/cifar10_cnn

VALID padding (Keras' Conv2D default): 122,570 parameters.
`configs/cifar10_cnn.py:sgd` trains with plain SGD at learning rate 0.01 instead
of the default Adam at 1e-3 (the two optimizers the seeds compared).
Offline: `--config.data.manual_dir=DIR`, DIR holding cifar-10-python.tar.gz
(or its extracted cifar-10-batches-py/), prepared once into ArrayRecord files.

Expected accuracy on real CIFAR-10: unmeasured (no offline copy here). The
tests run it end to end on mock CIFAR-10 data (tests/data/test_cifar10.py).
"""

from lepton_jax.config_defaults import base_config

OPTIMIZERS = {"adam": ("adam", 1e-3), "sgd": ("sgd", 1e-2)}


def get_config(arg=None):
  optimizer = (arg or "adam").strip().lower()
  if optimizer not in OPTIMIZERS:
    raise ValueError(f"config argument must be one of {', '.join(OPTIMIZERS)}, not {arg!r}")
  config = base_config()
  config.data.name = "cifar10"
  config.data.verify_checksums = True  # offline: check the archive's MD5 and image counts
  config.data.preprocess = ("to_float",)  # the seeds' x / 255
  config.model.name = "cnn"
  config.model.conv_features = (32, 64, 64)
  config.model.pool = (True, True, False)
  config.model.hidden_sizes = (64,)
  config.model.padding = "VALID"  # the seeds' Keras Conv2D default
  config.batch_size = 64
  config.num_epochs = 10.0
  config.optimizer.name, config.optimizer.learning_rate = OPTIMIZERS[optimizer]
  config.log_every_steps = 100
  config.eval_every_steps = -1
  config.checkpoint_every_steps = -1
  return config
