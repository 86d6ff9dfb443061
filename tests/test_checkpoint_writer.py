"""How checkpoints are written: the lean Orbax handler and the idle-priority writer thread."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

import checkpoint_testlib as lib
from lepton_jax.checkpoint import manager as checkpointing, writer as checkpoint_writer
from lepton_jax.errors import UserError
from test_checkpointing import abstract_of, toy_state

linux_only = pytest.mark.skipif(not checkpoint_writer.lowering_supported(),
                                reason="per-thread priorities are Linux's")


def test_state_is_plain_orbax_without_the_side_files(tmp_path):
  checkpointer = checkpointing.Checkpointer(str(tmp_path), cleanup_tmp=True)
  checkpointer.save(7, toy_state(7))
  checkpointer.close()
  item = tmp_path / "checkpoints" / "7" / "state"
  assert (item / "_METADATA").exists()
  assert not (item / "_sharding").exists() and not (item / "array_metadatas").exists()
  # Orbax alone, onto a target's shardings ...
  target = abstract_of(toy_state(7))
  with ocp.PyTreeCheckpointer() as reader:
    restored = reader.restore(item, args=ocp.args.PyTreeRestore(
        item=target, restore_args=ocp.checkpoint_utils.construct_restore_args(target)))
  want = toy_state(7)
  for got, expected in zip(jax.tree.leaves(restored), jax.tree.leaves(want)):
    assert isinstance(got, jax.Array)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(expected))
  # ... and as NumPy arrays without one.
  plain = ocp.StandardCheckpointer().restore(item)
  np.testing.assert_array_equal(plain["params"]["dense"]["kernel"],
                                np.asarray(want.params["dense"]["kernel"]))


def test_compression_is_a_choice(tmp_path):
  sizes = {}
  for compress in (False, True):
    workdir = tmp_path / str(compress)
    checkpointer = checkpointing.Checkpointer(str(workdir), compress=compress, cleanup_tmp=True)
    state = toy_state(3).replace(params={"zeros": jax.numpy.zeros((256, 256))})
    checkpointer.save(3, state)
    checkpointer.wait()
    restored = checkpointer.restore(abstract_of(state), step=3)
    checkpointer.close()
    np.testing.assert_array_equal(np.asarray(restored.params["zeros"]), 0)
    item = workdir / "checkpoints" / "3" / "state"
    sizes[compress] = sum(f.stat().st_size for f in item.rglob("*") if f.is_file())
  assert sizes[True] < sizes[False] / 4, sizes  # 256 KB of zeros shrink to almost nothing


@pytest.mark.parametrize("value", ["lowest", "IDLE", ""])
def test_an_unknown_writer_priority_is_a_user_error(tmp_path, value):
  with pytest.raises(UserError,
                     match=r"checkpoint.writer_priority=.*choose one of auto, low, idle, normal"):
    checkpointing.Checkpointer(str(tmp_path), writer_priority=value)


def test_auto_priority_is_low_on_the_cpu_backend_only():
  expected = "low" if (jax.default_backend() == "cpu" and
                       checkpoint_writer.lowering_supported()) else "normal"
  assert checkpoint_writer.resolve_priority("auto") == expected
  for explicit in ("low", "idle", "normal"):
    assert checkpoint_writer.resolve_priority(explicit) == explicit


# One process per priority: TensorStore's thread pool is created once per process, by the
# first thread that needs it, and its threads keep the policy they were created with.
POLICIES_SCRIPT = """
import json, os, sys, threading
sys.path.insert(0, {tests!r})
import jax
from lepton_jax.checkpoint import manager as checkpointing
from test_checkpointing import abstract_of, toy_state
checkpointer = checkpointing.Checkpointer(sys.argv[1], writer_priority=sys.argv[2], cleanup_tmp=True)
checkpointer.save(1, toy_state(1))
checkpointer.wait()
checkpointer.restore(abstract_of(toy_state(1)), step=1)
checkpointer.save(2, toy_state(2))
checkpointer.wait()
names = {{}}
for tid in os.listdir("/proc/self/task"):
  try:
    comm = open(f"/proc/self/task/{{tid}}/comm").read().strip()
    lowered = (os.sched_getscheduler(int(tid)) == os.SCHED_IDLE
               or os.getpriority(os.PRIO_PROCESS, int(tid)) > 0)
  except (FileNotFoundError, ProcessLookupError, OSError):  # a thread that just ended
    continue
  names.setdefault(comm, []).append(lowered)
writer = checkpointer._writer.call(lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
print(json.dumps({{"threads": names, "writer_nice": writer,
                  "main": os.getpriority(os.PRIO_PROCESS, threading.get_native_id())}}))
checkpointer.close()
"""


def thread_policies(workdir, priority) -> dict:
  script = POLICIES_SCRIPT.format(tests=os.path.dirname(os.path.abspath(__file__)))
  out = subprocess.run([sys.executable, "-c", script, str(workdir), priority],
                       capture_output=True, text=True, timeout=300, env=lib.subprocess_env(),
                       cwd=lib.REPO)
  assert out.returncode == 0, out.stderr[-3000:]
  return json.loads(out.stdout.strip().splitlines()[-1])


@linux_only
def test_orbax_and_tensorstore_threads_run_at_low_priority(tmp_path):
  low = thread_policies(tmp_path / "low", "low")
  assert low["writer_nice"] == checkpoint_writer.LOW_NICE and low["main"] == 0
  workers = low["threads"].get("ts_pool_worker", [])
  assert workers and all(workers), low  # TensorStore's pool descends from the writer thread
  # XLA's compute threads were started by the main thread: training keeps its priority.
  assert not any(any(v) for k, v in low["threads"].items() if k.startswith("tf_XLA")), low

  normal = thread_policies(tmp_path / "normal", "normal")
  assert not any(any(v) for v in normal["threads"].values()), normal


def test_idle_writer_saves_a_snapshot_so_the_state_may_be_donated(tmp_path):
  checkpointer = checkpointing.Checkpointer(str(tmp_path), writer_priority="idle",
                                            cleanup_tmp=True)
  state = toy_state(5)
  expected = jax.tree.map(np.asarray, state)
  checkpointer.save(5, state)
  for leaf in jax.tree.leaves(state):  # what the next (donating) train step does to it
    leaf.delete()
  checkpointer.wait()
  restored = checkpointer.restore(abstract_of(toy_state(5)), step=5)
  checkpointer.close()
  for got, want in zip(jax.tree.leaves(restored), jax.tree.leaves(expected)):
    np.testing.assert_array_equal(np.asarray(got), want)


def test_a_failed_background_save_is_raised_by_wait_and_reported_by_close(tmp_path, capsys):
  checkpointer = checkpointing.Checkpointer(str(tmp_path), writer_priority="idle",
                                            cleanup_tmp=True)

  def disk_full(*args, **kwargs):
    raise OSError(28, "No space left on device")

  checkpointer.manager.save = disk_full
  checkpointer.save(1, toy_state(1))  # returns before the writer tried
  with pytest.raises(UserError, match=r"checkpoint 1 could not be saved \(OSError: .*No space left"):
    checkpointer.wait()
  checkpointer.save(2, toy_state(2))
  checkpointer.close()  # in a `finally`: warns instead of raising over the first error
  assert "warning: checkpoint 2 could not be saved (OSError: [Errno 28] No space left" in \
      capsys.readouterr().err
