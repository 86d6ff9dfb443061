"""Plots and summary.md: written at the end of training and by `python -m lepton_jax.report`;
what each PNG shows is the data of metrics.jsonl (and of the eval's confusion counts)."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from lepton_jax import config_lib, evaluate, report, train
from lepton_jax.metric_writers import read_metrics

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CURVE_KEYS = {"loss": "loss", "accuracy": "accuracy", "learning_rate": "learning_rate",
              "throughput": "examples_per_sec"}


def _config(data_dir, steps=30):
  config = config_lib.load(os.path.join(REPO, "configs", "quickstart.py"))
  config_lib.apply_overrides(config, [
      ("data.data_dir", data_dir), ("num_train_steps", str(steps)), ("log_every_steps", "5"),
      ("eval_every_steps", "10"), ("checkpoint_every_steps", "30"), ("optimizer.warmup_steps", "3"),
      ("model.conv_features", "(8,)"), ("model.pool", "(True,)"), ("model.hidden_sizes", "(32,)")])
  return config


@pytest.fixture(scope="module")
def trained(data_dir, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("report_run"))
  final = train.train_and_evaluate(_config(data_dir), workdir)
  return workdir, final


def _check_png(path):
  assert os.path.getsize(path) > 5000, path
  image = np.asarray(Image.open(path).convert("L"))
  assert image.shape[0] > 200 and image.shape[1] > 200
  assert image.std() > 5, f"{path} looks blank"


def test_training_writes_plots_confusion_and_summary(trained):
  workdir, final = trained
  for name in ("loss", "accuracy", "learning_rate", "throughput", "eval_metrics",
               "confusion_validation"):
    _check_png(os.path.join(workdir, "plots", f"{name}.png"))
  # The confusion counts of the final state: the same accuracy as the last eval.
  names, counts = evaluate.read_confusion_csv(os.path.join(workdir, "confusion_validation.csv"))
  assert counts.sum() == 287 and np.trace(counts) / 287 == pytest.approx(final["accuracy"])
  summary = open(os.path.join(workdir, "summary.md")).read()
  assert "cnn on digits" in summary and "wall time" in summary and "examples/s" in summary
  assert f"{final['accuracy']:.4g}" in summary
  facts = json.load(open(os.path.join(workdir, "summary.json")))
  assert facts["final"]["step"] == 30 and facts["wall_seconds"] > 0
  assert facts["best"]["accuracy"] == max(r["accuracy"] for r in read_metrics(workdir)
                                          if r["split"] == "validation")


def test_plotted_data_is_metrics_jsonl(trained):
  workdir, _ = trained
  result = report.write_report(workdir, compute_confusion=False, verbose=False)
  rows = read_metrics(workdir)
  for stem, key in CURVE_KEYS.items():
    plot = result["plots"][stem]
    assert plot["xlabel"] == "step" and plot["ylabel"] and plot["title"]
    expected = {}
    for r in rows:
      if key in r:
        expected.setdefault(r["split"], ([], []))
        expected[r["split"]][0].append(r["step"])
        expected[r["split"]][1].append(r[key])
    assert set(plot["lines"]) == set(expected), stem
    for split, (steps, values) in expected.items():
      assert plot["lines"][split][0] == steps
      np.testing.assert_allclose(plot["lines"][split][1], values, rtol=1e-12)
    _check_png(plot["path"])
  assert set(result["plots"]["loss"]["lines"]) == {"train", "validation"}
  assert set(result["plots"]["learning_rate"]["lines"]) == {"train"}
  # The confusion image holds the counts of the CSV, with label names on both axes.
  confusion = result["plots"]["confusion"]
  names, counts = evaluate.read_confusion_csv(os.path.join(workdir, "confusion_validation.csv"))
  np.testing.assert_array_equal(np.asarray(confusion["matrix"]), counts)
  assert confusion["xlabel"] == "predicted label" and confusion["ylabel"] == "true label"
  assert confusion["xticklabels"] == names == confusion["yticklabels"]


def test_report_cli_computes_a_missing_confusion_matrix(trained, capsys):
  workdir, _ = trained
  os.remove(os.path.join(workdir, "confusion_validation.csv"))
  os.remove(os.path.join(workdir, "plots", "confusion_validation.png"))
  assert report.main([workdir]) == 0
  assert "confusion" in capsys.readouterr().out
  _check_png(os.path.join(workdir, "plots", "confusion_validation.png"))
  names, counts = evaluate.read_confusion_csv(os.path.join(workdir, "confusion_validation.csv"))
  assert counts.sum() == 287  # the validation digits


def test_a_failing_report_does_not_lose_the_run(data_dir, tmp_path, monkeypatch, capsys):
  def broken(*args, **kwargs):
    raise RuntimeError("no fonts today")
  monkeypatch.setattr(report, "after_training", broken)
  final = train.train_and_evaluate(_config(data_dir, steps=5), str(tmp_path / "w"))
  assert final["step"] == 5 and "accuracy" in final
  assert "warning: could not write the plots/summary (RuntimeError: no fonts today)" in capsys.readouterr().err
