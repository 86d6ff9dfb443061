"""Sweeps: get_sweep()/product() points, one sub-workdir each, printed commands, results tables."""

import csv
import json
import os

import pytest

from lepton_jax import main, sweep
from lepton_jax.errors import UserError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICKSTART = os.path.join(REPO, "configs", "quickstart.py")
SHORT = ["--config.num_train_steps=10", "--config.log_every_steps=5", "--config.eval_every_steps=5",
         "--config.checkpoint_every_steps=10", "--config.optimizer.warmup_steps=2",
         "--config.model.conv_features=(8,)", "--config.model.pool=(True,)",
         "--config.model.hidden_sizes=(16,)"]


def test_product_and_point_names():
  grid = sweep.product({"optimizer.learning_rate": (1e-3, 1e-2), "batch_size": [32, 64]})
  assert grid == [{"optimizer.learning_rate": 1e-3, "batch_size": 32},
                  {"optimizer.learning_rate": 1e-3, "batch_size": 64},
                  {"optimizer.learning_rate": 1e-2, "batch_size": 32},
                  {"optimizer.learning_rate": 1e-2, "batch_size": 64}]
  assert sweep.point_name(3, grid[3]) == "3_learning_rate=0.01,batch_size=64"
  assert sweep.point_name(0, {"model.conv_features": (8, 16)}) == "0_conv_features=8-16"
  assert sweep.point_name(1, {"a.rate": 1, "b.rate": 2}) == "1_a.rate=1,b.rate=2"
  with pytest.raises(UserError, match="must be a list or tuple"):
    sweep.product({"optimizer.learning_rate": 0.1})


def test_quickstart_defines_three_learning_rates():
  points = sweep.load_sweep(QUICKSTART)
  assert len(points) == 3 and all(list(p) == ["optimizer.learning_rate"] for p in points)


def test_bad_sweeps_are_one_line_errors(tmp_path):
  path = tmp_path / "nosweep.py"
  path.write_text("from lepton_jax.config_defaults import base_config\n"
                  "def get_config(arg=None):\n  return base_config()\n")
  with pytest.raises(UserError, match="defines no get_sweep"):
    sweep.load_sweep(str(path))
  path.write_text(path.read_text() + "def get_sweep(arg=None):\n  return [{'optimizer.learnin_rate': 1.0}]\n")
  with pytest.raises(UserError, match="sweep point 1/1 .*unknown config key 'optimizer.learnin_rate'"):
    sweep.plan(str(path), str(tmp_path / "w"))
  path.write_text(path.read_text().replace("'optimizer.learnin_rate': 1.0}]",
                                           "'batch_size': 64}, {'batch_size': 0}]"))
  with pytest.raises(UserError, match=r"sweep point 2/2 \{'batch_size': 0\}: batch_size=0 must be a "
                                      "positive integer"):
    sweep.plan(str(path), str(tmp_path / "w"))
  exits = tmp_path / "exits.py"
  exits.write_text("raise SystemExit(0)\n")
  with pytest.raises(UserError, match=r"exits\.py' called sys.exit\(0\) while loading"):
    sweep.load_sweep(str(exits))


def test_points_are_counted_from_one(tmp_path, capsys, monkeypatch):
  from lepton_jax import train
  trained = []

  def fake_training(config, workdir, **kwargs):
    os.makedirs(workdir)
    trained.append(os.path.basename(workdir))

  monkeypatch.setattr(train, "train_and_evaluate", fake_training)
  assert sweep.run_sweep(QUICKSTART, str(tmp_path / "w")) == 0
  out = capsys.readouterr().out
  names = ["0_learning_rate=0.001", "1_learning_rate=0.002", "2_learning_rate=0.005"]
  assert trained == names
  for i, name in enumerate(names):
    assert f"\n=== point {i + 1}/3: {name}\n" in out
    assert f"  {i + 1}/3: " in out
  assert "0/2" not in out and "2/2" not in out
  assert "# point 3/3: " in (tmp_path / "w" / sweep.COMMANDS_FILE).read_text()


def test_sweep_of_three_learning_rates(data_dir, tmp_path, capsys):
  workdir = tmp_path / "sweep"
  argv = ["--config", QUICKSTART, "--workdir", str(workdir), "--sweep",
          f"--config.data.data_dir={data_dir}"] + SHORT
  assert main.main(argv) == 0
  out = capsys.readouterr().out
  names = ["0_learning_rate=0.001", "1_learning_rate=0.002", "2_learning_rate=0.005"]
  assert sorted(os.listdir(workdir)) == sorted(names + [sweep.COMMANDS_FILE, sweep.RESULTS_CSV,
                                                        sweep.RESULTS_MD])
  for name, lr in zip(names, (0.001, 0.002, 0.005)):
    sub = workdir / name
    config = json.load(open(sub / "config.json"))
    assert config["optimizer"]["learning_rate"] == lr and config["num_train_steps"] == 10
    assert (sub / "checkpoints" / "10").is_dir()
    # The printed command runs this point alone.
    command = next(line for line in out.splitlines() if f"--workdir {sub}" in line)
    assert f"--config.optimizer.learning_rate={lr!r}" in command
    assert "--config.num_train_steps=10" in command and "--sweep" not in command

  rows = list(csv.DictReader(open(workdir / sweep.RESULTS_CSV)))
  assert len(rows) == 3 and {r["name"] for r in rows} == set(names)
  accuracies = [float(r["accuracy"]) for r in rows]
  assert accuracies == sorted(accuracies, reverse=True)  # eval.best_metric=accuracy, max
  for r in rows:
    final = [m for m in map(json.loads, open(workdir / r["name"] / "metrics.jsonl"))
             if m["split"] == "validation"][-1]
    assert float(r["accuracy"]) == pytest.approx(final["accuracy"]) and int(r["step"]) == 10
  table = open(workdir / sweep.RESULTS_MD).read()
  assert "sorted by accuracy" in table and table.count("| done |") == 3
  assert table in out

  # Run again: finished points are skipped, the table is rebuilt.
  assert main.main(argv) == 0
  assert capsys.readouterr().out.count("done before; skipped") == 3
  assert len(list(csv.DictReader(open(workdir / sweep.RESULTS_CSV)))) == 3
