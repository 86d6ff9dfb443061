import os

import pytest

from lepton_jax import config_lib
from lepton_jax.errors import UserError
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

QUICKSTART = os.path.join(REPO, "configs", "quickstart.py")


def test_every_config_loads_and_documents_its_command():
  for name in sorted(os.listdir(os.path.join(REPO, "configs"))):
    if not name.endswith(".py"):
      continue
    path = os.path.join(REPO, "configs", name)
    config = config_lib.load(path)
    assert config.is_locked
    with open(path) as f:
      source = f.read()
    assert f"--config configs/{name}" in source.split('"""')[1], f"{name}: docstring lacks its command"


def test_override_types_are_checked_and_converted():
  config = config_lib.load(QUICKSTART)
  config_lib.apply_overrides(config, [("batch_size", "32"), ("optimizer.learning_rate", "1"),
                                      ("model.conv_features", "(4, 8)"), ("data.augment", "flip_lr"),
                                      ("seed", "7.0")])
  assert config.batch_size == 32 and config.seed == 7
  assert config.optimizer.learning_rate == 1.0 and isinstance(config.optimizer.learning_rate, float)
  assert config.model.conv_features == (4, 8)
  assert config.data.augment == ("flip_lr",)


def test_wrong_type_is_a_user_error():
  config = config_lib.load(QUICKSTART)
  with pytest.raises(UserError, match=r"--config.batch_size='lots': expected an integer"):
    config_lib.apply_overrides(config, [("batch_size", "lots")])


def test_unknown_key_names_the_closest_valid_keys():
  config = config_lib.load(QUICKSTART)
  with pytest.raises(UserError) as e:
    config_lib.apply_overrides(config, [("optimizer.learning_rat", "0.1")])
  assert "unknown config key 'optimizer.learning_rat'; did you mean optimizer.learning_rate" in str(e.value)


def test_config_arg_and_missing_file(tmp_path):
  path = tmp_path / "c.py"
  path.write_text("from lepton_jax.config_defaults import base_config\n"
                  "def get_config(arg=None):\n  c = base_config()\n  c.seed = int(arg or 0)\n  return c\n")
  assert config_lib.load(f"{path}:5").seed == 5
  with pytest.raises(UserError, match="does not exist"):
    config_lib.load(str(tmp_path / "nope.py"))


def test_config_without_required_keys(tmp_path):
  path = tmp_path / "bare.py"
  path.write_text("import ml_collections\ndef get_config():\n  return ml_collections.ConfigDict({'seed': 0})\n")
  with pytest.raises(UserError, match="lacks required keys experiment, batch_size"):
    config_lib.load(str(path))
