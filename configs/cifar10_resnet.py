"""CIFAR-10 ResNet: `small` (3 stages of one block, width 16, 78k parameters) or `18` (ResNet-18, 11.2M).

    python -m lepton_jax.main --config configs/cifar10_resnet.py:small --workdir /tmp/lepton/cifar10_resnet_small

`:18` gives ResNet-18. Inputs are normalized with the training split's
per-channel statistics (computed once at load, written into the run's
config.json), augmented with random crops (4 px padding) and horizontal flips;
SGD with Nesterov momentum 0.9, warmup + cosine, weight decay 5e-4 on kernels.
Offline: `--config.data.manual_dir=DIR` holding cifar-10-python.tar.gz.

Expected accuracy on real CIFAR-10: unmeasured (no offline copy here). The
tests run it end to end on mock CIFAR-10 data (tests/data/test_cifar10.py).
"""

from lepton_jax.config_defaults import base_config

VARIANTS = {
    "small": dict(stage_sizes=(1, 1, 1), width=16, num_epochs=30.0),
    "18": dict(stage_sizes=(2, 2, 2, 2), width=64, num_epochs=100.0),
}


def get_config(arg=None):
  variant = (arg or "small").strip().lower().removeprefix("resnet")
  if variant not in VARIANTS:
    raise ValueError(f"config argument must be one of {', '.join(VARIANTS)}, not {arg!r}")
  v = VARIANTS[variant]
  config = base_config()
  config.data.name = "cifar10"
  config.data.verify_checksums = True  # offline: check the archive's MD5 and image counts
  config.data.preprocess = ("normalize(mean='dataset', std='dataset')",)
  config.data.augment = ("random_crop(padding=4)", "flip_lr")
  config.model.name = "resnet"
  config.model.stage_sizes = v["stage_sizes"]
  config.model.width = v["width"]
  config.batch_size = 128
  config.num_epochs = v["num_epochs"]
  config.optimizer.name = "nesterov"
  config.optimizer.learning_rate = 0.1
  config.optimizer.momentum = 0.9
  config.optimizer.schedule = "warmup_cosine"
  config.optimizer.warmup_steps = 390  # one epoch
  config.optimizer.weight_decay = 5e-4
  config.log_every_steps = 100
  config.eval_every_steps = -1
  config.checkpoint_every_steps = -1
  return config
