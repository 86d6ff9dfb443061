"""lepton_jax.workdir: one run per workdir, with real processes holding the lock."""

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from lepton_jax import workdir as workdir_lib
from lepton_jax.errors import UserError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

HOLDER = textwrap.dedent("""
    import sys, time
    from lepton_jax import workdir
    lock = workdir.WorkdirLock(sys.argv[1], heartbeat_seconds=0.1, use_lease=sys.argv[2] == "lease")
    lock.acquire()
    print("held", flush=True)
    time.sleep(120)
""")


def start_holder(tmp_path, path, mode="flock"):
  """A process that takes the lock of `path` and keeps it; returns once it holds it."""
  script = tmp_path / "holder.py"
  script.write_text(HOLDER)
  env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
  proc = subprocess.Popen([sys.executable, str(script), str(path), mode], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, env=env)
  line = proc.stdout.readline()
  if line.strip() != "held":
    proc.kill()
    pytest.fail(f"holder did not start: {line!r} {proc.stderr.read()}")
  return proc, script


def kill_hard(proc):
  proc.send_signal(signal.SIGKILL)
  proc.wait(timeout=30)  # reaped: no zombie keeps the pid alive


@pytest.mark.parametrize("mode", ["flock", "lease"])
def test_second_run_is_refused_and_a_killed_holder_leaves_no_lock(tmp_path, mode):
  path = tmp_path / "workdir"
  proc, script = start_holder(tmp_path, path, mode)
  try:
    with pytest.raises(UserError) as e:
      workdir_lib.WorkdirLock(str(path), use_lease=mode == "lease").acquire()
    message = str(e.value)
    assert "\n" not in message
    assert message.startswith(f"workdir {path} is in use by another run (pid {proc.pid} on "
                              f"{socket.gethostname()}, started ")
    assert str(script) in message and "choose another --workdir" in message
  finally:
    kill_hard(proc)
  with workdir_lib.WorkdirLock(str(path), use_lease=mode == "lease") as lock:
    assert lock.workdir == str(path)
    with pytest.raises(UserError, match=f"pid {os.getpid()} on"):
      workdir_lib.WorkdirLock(str(path), use_lease=mode == "lease").acquire()
  workdir_lib.WorkdirLock(str(path), use_lease=mode == "lease").acquire().release()


def test_flock_file_stays_and_is_emptied_on_release(tmp_path):
  lock = workdir_lib.WorkdirLock(str(tmp_path)).acquire()
  info = json.loads((tmp_path / workdir_lib.LOCK_FILE).read_text())
  assert info["pid"] == os.getpid() and info["host"] == socket.gethostname()
  lock.release()
  assert (tmp_path / workdir_lib.LOCK_FILE).read_text() == ""


def _write_lease(path, **fields):
  info = {"host": "another-host", "pid": 1234, "started": "2025-01-01T00:00:00+00:00",
          "command": "python -m lepton_jax.main ...", "token": "t"}
  (path / workdir_lib.LEASE_FILE).write_text(json.dumps(dict(info, **fields)))


def test_a_lease_expires_after_stale_seconds_without_renewal(tmp_path):
  now = 10_000.0
  lock = lambda: workdir_lib.WorkdirLock(str(tmp_path), stale_seconds=120,  # noqa: E731
                                         use_lease=True, clock=lambda: now)
  _write_lease(tmp_path, heartbeat=now - 30)
  with pytest.raises(UserError, match=r"pid 1234 on another-host, .*renewed 30s ago and expires "
                                      r"120s after its last renewal"):
    lock().acquire()
  _write_lease(tmp_path, heartbeat=now - 121)
  held = lock().acquire()
  assert json.loads((tmp_path / workdir_lib.LEASE_FILE).read_text())["pid"] == os.getpid()
  held.release()
  assert not (tmp_path / workdir_lib.LEASE_FILE).exists()


def test_a_lease_is_renewed_while_held(tmp_path):
  ticks = iter(range(1, 1000))
  lock = workdir_lib.WorkdirLock(str(tmp_path), heartbeat_seconds=0.01, use_lease=True,
                                 clock=lambda: float(next(ticks))).acquire()
  try:
    read = lambda: json.loads((tmp_path / workdir_lib.LEASE_FILE).read_text())["heartbeat"]  # noqa: E731
    first, deadline = read(), time.monotonic() + 10
    while read() == first and time.monotonic() < deadline:
      time.sleep(0.01)
    assert read() > first
  finally:
    lock.release()


def test_a_corrupt_lease_file_does_not_block(tmp_path):
  (tmp_path / workdir_lib.LEASE_FILE).write_text("{torn")
  workdir_lib.WorkdirLock(str(tmp_path), use_lease=True).acquire().release()


def test_object_store_workdirs_use_a_lease():
  assert workdir_lib.WorkdirLock("gs://bucket/run").use_lease
  assert not workdir_lib.WorkdirLock("/tmp/run").use_lease
