"""The seeds' breast-cancer MLP: 30 features -> Dense 5 relu -> Dense 1 sigmoid, binary cross-entropy, Adam.

    python -m lepton_jax.main --config configs/breast_cancer_mlp.py --workdir /tmp/lepton/breast_cancer

Features are standardized with the training split's statistics only.
"""

from lepton_jax.config_defaults import base_config


def get_config(arg=None):
  config = base_config()
  config.experiment = "binary_classification"
  config.data.name = "breast_cancer"
  config.data.preprocess = ()
  config.model.name = "mlp"
  config.model.hidden_sizes = (5,)
  config.model.activation = "relu"
  config.loss.name = "sigmoid_binary_cross_entropy"
  config.batch_size = 32
  config.num_epochs = 50.0
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 1e-2
  config.log_every_steps = 50
  config.eval_every_steps = 140
  config.checkpoint_every_steps = 140
  return config
