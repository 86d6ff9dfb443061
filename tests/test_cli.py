"""Every command's --help: its whole module docstring, as written, and main's overrides."""

import importlib

import pytest


def _help(module_name: str, capsys) -> str:
  module = importlib.import_module(f"lepton_jax.{module_name}")
  with pytest.raises(SystemExit) as e:
    module.main(["--help"])
  assert e.value.code == 0
  return capsys.readouterr().out


@pytest.mark.parametrize("module_name", ["main", "predict", "report", "export"])
def test_help_prints_the_whole_module_docstring_as_written(module_name, capsys):
  text = _help(module_name, capsys)
  doc = importlib.import_module(f"lepton_jax.{module_name}").__doc__
  lines = [line.rstrip() for line in doc.strip().splitlines() if line.strip()]
  assert len(lines) > 5
  for line in lines:
    assert line in text.splitlines(), f"--help of {module_name} lacks the line {line!r}"


def test_main_usage_shows_config_overrides(capsys):
  text = _help("main", capsys)
  usage = text.split("\n\n")[0]
  assert usage.startswith("usage: python -m lepton_jax.main --config FILE.py[:ARG] --workdir DIR")
  assert "[--config.KEY=VALUE ...]" in usage
  assert "--config.optimizer.learning_rate=0.01" in text


def test_predict_help_offers_strict(capsys):
  assert "--strict" in _help("predict", capsys)
