"""The input position is part of every checkpoint: a streamed run whose workers (and itself) are
killed with SIGKILL resumes to the very parameters of an uninterrupted run, and a resume with
another data order is refused before anything is written."""

import os
import signal
import time

import jax
import pytest

import checkpoint_testlib as lib
from lepton_jax import train
from lepton_jax.errors import UserError

# Streamed through two worker processes; a checkpoint every 10 steps.
RUN = dict(num_train_steps=300, checkpoint_every_steps=10, log_every_steps=10,
           eval_every_steps=300, data__on_device_max_mb=0, data__workers=2)


def children(pid: int) -> set[int]:
  """The child processes of `pid`, started by any of its threads (Linux)."""
  found = set()
  try:
    for task in os.listdir(f"/proc/{pid}/task"):
      with open(f"/proc/{pid}/task/{task}/children") as f:
        found |= {int(c) for c in f.read().split()}
  except OSError:  # the process or a thread ended meanwhile
    pass
  return found


def alive(pid: int) -> bool:
  try:
    with open(f"/proc/{pid}/stat") as f:
      return f.read().split(")")[-1].split()[0] != "Z"
  except OSError:
    return False


def test_sigkill_with_input_workers_resumes_to_the_same_parameters(data_dir, tmp_path):
  lib.prepare_data(data_dir)
  workdir, log = tmp_path / "run", tmp_path / "run.log"
  proc = lib.start_cli(workdir, data_dir, log, tmp_path / "jax_cache", **RUN)
  try:
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
      workers = children(proc.pid)
      if (workdir / "checkpoints" / "20").exists() and len(workers) >= 2:  # past a save
        break
      time.sleep(0.05)
    assert proc.poll() is None and len(workers) >= 2, log.read_text()[-3000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
  finally:
    if proc.poll() is None:
      proc.kill()
  deadline = time.time() + 60  # the orphaned workers notice and exit
  while any(alive(w) for w in workers) and time.time() < deadline:
    time.sleep(0.2)
  assert not [w for w in workers if alive(w)]
  killed_at = lib.checkpoint_steps(workdir)[-1]
  assert 20 <= killed_at < RUN["num_train_steps"]

  # Another data order (one shard per process was the saved order) is refused, files untouched.
  before = (workdir / "run.json").read_bytes()
  with pytest.raises(UserError, match="belongs to another data order.*num_shards 1 then, 2 now"):
    train.train_and_evaluate(lib.tiny_config(data_dir, data__num_shards=2, **RUN), str(workdir),
                             devices=jax.devices()[:1])
  assert (workdir / "run.json").read_bytes() == before

  resumed = lib.start_cli(workdir, data_dir, tmp_path / "resumed.log", tmp_path / "jax_cache",
                          **RUN)
  assert resumed.wait(timeout=300) == 0, (tmp_path / "resumed.log").read_text()[-3000:]
  assert f"resumed from checkpoint at step {killed_at}" in (tmp_path / "resumed.log").read_text()

  # The uninterrupted run, in-process and without workers: the same batches, the same state.
  reference = str(tmp_path / "reference")
  train.train_and_evaluate(lib.tiny_config(data_dir, **dict(RUN, data__workers=0)), reference,
                           devices=jax.devices()[:1])
  step, state = lib.read_state(workdir)
  ref_step, ref_state = lib.read_state(reference)
  assert step == ref_step == RUN["num_train_steps"]
  lib.assert_states_equal(state, ref_state)
