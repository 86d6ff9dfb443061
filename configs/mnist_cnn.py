"""The seeds' MNIST CNN: Conv 32 3x3 relu -> max-pool 2 -> flatten -> Dense 64 relu -> Dense 10, Adam.

    python -m lepton_jax.main --config configs/mnist_cnn.py --workdir /tmp/lepton/mnist_cnn \
        --config.data.manual_dir=../shared/data/mnist

Offline, data.manual_dir holds the original MNIST IDX files (gzipped or not);
they are prepared once into tfds format under data.data_dir. Online, leave it
empty and tfds downloads MNIST.
"""

from lepton_jax.config_defaults import base_config


def get_config(arg=None):
  config = base_config()
  config.data.name = "mnist"
  config.data.preprocess = ("normalize(mean=0.1307, std=0.3081)",)
  config.model.name = "cnn"
  config.model.conv_features = (32,)
  config.model.pool = (True,)
  config.model.hidden_sizes = (64,)
  config.batch_size = 128
  config.num_epochs = 5.0
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 1e-3
  config.log_every_steps = 100
  config.eval_every_steps = -1
  config.checkpoint_every_steps = -1
  return config
