"""The data-free core: a Task is built from a dataset's description alone, every entry point
builds it the same way, and a refused resume changes nothing."""

import hashlib
import os

import jax
import numpy as np
import pytest

import checkpoint_testlib as lib
from lepton_jax import config_lib, main, predict, run_record, task as task_lib, train
from lepton_jax.data import base as data_base, sources
from lepton_jax.data.info import DatasetInfo
from lepton_jax.errors import UserError

INFO = DatasetInfo(name="digits", input_key="image", input_shape=(8, 8, 1), input_dtype=np.uint8,
                   num_classes=10, split_sizes={"train": 1437, "test": 360})


def test_a_task_needs_no_data_and_writes_nothing(data_dir, tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  touched = []
  monkeypatch.setattr(data_base.Dataset, "source", lambda self, *a, **k: touched.append(a))
  monkeypatch.setattr(data_base.Dataset, "read", lambda self, *a, **k: touched.append(a))
  task = task_lib.build(lib.tiny_config(data_dir), INFO, devices=jax.devices()[:1])
  state = task.init_state(task.init_rng)
  # conv 3x3x1x8 + 8, dense (4*4*8)x16 + 16, head 16x10 + 10
  assert int(state.step) == 0 and task.param_count == 80 + 2064 + 170
  assert task.steps_per_epoch == 1437 // 64
  assert touched == [] and os.listdir(tmp_path) == []


def test_a_model_argument_error_is_one_line_naming_the_model_section(data_dir):
  config = lib.tiny_config(data_dir, model__pool="(True, True)")  # one conv layer, two pools
  with pytest.raises(UserError, match=r"config.model \(cnn\): cnn: pool has 2 entries"):
    task_lib.build(config, INFO, devices=jax.devices()[:1])


def test_unknown_data_keys_are_errors_with_a_hint(data_dir):
  config = lib.tiny_config(data_dir)
  with config.unlocked():
    config.data.image_sise = (8, 8)
  with pytest.raises(UserError, match="unknown key.*image_sise"):
    data_base.build(config.data)


def _digest(workdir, names):
  return {n: hashlib.sha256(open(os.path.join(workdir, n), "rb").read()).hexdigest() for n in names}


def test_a_refused_resume_changes_nothing(data_dir, tmp_path, capsys):
  workdir = str(tmp_path / "run")
  train.train_and_evaluate(lib.tiny_config(data_dir, num_train_steps=10), workdir,
                           devices=jax.devices()[:1])
  files = ["config.json", "run.json", "summary.md", "summary.json", "metrics.jsonl"]
  before = _digest(workdir, files)
  argv = lib.cli_args(workdir, data_dir, num_train_steps=10, model__hidden_sizes="(32,)")
  with pytest.raises(SystemExit) as e:
    main.run(argv)
  assert e.value.code == 2
  err = capsys.readouterr().err.strip().splitlines()[-1]
  assert err.startswith("error: checkpoint ") and "nothing was changed" in err
  assert "rerun the command that trained" in err and "fresh --workdir" in err
  assert _digest(workdir, files) == before
  predictor = predict.load(workdir)
  assert predictor.predict(np.zeros((2, 8, 8, 1), np.uint8)).shape == (2, 10)


def test_predict_rebuilds_the_training_task(data_dir, tmp_path):
  workdir = str(tmp_path / "run")
  config = lib.tiny_config(data_dir, num_train_steps=5, data__preprocess=
                           "(\"normalize(mean='dataset', std='dataset')\",)")
  train.train_and_evaluate(config, workdir, devices=jax.devices()[:1])
  saved = config_lib.from_json_file(os.path.join(workdir, "config.json"))
  assert "'dataset'" in saved.data.preprocess[0]  # the config is recorded as written...
  record = run_record.read(workdir)
  assert "dataset" not in record["op_specs"]["preprocess"][0]  # ...the numbers beside it
  task = task_lib.from_workdir(workdir)
  assert task.op_specs.preprocess == tuple(record["op_specs"]["preprocess"])
  assert task.param_count == record["param_count"]


MNIST_DIR = os.path.join(os.path.dirname(lib.REPO), "shared", "data", "mnist")


@pytest.mark.skipif(not os.path.exists(os.path.join(MNIST_DIR, "train-images-idx3-ubyte.gz")),
                    reason="the MNIST IDX files are not beside the repository")
def test_eval_of_an_mnist_run_never_reads_the_train_split(data_dir, tmp_path, monkeypatch):
  config = config_lib.load(os.path.join(lib.REPO, "configs", "mnist_cnn.py"))
  config_lib.apply_overrides(config, [
      ("data.data_dir", data_dir), ("data.manual_dir", MNIST_DIR),
      ("num_train_steps", "3"), ("log_every_steps", "3"), ("eval_every_steps", "3"),
      ("checkpoint_every_steps", "3"), ("optimizer.warmup_steps", "1"),
      ("eval.split", "test[:256]"), ("data.on_device_max_mb", "0")])
  workdir = str(tmp_path / "mnist")
  train.train_and_evaluate(config, workdir, devices=jax.devices()[:1])
  reads = []
  original = sources.RecordSource.__init__

  def recording(self, manifest, split, **kwargs):
    reads.append(split)
    original(self, manifest, split, **kwargs)

  monkeypatch.setattr(sources.RecordSource, "__init__", recording)
  metrics = main.main(["--config", os.path.join(lib.REPO, "configs", "mnist_cnn.py"), "--workdir",
                       workdir, "--mode=eval"] + [f"--config.{k}={v}" for k, v in [
                           ("data.data_dir", data_dir), ("eval.split", "test[:256]"),
                           ("data.manual_dir", MNIST_DIR)]])
  assert metrics == 0
  assert reads and all(not r.startswith("train") for r in reads), reads
