"""lepton_jax.provenance: what a run records about its origin, and what a resume compares."""

import copy
import json
import os
import subprocess
import sys

import jax
import pytest

from lepton_jax import provenance

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _git(cwd, *args):
  return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd,
                        check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path, monkeypatch):
  """A one-commit git repository as the current directory."""
  _git(tmp_path, "init", "-q")
  (tmp_path / "config.py").write_text("x = 1\n")
  _git(tmp_path, "add", "config.py")
  _git(tmp_path, "commit", "-qm", "first")
  monkeypatch.chdir(tmp_path)
  return tmp_path


def test_collect_records_versions_code_devices_and_origin(repo):
  record = provenance.collect()
  json.dumps(record)  # goes into run.json as it is
  assert record["versions"]["jax"] == jax.__version__
  assert set(record["versions"]) == {"jax", "jaxlib", "flax", "optax", "orbax-checkpoint",
                                     "lepton_jax"}
  assert record["versions"]["flax"] and record["versions"]["orbax-checkpoint"]
  assert record["python"].count(".") == 2
  assert record["git"]["cwd"] == {"root": str(repo), "commit": _git(repo, "rev-parse", "HEAD"),
                                  "dirty": False, "diff": None}
  lepton = record["git"]["lepton_jax"]
  assert lepton["commit"] == _git(REPO, "rev-parse", "HEAD")
  assert lepton["root"] == os.path.realpath(REPO)
  assert record["devices"] == {"count": jax.device_count(), "kind": jax.devices()[0].device_kind,
                               "platform": "cpu", "process_count": 1}
  assert record["pid"] == os.getpid() and record["host"] and record["time"][:4].isdigit()
  assert record["command"][0].endswith(("python", "python3")) or "python" in record["command"][0]


def test_uncommitted_changes_are_seen_and_told_apart(repo):
  clean = provenance.git_state(str(repo))
  (repo / "config.py").write_text("x = 2\n")
  first = provenance.git_state(str(repo))
  (repo / "config.py").write_text("x = 3\n")
  second = provenance.git_state(str(repo))
  (repo / "untracked_workdir").mkdir()
  (repo / "untracked_workdir" / "metrics.jsonl").write_text("{}\n")
  assert clean["dirty"] is False and first["dirty"] and second["dirty"]
  assert first["commit"] == second["commit"] == clean["commit"]
  assert first["diff"] != second["diff"]
  assert provenance.git_state(str(repo))["diff"] == second["diff"]  # untracked files do not count


def test_outside_a_checkout_there_is_no_git_state(tmp_path):
  assert provenance.git_state(str(tmp_path)) is None


def test_differences_name_versions_code_and_devices_not_time_or_pid(repo):
  stored = provenance.collect()
  current = copy.deepcopy(stored)
  current.update(time="2099-01-01T00:00:00+00:00", pid=stored["pid"] + 1, host="elsewhere",
                 command=["python", "-m", "lepton_jax.main", "--other"])
  assert provenance.differences(stored, current) == []

  current["versions"]["jax"] = "9.9.9"
  current["devices"] = dict(stored["devices"], count=4, kind="NVIDIA H200", platform="gpu")
  (repo / "config.py").write_text("x = 5\n")
  current["git"]["cwd"] = provenance.git_state(str(repo))
  diffs = provenance.differences(stored, current)
  assert diffs[0] == f"jax {jax.__version__} -> 9.9.9"
  assert diffs[1].startswith(f"current directory's checkout {stored['git']['cwd']['commit'][:12]} -> "
                             f"{stored['git']['cwd']['commit'][:12]} with uncommitted changes")
  assert diffs[2] == (f"devices {jax.device_count()} x cpu (cpu), 1 process -> "
                      "4 x NVIDIA H200 (gpu), 1 process")
  assert len(diffs) == 3


def test_record_start_keeps_the_first_and_replaces_the_latest():
  first, second, third = ({"time": t} for t in ("1", "2", "3"))
  stored = provenance.record_start(None, first)
  assert stored == {"first": first, "latest": first}
  stored = provenance.record_start(provenance.record_start(stored, second), third)
  assert stored == {"first": first, "latest": third}


def test_summary_rows(repo):
  record = provenance.collect()
  rows = dict(provenance.summary_rows(record))
  assert rows["lepton_jax code"] == record["git"]["lepton_jax"]["commit"][:12] + (
      f" with uncommitted changes ({record['git']['lepton_jax']['diff']})"
      if record["git"]["lepton_jax"]["dirty"] else "")
  assert rows["current directory"] == f"{repo} at {record['git']['cwd']['commit'][:12]}"
  assert f"jax {jax.__version__}" in rows["versions"] and rows["versions"].startswith("python 3.")
  assert rows["devices"] == f"{jax.device_count()} x cpu (cpu), 1 process"
  assert record["host"] in rows["started"]


def test_command_line_is_as_typed_for_python_dash_m(tmp_path):
  (tmp_path / "some_tool.py").write_text(
      "import json\nfrom lepton_jax import provenance\nprint(json.dumps(provenance.command_line()))\n")
  env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
  out = subprocess.run([sys.executable, "-m", "some_tool", "--workdir", "w"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120, check=True).stdout
  assert json.loads(out) == [sys.executable, "-m", "some_tool", "--workdir", "w"]
