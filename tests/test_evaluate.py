"""--mode=eval: checkpoint selection (latest, best, STEP), split slices, the files it writes,
and one-line errors."""

import json
import os

import numpy as np
import pytest

from lepton_jax import config_lib, evaluate, main, train
from lepton_jax.checkpoint import select
from lepton_jax.errors import UserError
from lepton_jax.metric_writers import read_metrics
from lepton_jax.data.info import DatasetInfo

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICKSTART = os.path.join(REPO, "configs", "quickstart.py")
OVERRIDES = [
    ("num_train_steps", "30"), ("log_every_steps", "10"), ("eval_every_steps", "10"),
    ("checkpoint_every_steps", "10"), ("optimizer.warmup_steps", "5"),
    ("model.conv_features", "(8,)"), ("model.pool", "(True,)"), ("model.hidden_sizes", "(32,)")]


def _config(data_dir, extra=()):
  config = config_lib.load(QUICKSTART)
  config_lib.apply_overrides(config, [("data.data_dir", data_dir)] + OVERRIDES + list(extra))
  return config


@pytest.fixture(scope="module")
def run(data_dir, tmp_path_factory):
  """A workdir with checkpoints and evals at steps 10, 20, 30."""
  config = _config(data_dir)
  workdir = str(tmp_path_factory.mktemp("eval_run"))
  train.train_and_evaluate(config, workdir)
  return config, workdir


def _eval_rows(workdir, split="validation"):
  return {r["step"]: r for r in read_metrics(workdir) if r["split"] == split}


def test_latest_writes_json_and_confusion_equal_to_training_eval(run, capsys):
  config, workdir = run
  metrics = evaluate.evaluate_workdir(config, workdir)
  assert metrics["step"] == 30
  row = _eval_rows(workdir)[30]
  for k in ("loss", "accuracy", "f1"):
    assert metrics[k] == pytest.approx(row[k], abs=1e-6)
  out = capsys.readouterr().out
  assert "checkpoint 30 on 'validation' (287 examples)" in out and "accuracy" in out
  record = json.load(open(os.path.join(workdir, "eval_validation_step30.json")))
  assert record["num_examples"] == 287 and record["step"] == 30
  names, counts = evaluate.read_confusion_csv(os.path.join(workdir, "confusion_validation.csv"))
  assert names == [str(i) for i in range(10)]
  assert counts.sum() == 287 and np.trace(counts) / 287 == pytest.approx(row["accuracy"])
  np.testing.assert_array_equal(counts, np.asarray(record["confusion"]))


def test_best_and_step_choose_the_right_checkpoint(run):
  config, workdir = run
  rows = _eval_rows(workdir)
  checkpointer_steps = [10, 20, 30]
  best = max(checkpointer_steps, key=lambda s: (rows[s]["accuracy"], s))
  assert select.resolve_checkpoint(workdir, "best", config) == best
  metrics = evaluate.evaluate_workdir(config, workdir, checkpoint="best", verbose=False)
  assert metrics["step"] == best and metrics["accuracy"] == pytest.approx(rows[best]["accuracy"])
  kept = select.resolve_checkpoint(workdir, "latest", config)
  assert kept == 30
  # A metric where lower is better picks by min.
  with config.unlocked():
    config.eval.best_metric, config.eval.best_mode = "loss", "min"
  lowest = min(checkpointer_steps, key=lambda s: (rows[s]["loss"], -s))
  try:
    assert select.resolve_checkpoint(workdir, "best", config) == lowest
  finally:
    with config.unlocked():
      config.eval.best_metric, config.eval.best_mode = "accuracy", "max"


def test_step_and_slice_split(run):
  config, workdir = run
  step = select.resolve_checkpoint(workdir, "10", config)
  metrics = evaluate.evaluate_workdir(config, workdir, checkpoint=str(step), split="test[:100]",
                                      verbose=False)
  assert metrics["step"] == step
  record = json.load(open(os.path.join(workdir, f"eval_test_0-100_step{step}.json")))
  assert record["num_examples"] == 100 and np.asarray(record["confusion"]).sum() == 100


def test_cli_checkpoint_flag_and_errors(run, tmp_path, capsys):
  config, workdir = run
  argv = ["--config", QUICKSTART, "--workdir", workdir, "--mode=eval",
          f"--config.data.data_dir={config.data.data_dir}"] + [f"--config.{k}={v}" for k, v in OVERRIDES]
  assert main.main(argv + ["--checkpoint", "30"]) == 0
  assert "checkpoint 30" in capsys.readouterr().out
  with pytest.raises(UserError, match=r"no checkpoint at step 7 .*kept steps: .*30") as e:
    main.main(argv + ["--checkpoint", "7"])
  assert "\n" not in str(e.value)
  with pytest.raises(UserError, match="write latest, best or a step number"):
    main.main(argv + ["--checkpoint", "newest"])
  with pytest.raises(UserError, match="has no split 'valid'"):
    main.main(argv + ["--config.eval.split=valid"])
  empty = ["--workdir", str(tmp_path / "nothing")]
  with pytest.raises(UserError, match="no checkpoint in .*train into this workdir first") as e:
    main.main(argv[:2] + empty + argv[4:])
  assert "\n" not in str(e.value)
  assert not (tmp_path / "nothing").exists()  # a failed eval creates nothing


def test_split_sizes_of_slices():
  info = DatasetInfo(name="d", input_key="image", input_shape=(8, 8, 1),
                                 input_dtype=np.uint8, num_classes=10,
                                 split_sizes={"train": 1437, "test": 360})
  assert info.split_size("test") == 360
  assert info.split_size("test[:100]") == 100
  assert info.split_size("test[100:]") == 260
  assert info.split_size("test[-60:]") == 60
  assert info.split_size("train[:10%]") == 144  # tfds rounds percent boundaries
  assert info.split_size("train[:10]+test[:5]") == 15
  with pytest.raises(UserError, match="has no split 'valid"):
    info.split_size("valid[:10]")
  with pytest.raises(UserError, match="has no split"):
    info.split_size("test[:1x]")


def test_split_slug():
  assert evaluate.split_slug("test") == "test"
  assert evaluate.split_slug("test[:1000]") == "test_0-1000"
  assert evaluate.split_slug("train[90%:]") == "train_90pct-end"


def test_best_without_metrics_jsonl_uses_the_checkpoints_metrics(run):
  config, workdir = run
  rows = _eval_rows(workdir)
  expected = max((10, 20, 30), key=lambda s: (rows[s]["accuracy"], s))
  path = os.path.join(workdir, "metrics.jsonl")
  os.rename(path, path + ".away")
  try:
    assert select.resolve_checkpoint(workdir, "best", config) == expected
  finally:
    os.rename(path + ".away", path)
