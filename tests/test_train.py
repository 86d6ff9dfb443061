"""The real train loop on real (small) data."""

import glob
import json
import os

import jax
import numpy as np

from lepton_jax import config_lib, metric_writers, train
from lepton_jax.evaluate import Evaluator
from lepton_jax.train.feed import TrainFeed

import task_testlib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_quickstart_loop_writes_metrics_tensorboard_and_config(quick_config, tmp_path):
  workdir = str(tmp_path / "run")
  final = train.train_and_evaluate(quick_config, workdir, devices=jax.devices()[:1])
  rows = metric_writers.read_metrics(workdir)
  train_rows = [r for r in rows if r["split"] == "train"]
  eval_rows = [r for r in rows if r["split"] == "validation"]
  assert [r["step"] for r in train_rows] == [10, 20, 30, 40]
  assert [r["step"] for r in eval_rows] == [20, 40]
  for key in ("loss", "accuracy", "precision", "recall", "f1"):
    assert 0 <= eval_rows[-1][key] <= 1 or key == "loss"
  assert train_rows[-1]["loss"] < train_rows[0]["loss"]
  assert final["accuracy"] == eval_rows[-1]["accuracy"] and final["step"] == 40
  assert glob.glob(os.path.join(workdir, "tensorboard", "train", "events.out.tfevents.*"))
  assert glob.glob(os.path.join(workdir, "tensorboard", "validation", "events.out.tfevents.*"))
  saved = json.load(open(os.path.join(workdir, "config.json")))
  assert saved["num_train_steps"] == 40 and saved["model"]["conv_features"] == [8]
  record = json.load(open(os.path.join(workdir, "run.json")))
  assert record["dataset"]["split_sizes"] == {"train": 1150, "validation": 287, "test": 360}


def test_tensorboard_events_hold_the_logged_values(quick_config, tmp_path):
  from tensorboard.backend.event_processing import event_accumulator
  workdir = str(tmp_path / "run")
  train.train_and_evaluate(quick_config, workdir, devices=jax.devices()[:1])
  acc = event_accumulator.EventAccumulator(os.path.join(workdir, "tensorboard", "validation"),
                                           size_guidance={"tensors": 0})
  acc.Reload()
  events = acc.Tensors("accuracy")
  jsonl = [r["accuracy"] for r in metric_writers.read_metrics(workdir) if r["split"] == "validation"]
  import tensorflow as tf
  logged = [float(tf.make_ndarray(e.tensor_proto)) for e in events]
  np.testing.assert_allclose(logged, jsonl, rtol=1e-6)


def test_breast_cancer_binary_metrics(data_dir, tmp_path):
  config = config_lib.load(os.path.join(REPO, "configs", "breast_cancer_mlp.py"))
  config_lib.apply_overrides(config, [("data.data_dir", data_dir), ("num_epochs", "10")])
  final = train.train_and_evaluate(config, str(tmp_path / "bc"), devices=jax.devices()[:1])
  assert final["accuracy"] > 0.9
  assert set(final) >= {"precision", "recall", "f1", "loss"}


def test_eval_counts_every_test_example(quick_config, tmp_path):
  """360 test digits with eval batch 64 on 8 devices: the last batch is padded."""
  config_lib.apply_overrides(quick_config, [("eval.batch_size", "64")])
  dataset, task = task_testlib.build(quick_config)
  state = task.init_state(task.init_rng)
  metrics, _ = Evaluator(task, dataset).evaluate(state, "test")  # raises unless 360 examples
  assert 0.0 <= metrics["accuracy"] <= 1.0


def test_on_device_and_host_fed_training_are_identical(quick_config, tmp_path):
  """Keeping the split on the devices changes where batches are assembled, not which: the
  on-device run and the streamed one (on_device_max_mb=0) log the same losses."""
  losses = {}
  for on_device_max_mb in (256, 0):
    config = quick_config.copy_and_resolve_references()
    config_lib.apply_overrides(config, [("data.on_device_max_mb", str(on_device_max_mb)),
                                        ("log_every_steps", "1"), ("mesh.data", "2")])
    workdir = str(tmp_path / str(on_device_max_mb))
    dataset, task = task_testlib.build(config, devices=jax.devices()[:2])
    feed = TrainFeed(task, dataset, 0)
    assert feed.on_device == bool(on_device_max_mb)
    feed.close()
    train.train_and_evaluate(config, workdir, devices=jax.devices()[:2])
    losses[on_device_max_mb] = [r["loss"] for r in metric_writers.read_metrics(workdir)
                                if r["split"] == "train"]
  assert len(losses[0]) == 40
  assert losses[256] == losses[0]


def test_zero_eval_and_checkpoint_intervals_mean_only_at_the_end(quick_config, tmp_path):
  config = quick_config.copy_and_resolve_references()
  config_lib.apply_overrides(config, [("eval_every_steps", "0"), ("checkpoint_every_steps", "0")])
  workdir = tmp_path / "run"
  train.train_and_evaluate(config, str(workdir), devices=jax.devices()[:1])
  evals = [r["step"] for r in metric_writers.read_metrics(str(workdir)) if r["split"] == "validation"]
  assert evals == [40]
  assert sorted(p.name for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()) == ["40"]
