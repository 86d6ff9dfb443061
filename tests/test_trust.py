"""Nothing lost, every figure true: one workdir per run, checkpoints only of finite state, never a
deleted good checkpoint, a failed save stops the run at once, `best` is the best evaluation's own
state, a finished run's rerun changes nothing it should not, and a resume says what changed."""

import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from etils import epath

import checkpoint_testlib as lib
from lepton_jax import main, train
from lepton_jax.checkpoint import select
from lepton_jax.errors import TrainingDiverged


@pytest.fixture(scope="module")
def trained(data_dir, tmp_path_factory):
  """A 20-step run with checkpoints at 10 and 20."""
  workdir = str(tmp_path_factory.mktemp("trained"))
  train.train_and_evaluate(lib.tiny_config(data_dir, num_train_steps=20), workdir,
                           devices=jax.devices()[:1])
  return workdir


def _copy(trained, tmp_path, name="w"):
  workdir = str(tmp_path / name)
  shutil.copytree(trained, workdir)
  return workdir


def _resume_cli(workdir, data_dir, **changes):
  return subprocess.run([sys.executable, "-m", "lepton_jax.main"] + lib.cli_args(
      workdir, data_dir, **changes), cwd=lib.REPO, env=lib.subprocess_env(), capture_output=True,
      text=True, timeout=300)


@pytest.mark.parametrize("part", ["metrics/metrics", "meta/metadata", "state/manifest.ocdbt",
                                  "state/_METADATA"])
def test_any_corrupt_part_falls_back_to_the_older_checkpoint_in_one_line(trained, data_dir,
                                                                         tmp_path, part, capfd):
  workdir = _copy(trained, tmp_path)
  (epath.Path(workdir) / "checkpoints" / "20" / part).write_bytes(b"\x00garbled{")
  capfd.readouterr()
  final = train.train_and_evaluate(lib.tiny_config(data_dir, num_train_steps=30), workdir,
                                   devices=jax.devices()[:1])
  out, err = capfd.readouterr()  # the file descriptors: what C++ threads print is here too
  assert final["step"] == 30 and "resumed from checkpoint at step 10" in out
  assert "checkpoints/20 is unreadable" in err
  assert "Traceback" not in err and "Event loop is closed" not in err, err[-3000:]
  assert lib.checkpoint_steps(workdir)[-1] == 30


def test_a_checkpoint_that_cannot_be_moved_is_left_in_place(trained, data_dir, tmp_path,
                                                            monkeypatch, capsys):
  workdir = _copy(trained, tmp_path)
  (epath.Path(workdir) / "checkpoints" / "20" / "meta" / "metadata").write_bytes(b"{")
  def refuse(self, target):
    raise OSError(18, "Invalid cross-device link")  # EXDEV: another file system
  monkeypatch.setattr(type(epath.Path(workdir)), "rename", refuse)
  train.train_and_evaluate(lib.tiny_config(data_dir, num_train_steps=20), workdir,
                           devices=jax.devices()[:1])
  err = capsys.readouterr().err
  assert "left checkpoint" in err and "(unreadable) in place" in err
  assert (epath.Path(workdir) / "checkpoints" / "20" / "state").exists()  # nothing deleted


def test_an_exploding_learning_rate_never_checkpoints_non_finite_state(trained, data_dir,
                                                                       tmp_path):
  workdir = _copy(trained, tmp_path)
  config = lib.tiny_config(data_dir, num_train_steps=60, checkpoint_every_steps=1,
                           log_every_steps=50, optimizer__learning_rate=1e30)
  with pytest.raises(TrainingDiverged, match="training diverged"):
    train.train_and_evaluate(config, workdir, devices=jax.devices()[:1])
  kept = lib.checkpoint_steps(workdir)
  for step in kept:
    _, state = lib.read_state(workdir, step)
    assert all(np.isfinite(v).all() for v in state.values() if v.dtype.kind == "f"), step
  assert (epath.Path(workdir) / "checkpoints_diverged").exists()  # moved, not deleted
  # The documented remedy works: a lower learning rate resumes from finite state and finishes.
  final = train.train_and_evaluate(lib.tiny_config(data_dir, num_train_steps=30), workdir,
                                   devices=jax.devices()[:1])
  assert final["step"] == 30 and np.isfinite(final["loss"])


def test_a_failed_save_stops_the_run_at_once_in_one_line(data_dir, tmp_path):
  """A file-size limit makes checkpoint writes fail, as a full disk does."""
  workdir = str(tmp_path / "w")
  wide = dict(model__hidden_sizes="(256,)", checkpoint_every_steps=30, log_every_steps=5)
  first = subprocess.run([sys.executable, "-m", "lepton_jax.main"] + lib.cli_args(
      workdir, data_dir, num_train_steps=30, **wide), cwd=lib.REPO, env=lib.subprocess_env(),
      capture_output=True, text=True, timeout=300)
  assert first.returncode == 0, first.stderr[-3000:]
  limit = 64 * 1024  # logs and records fit; a checkpoint of this model (~400 KB) does not

  def small_disk():
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write beyond the limit fails, EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

  result = subprocess.run([sys.executable, "-m", "lepton_jax.main"] + lib.cli_args(
      workdir, data_dir, num_train_steps=2000, **wide), cwd=lib.REPO, env=lib.subprocess_env(),
      capture_output=True, text=True, timeout=300, preexec_fn=small_disk)
  assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-3000:]
  err = result.stderr.strip().splitlines()
  assert re.match(r"error: checkpoint \d+ could not be saved \(.*File too large", err[-1]), err[-5:]
  assert "the last committed checkpoint (30) is intact" in err[-1]
  assert "Traceback" not in result.stderr, result.stderr[-3000:]
  logged = [json.loads(line)["step"] for line in open(os.path.join(workdir, "metrics.jsonl"))]
  assert max(logged) <= 70  # stopped within a few steps of the failed save, not 80 later
  assert lib.checkpoint_steps(workdir)[-1] == 30  # nothing newer committed
  assert lib.read_state(workdir, 30)[0] == 30  # intact


@pytest.mark.usefixtures("trained")
def test_best_is_the_best_evaluations_own_state(data_dir, tmp_path, capsys):
  workdir = str(tmp_path / "w")
  config = lib.tiny_config(data_dir, num_train_steps=40, eval_every_steps=5,
                           checkpoint_every_steps=40, checkpoint__keep_best=1,
                           checkpoint__keep_last=1, optimizer__learning_rate=0.05)
  train.train_and_evaluate(config, workdir, devices=jax.devices()[:1])
  evals = {r["step"]: r["accuracy"] for r in lib.metric_rows(workdir)
           if r["split"] == config.eval.split}
  assert len(evals) == 8, evals
  best = select.resolve_checkpoint(workdir, "best", config)
  # Ties are possible on 287 validation digits: any step with the best accuracy is the best state.
  assert evals[best] == max(evals.values()), (best, evals, lib.checkpoint_steps(workdir))
  assert best in lib.checkpoint_steps(workdir)
  capsys.readouterr()
  assert main.main(lib.cli_args(workdir, data_dir, num_train_steps=40) +
                   ["--mode=eval", "--checkpoint", "best"]) == 0
  assert f"restored checkpoint {best} (best by accuracy" in capsys.readouterr().out


def test_a_rerun_of_a_finished_run_keeps_its_summary_and_warns_of_changed_versions(
    trained, data_dir, tmp_path, capsys):
  workdir = _copy(trained, tmp_path)
  summary = json.load(open(os.path.join(workdir, "summary.json")))
  record_path = os.path.join(workdir, "run.json")
  record = json.load(open(record_path))
  record["provenance"]["first"]["versions"]["jax"] = "0.0.1"  # as if trained with another jax
  json.dump(record, open(record_path, "w"))
  train.train_and_evaluate(lib.tiny_config(data_dir, num_train_steps=20), workdir,
                           devices=jax.devices()[:1])
  assert json.load(open(os.path.join(workdir, "summary.json")))["wall_seconds"] == (
      summary["wall_seconds"])
  err = capsys.readouterr().err
  assert f"jax 0.0.1 -> {jax.__version__}" in err
  assert "| command |" in open(os.path.join(workdir, "summary.md")).read()


def test_two_runs_on_one_workdir(trained, data_dir, tmp_path):
  """The second run is refused naming the first; killing the first (-9) frees the workdir."""
  workdir = _copy(trained, tmp_path)
  log = tmp_path / "first.log"
  first = lib.start_cli(workdir, data_dir, log, num_train_steps=100_000, log_every_steps=10,
                        checkpoint_every_steps=1000, eval_every_steps=100_000)
  try:
    deadline = time.time() + 240
    while time.time() < deadline and b"step 30/" not in log.read_bytes():
      assert first.poll() is None, log.read_text()[-3000:]
      time.sleep(0.2)
    second = _resume_cli(workdir, data_dir, num_train_steps=100_000)
    assert second.returncode == 2
    message = second.stderr.strip().splitlines()[-1]
    assert message.startswith("error: workdir") and f"pid {first.pid}" in message, message
  finally:
    first.kill()  # -9: no chance to clean up
    first.wait()
  third = _resume_cli(workdir, data_dir, num_train_steps=25)
  assert third.returncode == 0, third.stderr[-3000:]


def test_sigterm_under_load_exits_within_10s(data_dir, tmp_path):
  """Other programs keep every core busy: the stop checkpoint still commits in time (the default
  writer yields to training but keeps a share of the cores; SCHED_IDLE would wait for them)."""
  lib.prepare_data(data_dir)
  hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
          for _ in range(os.cpu_count() or 2)]
  log = tmp_path / "log.txt"
  try:
    proc = lib.start_cli(tmp_path / "run", data_dir, log, num_train_steps=100_000,
                         checkpoint_every_steps=25, eval_every_steps=100_000, log_every_steps=5)
    deadline = time.time() + 300
    while time.time() < deadline and b"step 60/" not in log.read_bytes():
      assert proc.poll() is None, log.read_text()[-3000:]
      time.sleep(0.2)
    sent = time.time()
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=120)
    elapsed = time.time() - sent
  finally:
    for hog in hogs:
      hog.kill()
    if proc.poll() is None:
      proc.kill()
  print(f"SIGTERM under load -> exit {code} in {elapsed:.1f}s")
  assert code == 75 and elapsed < 10, (code, elapsed, log.read_text()[-2000:])
