"""run_record.prepare: the workdir check that every process of a run makes at start-up."""

import subprocess
import sys

import pytest

from lepton_jax import run_record
from lepton_jax.errors import UserError

PROBE_LOOP = """
import sys
from lepton_jax import run_record
for _ in range(int(sys.argv[2])):
  run_record.prepare(sys.argv[1])
"""


def test_processes_that_check_one_workdir_at_once_do_not_trip_each_other(tmp_path):
  # The processes of a multi-host run start together on the same fresh workdir.
  workdir = str(tmp_path / "run")
  procs = [subprocess.Popen([sys.executable, "-c", PROBE_LOOP, workdir, "3000"],
                            stderr=subprocess.PIPE, text=True) for _ in range(2)]
  errors = [p.communicate(timeout=120)[1] for p in procs]
  assert [p.returncode for p in procs] == [0, 0], errors
  assert sorted(p.name for p in (tmp_path / "run").iterdir()) == []  # no probe left behind


def test_a_workdir_that_cannot_be_written_is_one_line(tmp_path):
  blocker = tmp_path / "file"
  blocker.write_text("not a directory")
  with pytest.raises(UserError, match=r"^workdir '.*' is not writable \(.*\); choose another --workdir$"):
    run_record.prepare(str(blocker / "run"))
