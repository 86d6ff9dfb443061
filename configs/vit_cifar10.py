"""ViT on CIFAR-10: patch 4 (8x8 = 64 patches), `Ti` (5.4M parameters, default) or `S` (21.3M).

    python -m lepton_jax.main --config configs/vit_cifar10.py --workdir /tmp/lepton/vit_cifar10

`configs/vit_cifar10.py:S` gives ViT-S. Vision transformers need strong
regularization on small datasets: random resized crops and flips, label
smoothing 0.1, AdamW with weight decay 0.05, gradient clipping at 1.0, and an
EMA of the parameters (decay 0.999) for evaluation.
Offline: `--config.data.manual_dir=DIR` holding cifar-10-python.tar.gz.

Expected accuracy on real CIFAR-10: unmeasured (no offline copy here).
"""

from lepton_jax.config_defaults import base_config


def get_config(arg=None):
  variant = (arg or "Ti").strip()
  if variant not in ("Ti", "S"):
    raise ValueError(f"config argument must be Ti or S, not {arg!r}")
  config = base_config()
  config.data.name = "cifar10"
  config.data.verify_checksums = True  # offline: check the archive's MD5 and image counts
  config.data.preprocess = ("normalize(mean='dataset', std='dataset')",)
  config.data.augment = ("random_resized_crop(scale=(0.35, 1.0))", "flip_lr")
  config.model.name = "vit"
  config.model.variant = variant
  config.model.patch_size = 4
  config.model.pooling = "cls"
  config.model.dropout_rate = 0.0
  config.loss.label_smoothing = 0.1
  config.ema_decay = 0.999
  config.batch_size = 256
  config.num_epochs = 100.0
  config.optimizer.name = "adamw"
  config.optimizer.learning_rate = 1e-3
  config.optimizer.weight_decay = 0.05
  config.optimizer.grad_clip_norm = 1.0
  config.optimizer.schedule = "warmup_cosine"
  config.optimizer.warmup_steps = 1000
  config.log_every_steps = 100
  config.eval_every_steps = -1
  config.checkpoint_every_steps = -1
  return config
