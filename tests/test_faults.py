"""kill -9 at random moments, some inside an async save: every restart resumes from
the last complete checkpoint and the run ends bit-for-bit equal to an uninterrupted one."""

import os
import random
import signal
import time

import checkpoint_testlib as lib

# Frequent saves, so that many kills land inside one; enough steps that 10 kills never
# reach the end.
RUN = dict(num_train_steps=360, checkpoint_every_steps=4, log_every_steps=10, eval_every_steps=120)
KILLS = 10
LAUNCH_TIMEOUT = 300  # seconds any one process may take


def _entries(directory):
  try:
    return os.listdir(directory)
  except FileNotFoundError:
    return []


def _committed(directory) -> list[int]:
  return sorted(int(n) for n in _entries(directory) if n.isdigit())


def _tmp_dirs(directory) -> list[str]:
  return [n for n in _entries(directory) if "orbax-checkpoint-tmp" in n]


def _kill_at(proc, plan, ckpt_dir, rng) -> str:
  """Waits for the planned moment, then SIGKILLs `proc`; returns what happened."""
  deadline = time.time() + LAUNCH_TIMEOUT
  before = set(_committed(ckpt_dir))
  seen_tmp = set()
  if plan == "startup":  # during imports, restore or compile, or early training
    end = time.time() + rng.uniform(0.5, 4.0)
    while time.time() < end and proc.poll() is None:
      time.sleep(0.01)
  else:
    wanted_saves = rng.randint(1, 4)
    while time.time() < deadline and proc.poll() is None:
      tmp = set(_tmp_dirs(ckpt_dir))
      seen_tmp |= tmp
      if plan == "in_save" and tmp and len(seen_tmp) >= wanted_saves:
        break  # a save is being written right now
      if plan == "random" and set(_committed(ckpt_dir)) - before:
        end = time.time() + rng.uniform(0.0, 0.4)  # a random moment of training
        while time.time() < end and proc.poll() is None:
          time.sleep(0.002)
        break
      time.sleep(0.002)
  if proc.poll() is not None:
    return f"exited by itself ({proc.returncode})"
  proc.send_signal(signal.SIGKILL)
  proc.wait(timeout=60)
  return "killed"


def test_sigkill_at_random_moments_resumes_bit_for_bit(data_dir, tmp_path):
  lib.prepare_data(data_dir)  # before two processes race to prepare it
  cache = tmp_path / "jax_cache"
  ref_dir, workdir = tmp_path / "reference", tmp_path / "run"
  ckpt_dir = workdir / "checkpoints"
  reference = lib.start_cli(ref_dir, data_dir, tmp_path / "reference.log", cache, **RUN)
  rng = random.Random(0)
  plans = ["startup", "in_save", "random", "in_save", "random", "in_save", "startup", "random",
           "in_save", "random"]
  assert len(plans) == KILLS
  events = []
  try:
    for i, plan in enumerate(plans):
      log = tmp_path / f"launch{i}.log"
      leftovers = set(_tmp_dirs(ckpt_dir))
      proc = lib.start_cli(workdir, data_dir, log, cache, **RUN)
      try:
        outcome = _kill_at(proc, plan, ckpt_dir, rng)
      finally:
        if proc.poll() is None:
          proc.kill()
          proc.wait()
      events.append(dict(plan=plan, outcome=outcome, log=log, committed=_committed(ckpt_dir),
                         mid_save=bool(set(_tmp_dirs(ckpt_dir)) - leftovers)))
      assert outcome == "killed", f"launch {i} {outcome}: {log.read_text()[-3000:]}"

    final_log = tmp_path / "final.log"
    proc = lib.start_cli(workdir, data_dir, final_log, cache, **RUN)
    assert proc.wait(timeout=LAUNCH_TIMEOUT) == 0, final_log.read_text()[-3000:]
    assert reference.wait(timeout=LAUNCH_TIMEOUT) == 0, (tmp_path / "reference.log").read_text()
  finally:
    for p in (reference, proc):
      if p.poll() is None:
        p.kill()

  for e in events:
    print(f"{e['plan']:8s} {e['outcome']}; committed steps then: {e['committed']}"
          + (" (killed inside a save)" if e["mid_save"] else ""))
  # Some kills interrupted a save (they left a half-written tmp dir behind) ...
  assert sum(e["mid_save"] for e in events) >= 3
  # ... and each next start resumed from the newest complete checkpoint there was.
  logs = [e["log"] for e in events[1:]] + [final_log]
  for e, next_log in zip(events, logs):
    text = next_log.read_text()
    if e["committed"] and "resumed from" in text:
      assert f"resumed from checkpoint at step {e['committed'][-1]}\n" in text, text[-2000:]
  assert not _tmp_dirs(ckpt_dir)  # the half-written ones were cleaned up
  assert not (workdir / "checkpoints_corrupt").exists()

  step, state = lib.read_state(workdir)
  ref_step, ref_state = lib.read_state(ref_dir)
  assert step == ref_step == RUN["num_train_steps"]
  lib.assert_states_equal(state, ref_state)
  lib.assert_same_metrics(workdir, ref_dir)
