"""Quickstart: a small CNN on scikit-learn's digits (real data, no download).

    python -m lepton_jax.main --config configs/quickstart.py --workdir /tmp/lepton/quickstart

Trains on the 1,150 `train` digits and evaluates on the 287 `validation` ones, which pick the best
checkpoint; the 360 `test` digits stay untouched until the end, one command away:

    python -m lepton_jax.main --config configs/quickstart.py --workdir /tmp/lepton/quickstart \
        --mode=eval --checkpoint=best --config.eval.split=test

(see README for the measured figures and time).
"""

from lepton_jax.config_defaults import base_config


def get_config(arg=None):
  config = base_config()
  config.data.name = "digits"
  config.data.preprocess = ("normalize(mean=0.5, std=0.5)",)
  config.eval.split = "validation"  # model selection; the test split is for the final word
  config.model.name = "cnn"
  config.model.conv_features = (32, 32)
  config.model.pool = (False, True)
  config.model.hidden_sizes = (64,)
  config.batch_size = 64
  config.num_epochs = 20.0
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 2e-3
  config.optimizer.schedule = "warmup_cosine"
  config.optimizer.warmup_steps = 20
  config.log_every_steps = 20
  config.eval_every_steps = 100
  config.checkpoint_every_steps = 200
  return config


def get_sweep(arg=None):
  """`--sweep`: the quickstart at three peak learning rates, each in WORKDIR/<i>_learning_rate=<lr>."""
  return [{"optimizer.learning_rate": lr} for lr in (1e-3, 2e-3, 5e-3)]
