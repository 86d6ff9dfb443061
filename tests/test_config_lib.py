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


@pytest.mark.parametrize("overrides,message", [
    ([("batch_size", "0")], "batch_size=0 must be a positive integer"),
    ([("batch_size", "-1")], "batch_size=-1 must be a positive integer"),
    ([("eval.batch_size", "-8")], "eval.batch_size=-8 must be a positive integer, or 0 for batch_size"),
    ([("log_every_steps", "0")], "log_every_steps=0 must be a positive integer"),
    ([("seed", "-1")], "seed=-1 must be an integer from 0 to 2**63 - 1"),
    ([("seed", str(2**64))], f"seed={2**64} must be an integer from 0 to 2**63 - 1"),
    ([("num_train_steps", "0")], "num_train_steps=0 is not a step count; use N > 0, or -1"),
    ([("num_train_steps", "-1"), ("num_epochs", "0")],
     "num_epochs=0.0 must be a positive number when num_train_steps is -1"),
    ([("num_epochs", "float('nan')")], "num_epochs=nan must be a positive number"),
    ([("eval_every_steps", "-5")], "eval_every_steps=-5 is not a step count"),
    ([("checkpoint_every_steps", "-2")], "checkpoint_every_steps=-2 is not a step count"),
    ([("optimizer.warmup_steps", "-3")], "optimizer.warmup_steps=-3 must be an integer >= 0"),
])
def test_validate_names_the_key_of_an_unusable_value(overrides, message):
  config = config_lib.load(QUICKSTART)
  for key, value in overrides:
    if value.startswith("float("):  # what a config file can write, but no command line
      config.num_epochs = float(value[7:-2])
    else:
      config_lib.apply_overrides(config, [(key, value)])
  with pytest.raises(UserError) as e:
    config_lib.validate(config)
  assert str(e.value).startswith(message) and "\n" not in str(e.value)


def test_validate_accepts_every_shipped_config_and_the_edge_values():
  for name in sorted(os.listdir(os.path.join(REPO, "configs"))):
    if name.endswith(".py"):
      config_lib.validate(config_lib.load(os.path.join(REPO, "configs", name)))
  config = config_lib.load(QUICKSTART)
  config_lib.apply_overrides(config, [("seed", str(2**63 - 1)), ("num_train_steps", "1"),
                                      ("num_epochs", "0"), ("eval_every_steps", "0"),
                                      ("checkpoint_every_steps", "-1"), ("eval.batch_size", "0")])
  config_lib.validate(config)


def test_a_config_file_that_exits_is_an_error_not_a_silent_success(tmp_path, capsys):
  from lepton_jax import main
  at_import = tmp_path / "exits.py"
  at_import.write_text("import sys\nsys.exit(0)\n")
  in_get_config = tmp_path / "exits_later.py"
  in_get_config.write_text("def get_config(arg=None):\n  raise SystemExit(3)\n")
  with pytest.raises(UserError, match=r"config file '.*exits\.py' called sys.exit\(0\) while loading"):
    config_lib.load(str(at_import))
  with pytest.raises(UserError, match=r"exits_later\.py' called sys.exit\(3\) while loading"):
    config_lib.load(str(in_get_config))
  with pytest.raises(SystemExit) as e:
    main.run(["--config", str(at_import), "--workdir", str(tmp_path / "w")])
  assert e.value.code == 2
  assert capsys.readouterr().err.startswith("error: config file")
