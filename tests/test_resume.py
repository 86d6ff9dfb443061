"""Exact resume: stopped runs (stop flag, SIGTERM) continue bit-for-bit, on any mesh."""

import os
import shutil
import signal
import time

import jax
import numpy as np
import pytest

import checkpoint_testlib as lib
from lepton_jax import train


@pytest.fixture(scope="module")
def reference(data_dir, tmp_path_factory):
  """An uninterrupted tiny run: (workdir, returned metrics)."""
  workdir = str(tmp_path_factory.mktemp("reference"))
  metrics = train.train_and_evaluate(lib.tiny_config(data_dir), workdir, devices=jax.devices()[:1])
  return workdir, metrics


def test_stopped_and_resumed_runs_end_bit_for_bit_equal(reference, data_dir, tmp_path):
  ref_dir, ref_metrics = reference
  workdir = str(tmp_path / "run")
  config, devices = lib.tiny_config(data_dir), jax.devices()[:1]
  # Stops between logs and saves (7: mid-interval, 13: just after a save) and on a save step (20).
  start = 0
  for k in (7, 13, 20):
    with pytest.raises(train.Preempted):
      train.train_and_evaluate(config, workdir, devices=devices, stop_requested=lib.StopAt(k, start))
    assert lib.checkpoint_steps(workdir)[-1] == k
    start = k
  metrics = train.train_and_evaluate(config, workdir, devices=devices)

  assert metrics == ref_metrics
  step, state = lib.read_state(workdir)
  ref_step, ref_state = lib.read_state(ref_dir)
  assert step == ref_step == 30
  lib.assert_states_equal(state, ref_state)  # params, optimizer state, step, rng
  lib.assert_same_metrics(workdir, ref_dir)  # every step logged once, same values


def test_rerunning_a_complete_run_returns_its_final_eval(reference, data_dir, capsys):
  ref_dir, ref_metrics = reference
  rows = lib.metric_rows(ref_dir)
  config = lib.tiny_config(data_dir)
  metrics = train.train_and_evaluate(config, ref_dir, devices=jax.devices()[:1])
  assert metrics == ref_metrics
  assert lib.metric_rows(ref_dir) == rows  # nothing logged twice
  out = capsys.readouterr().out
  assert "eval validation at step 30" in out
  assert "train step compiled" not in out  # nothing left to train: no compile either


def test_restore_onto_other_meshes_gives_the_same_eval(data_dir, tmp_path):
  """A checkpoint sharded FSDP over 8 devices restores on 1 device, and on data=2 x model=2."""
  saved = str(tmp_path / "fsdp8")
  rules = "(('dense_0/kernel', 'fsdp,model'), ('.*', 'fsdp_auto'))"
  config8 = lib.tiny_config(data_dir, num_train_steps=10, mesh__data=1, mesh__fsdp=8,
                            sharding__rules=rules)
  metrics8 = train.train_and_evaluate(config8, saved, devices=jax.devices()[:8])
  step, state8 = lib.read_state(saved)

  targets = {
      "1 device": (dict(mesh__data=1, mesh__fsdp=1), 1),
      "data=2 x model=2": (dict(mesh__data=2, mesh__fsdp=1, mesh__model=2), 4),
  }
  for name, (mesh, n) in targets.items():
    workdir = str(tmp_path / name.replace(" ", "_"))
    shutil.copytree(saved, workdir)
    config = lib.tiny_config(data_dir, num_train_steps=10, sharding__rules=rules, **mesh)
    metrics = train.train_and_evaluate(config, workdir, devices=jax.devices()[:n])
    assert metrics.keys() == metrics8.keys()
    for key in metrics8:
      np.testing.assert_allclose(metrics[key], metrics8[key], rtol=1e-5, err_msg=f"{name}: {key}")
    # The same state was restored and (the run being complete) nothing was saved over it.
    lib.assert_states_equal(lib.read_state(workdir)[1], state8)


def test_sigterm_commits_a_checkpoint_and_exits_75_within_10s(data_dir, tmp_path):
  lib.prepare_data(data_dir)
  workdir = tmp_path / "run"
  log_path = tmp_path / "log.txt"
  proc = lib.start_cli(workdir, data_dir, log_path, num_train_steps=100_000,
                       checkpoint_every_steps=1000, eval_every_steps=100_000, log_every_steps=20)
  try:
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
      if b"step 40/" in log_path.read_bytes():  # training is under way
        break
      time.sleep(0.2)
    assert proc.poll() is None, log_path.read_text()
    sent = time.time()
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=60)
    elapsed = time.time() - sent
  finally:
    if proc.poll() is None:
      proc.kill()
  log = log_path.read_text()
  print(f"SIGTERM -> exit {code} in {elapsed:.2f}s")
  assert code == 75, log
  assert elapsed < 10, f"took {elapsed:.1f}s"
  stopped = int(log.split("stopped at step ")[1].split(":")[0])
  assert stopped >= 40
  assert lib.checkpoint_steps(workdir)[-1] == stopped
  assert not [p for p in os.listdir(workdir / "checkpoints") if "tmp" in p]
  step, state = lib.read_state(workdir)  # committed and readable
  assert step == stopped and int(state["['step']"]) == stopped


def test_sigterm_to_one_of_two_processes_stops_both_at_the_same_step(data_dir, tmp_path):
  """Multi-process: the stop flag is shared at log steps, so every process saves the same
  step (a collective save) and exits 75."""
  lib.prepare_data(data_dir)
  workdir = tmp_path / "run"
  procs = lib.start_two_processes(workdir, data_dir, tmp_path, num_train_steps=100_000,
                                  checkpoint_every_steps=1000, eval_every_steps=100_000,
                                  log_every_steps=5, data__num_shards=2)
  logs = [tmp_path / f"process{i}.log" for i in range(2)]
  try:
    deadline = time.time() + 240
    while time.time() < deadline and all(p.poll() is None for p in procs):
      if b"step 20/" in logs[0].read_bytes():  # training is under way on both
        break
      time.sleep(0.2)
    assert all(p.poll() is None for p in procs), logs[0].read_text()[-3000:]
    procs[1].send_signal(signal.SIGTERM)  # only the second process is told
    codes = [p.wait(timeout=120) for p in procs]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  text = logs[0].read_text()
  assert codes == [75, 75], text[-3000:] + logs[1].read_text()[-3000:]
  stopped = int(text.split("stopped at step ")[1].split(":")[0])
  assert stopped % 5 == 0  # at a log step, where the processes compare their flags
  assert lib.checkpoint_steps(workdir)[-1] == stopped
  assert int(lib.read_state(workdir)[1]["['step']"]) == stopped


def test_several_steps_per_dispatch_log_every_step_and_resume_exactly(reference, data_dir,
                                                                      tmp_path):
  ref_dir, _ = reference  # one step per dispatch
  config, devices = lib.tiny_config(data_dir, steps_per_dispatch=4), jax.devices()[:1]
  uninterrupted = str(tmp_path / "four")
  train.train_and_evaluate(config, uninterrupted, devices=devices)
  # The same numbers as one step per dispatch: every step logged, the same state at the end.
  lib.assert_same_metrics(uninterrupted, ref_dir)
  lib.assert_states_equal(lib.read_state(uninterrupted)[1], lib.read_state(ref_dir)[1])
  workdir = str(tmp_path / "stopped")
  with pytest.raises(train.Preempted):  # after the 3rd dispatch: mid-interval
    train.train_and_evaluate(config, workdir, devices=devices, stop_requested=lib.StopAt(3))
  train.train_and_evaluate(config, workdir, devices=devices)
  lib.assert_states_equal(lib.read_state(workdir)[1], lib.read_state(uninterrupted)[1])
  lib.assert_same_metrics(workdir, uninterrupted)
