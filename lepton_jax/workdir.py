"""A workdir belongs to one training run at a time.

`WorkdirLock(workdir).acquire()` makes the calling process the workdir's only
writer, or raises a UserError naming the run that holds it (host, pid, start
time, command line). Readers (predict, report, eval, export) do not take it.
Only one process of a multi-process run (process 0) takes it.

Local workdirs (and network file systems that support it) are locked with
fcntl.flock on WORKDIR/.lock: the kernel releases the lock when the holder
exits, however it exits (kill -9 included), so a dead run never leaves the
workdir locked. The file stays (deleting it would let two runs lock two
different files); it holds the latest holder's details.

Workdirs on object stores (gs://, s3://...) have no locks (nor has Windows
fcntl): there the holder writes WORKDIR/.lease.json and rewrites it every
`heartbeat_seconds` (default 30); a lease not rewritten for `stale_seconds`
(default 120) belongs to a dead run and is taken over, as is at once a lease
whose holder ran on this host and no longer exists.
Clocks of the machines involved must roughly agree (to well under
`stale_seconds`), and two runs starting within the same moment may both
believe they won: the lease guards against the common mistake (a second run
started into a busy workdir), not against a race.
"""

import contextlib
import datetime
import json
import os
import shlex
import socket
import threading
import time
import uuid

try:
  import fcntl
except ImportError:  # Windows: no flock; leases work everywhere
  fcntl = None

import jax
import numpy as np
from etils import epath
from jax.experimental import multihost_utils

from lepton_jax import provenance
from lepton_jax.errors import UserError

LOCK_FILE = ".lock"
LEASE_FILE = ".lease.json"


def holder_info() -> dict:
  """Who is taking the lock: host, pid, start time and command line of this process."""
  return {"host": socket.gethostname(), "pid": os.getpid(),
          "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
          "command": " ".join(shlex.quote(a) for a in provenance.command_line())}


def describe_holder(info: dict) -> str:
  if not info:
    return "another run (its details are not written yet)"
  return (f"pid {info.get('pid', '?')} on {info.get('host', '?')}, started "
          f"{info.get('started', '?')}: {info.get('command', '?')}")


def is_local(workdir: str) -> bool:
  return "://" not in str(workdir)


def _busy_error(workdir, info: dict, extra: str = "") -> UserError:
  return UserError(f"workdir {workdir} is in use by another run ({describe_holder(info)}){extra}; "
                   "wait for it to end or stop it, or choose another --workdir")


class WorkdirLock:
  """Exclusive ownership of a workdir by one run; a context manager, released on exit."""

  def __init__(self, workdir: str, heartbeat_seconds: float = 30.0, stale_seconds: float = 120.0,
               use_lease: bool | None = None, clock=time.time):
    self.workdir = str(workdir)
    if use_lease is None:
      use_lease = fcntl is None or not is_local(workdir)
    self.use_lease = use_lease
    self.heartbeat_seconds = heartbeat_seconds
    self.stale_seconds = stale_seconds
    self.clock = clock
    self._fd = None
    self._lease = None  # the lease dict this process wrote
    self._stop = threading.Event()
    self._thread = None

  def acquire(self) -> "WorkdirLock":
    if self.use_lease:
      self._acquire_lease()
    else:
      self._acquire_flock()
    return self

  def release(self) -> None:
    if self._fd is not None:
      os.ftruncate(self._fd, 0)
      fcntl.flock(self._fd, fcntl.LOCK_UN)
      os.close(self._fd)
      self._fd = None
    if self._lease is not None:
      self._stop.set()
      if self._thread is not None:
        self._thread.join()
      path = epath.Path(self.workdir) / LEASE_FILE
      if _read_json(path).get("token") == self._lease["token"]:
        path.unlink(missing_ok=True)
      self._lease = None

  def __enter__(self):
    return self.acquire()

  def __exit__(self, *exc):
    self.release()

  # ------------------------------------------------------------------ local: flock

  def _acquire_flock(self) -> None:
    os.makedirs(self.workdir, exist_ok=True)
    path = os.path.join(self.workdir, LOCK_FILE)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      info = _parse(os.pread(fd, 1 << 16, 0))
      os.close(fd)
      raise _busy_error(self.workdir, info) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(holder_info()).encode(), 0)  # one write: readers see all or nothing
    self._fd = fd

  # ------------------------------------------------------------------ object stores: a lease

  def _acquire_lease(self) -> None:
    path = epath.Path(self.workdir) / LEASE_FILE
    current = _read_json(path)
    age = self.clock() - _number(current.get("heartbeat")) if current else None
    if current and age < self.stale_seconds and not _dead_on_this_host(current):
      raise _busy_error(self.workdir, current,
                        f"; its lease was renewed {age:.0f}s ago and expires "
                        f"{self.stale_seconds:.0f}s after its last renewal")
    path.parent.mkdir(parents=True, exist_ok=True)
    self._lease = dict(holder_info(), token=uuid.uuid4().hex, heartbeat=self.clock())
    self._write_lease(path)
    self._stop.clear()
    self._thread = threading.Thread(target=self._renew, args=(path,), daemon=True,
                                    name="lepton-workdir-lease")
    self._thread.start()

  def _write_lease(self, path) -> None:
    """Writes the lease whole (a temp file renamed over it): a reader never sees half of one and
    takes it for no lease."""
    partial = path.parent / f"{LEASE_FILE}.{self._lease['token']}.partial"
    partial.write_text(json.dumps(self._lease))
    partial.replace(path)

  def _renew(self, path) -> None:
    while not self._stop.wait(self.heartbeat_seconds):
      self._lease["heartbeat"] = self.clock()
      try:
        self._write_lease(path)
      except Exception:  # noqa: BLE001  storage clients raise their own types; retry next beat
        pass  # only an outage longer than stale_seconds lets the lease go stale


def _number(value) -> float:
  return float(value) if isinstance(value, (int, float)) else 0.0


def _dead_on_this_host(info: dict) -> bool:
  """Whether the lease's holder ran on this host and has exited."""
  if info.get("host") != socket.gethostname() or not isinstance(info.get("pid"), int):
    return False
  try:
    os.kill(info["pid"], 0)
  except ProcessLookupError:
    return True
  except PermissionError:  # alive, another user's
    return False
  return False


def _parse(raw: bytes) -> dict:
  try:
    value = json.loads(raw.decode() or "{}")
  except (UnicodeDecodeError, ValueError):
    return {}
  return value if isinstance(value, dict) else {}


def _read_json(path) -> dict:
  try:
    return _parse(path.read_bytes())
  except (OSError, FileNotFoundError):
    return {}


@contextlib.contextmanager
def hold(workdir: str):
  """The workdir for the length of a training run: process 0 takes the lock; on several
  processes every process learns whether it did, so that all stop together when it did not."""
  lock, refused = (WorkdirLock(workdir) if jax.process_index() == 0 else None), None
  if lock is not None:
    try:
      lock.acquire()
    except UserError as e:
      refused = e
  if jax.process_count() > 1:
    anyone = bool(multihost_utils.broadcast_one_to_all(np.int32(refused is not None)))
    if anyone and refused is None:
      refused = UserError(f"workdir {workdir} is in use by another run (process 0 could not lock "
                          "it); wait for it to end or stop it, or choose another --workdir")
  if refused is not None:
    raise refused
  try:
    yield lock
  finally:
    if lock is not None:
      lock.release()
