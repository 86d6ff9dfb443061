"""The model-zoo configs load, name registered things, and start with their command."""

import os

import pytest

from lepton_jax import config_lib, registry
from lepton_jax.data import base

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SPECS = ("cifar10_cnn.py", "cifar10_cnn.py:sgd", "cifar10_resnet.py", "cifar10_resnet.py:18",
         "imagefolder_cnn.py", "vit_cifar10.py", "vit_cifar10.py:S", "lm_transformer.py",
         "lm_lstm.py", "lm_lstm.py:gru")


@pytest.mark.parametrize("spec", SPECS)
def test_config_loads_and_names_registered_things(spec):
  config = config_lib.load(os.path.join(REPO, "configs", spec))
  for kind, name in (("model", config.model.name), ("dataset", config.data.name),
                     ("experiment", config.experiment), ("optimizer", config.optimizer.name),
                     ("schedule", config.optimizer.schedule), ("loss", config.loss.name)):
    registry.get(kind, name)
  for metric in config.metrics:
    registry.get("metric", metric)
  base.build(config.data)  # its data keys are the dataset's (building reads no data)
  path = os.path.join(REPO, "configs", spec.partition(":")[0])
  with open(path, encoding="utf-8") as f:
    source = f.read()
  command = f"python -m lepton_jax.main --config configs/{os.path.basename(path)}"
  doc = source.split('"""')[1]
  first_command = next(line.strip() for line in doc.splitlines() if line.strip().startswith("python "))
  assert first_command.startswith(command), f"{path}: the docstring's first command must run it"


def test_bad_config_arguments_fail_with_the_choices():
  from lepton_jax.errors import UserError
  for spec in ("cifar10_cnn.py:rmsprop", "cifar10_resnet.py:50", "vit_cifar10.py:B", "lm_lstm.py:rnn"):
    with pytest.raises(UserError, match="must be"):
      config_lib.load(os.path.join(REPO, "configs", spec))
