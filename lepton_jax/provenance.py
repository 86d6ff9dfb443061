"""What made a run: command line, versions, git commits, devices, host and time.

`collect()` gathers the facts of this process; run.json keeps the first start's
and the latest start's (`record_start`); on resume, `differences` lists what
changed in ways that can change results (versions, code, devices), and
`summary_rows` are the lines of summary.md.
"""

import datetime
import hashlib
import importlib.metadata
import os
import platform
import shlex
import socket
import subprocess
import sys

import jax

# Distributions whose versions a run records: {name shown: distribution name}.
PACKAGES = {"jax": "jax", "jaxlib": "jaxlib", "flax": "flax", "optax": "optax",
            "orbax-checkpoint": "orbax-checkpoint", "lepton_jax": "lepton-jax"}
GIT_TIMEOUT_SECONDS = 10


def _version(distribution: str) -> str | None:
  try:
    return importlib.metadata.version(distribution)
  except importlib.metadata.PackageNotFoundError:
    return None


def _git(path: str, *args: str) -> str | None:
  try:
    out = subprocess.run(["git", "-C", path, *args], capture_output=True, text=True,
                         timeout=GIT_TIMEOUT_SECONDS, check=False)
  except (OSError, subprocess.TimeoutExpired):  # no git, or a hung file system
    return None
  return out.stdout.strip() if out.returncode == 0 else None


def git_state(path: str) -> dict | None:
  """{root, commit, dirty, diff} of the git checkout holding `path`; None outside one. `dirty`:
  tracked files differ from the commit (untracked files, such as workdirs, do not count); `diff`:
  a hash of those differences, so that two starts with the same uncommitted changes compare equal."""
  root = _git(path, "rev-parse", "--show-toplevel")
  commit = _git(path, "rev-parse", "HEAD") if root else None
  if not commit:
    return None
  diff = _git(path, "diff", "HEAD", "--no-ext-diff", "--binary")
  return {"root": root, "commit": commit, "dirty": bool(diff) if diff is not None else None,
          "diff": hashlib.sha256(diff.encode()).hexdigest()[:16] if diff else None}


def command_line() -> list[str]:
  """This process's command line as typed: `python -m lepton_jax.main ...` rather than the path of
  main.py that sys.argv holds."""
  spec = getattr(sys.modules.get("__main__"), "__spec__", None)
  if spec is not None and spec.name and not spec.name.startswith("__"):
    return [sys.executable, "-m", spec.name.removesuffix(".__main__")] + sys.argv[1:]
  return [sys.executable] + sys.argv


def device_facts() -> dict:
  devices = jax.devices()
  return {"count": len(devices), "kind": devices[0].device_kind, "platform": devices[0].platform,
          "process_count": jax.process_count()}


def collect() -> dict:
  """The facts of this process (JSON-serializable)."""
  package_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  return {
      "command": command_line(),
      "cwd": os.getcwd(),
      "python": platform.python_version(),
      "versions": {name: _version(dist) for name, dist in PACKAGES.items()},
      "git": {"lepton_jax": git_state(package_dir), "cwd": git_state(os.getcwd())},
      "devices": device_facts(),
      "host": socket.gethostname(),
      "pid": os.getpid(),
      "time": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
  }


def record_start(stored: dict | None, current: dict) -> dict:
  """run.json's provenance after a start: the first start's record kept, the latest replaced."""
  first = (stored or {}).get("first") or current
  return {"first": first, "latest": current}


def _describe_git(state: dict | None) -> str:
  if not state:
    return "not a git checkout"
  if not state.get("dirty"):
    return state["commit"][:12]
  return f"{state['commit'][:12]} with uncommitted changes ({state.get('diff')})"


def _describe_devices(devices: dict) -> str:
  processes = devices.get("process_count", 1)
  return (f"{devices.get('count')} x {devices.get('kind')} ({devices.get('platform')}), "
          f"{processes} process{'es' if processes != 1 else ''}")


def _code(state: dict | None) -> tuple:
  return (state or {}).get("commit"), (state or {}).get("diff")


def differences(stored: dict, current: dict) -> list[str]:
  """What changed between two records in ways that can change results: Python and package
  versions, the code's git commits (and uncommitted changes), the devices. Time, pid, host and
  command line are not compared (a resume changes them for good reasons)."""
  out = []
  if stored.get("python") != current.get("python"):
    out.append(f"python {stored.get('python')} -> {current.get('python')}")
  old_versions, new_versions = stored.get("versions", {}), current.get("versions", {})
  for name in PACKAGES:
    if old_versions.get(name) != new_versions.get(name):
      out.append(f"{name} {old_versions.get(name)} -> {new_versions.get(name)}")
  for where in ("lepton_jax", "cwd"):
    old, new = stored.get("git", {}).get(where), current.get("git", {}).get(where)
    if _code(old) != _code(new):
      label = "lepton_jax checkout" if where == "lepton_jax" else "current directory's checkout"
      out.append(f"{label} {_describe_git(old)} -> {_describe_git(new)}")
  old_dev, new_dev = stored.get("devices", {}), current.get("devices", {})
  if any(old_dev.get(k) != new_dev.get(k) for k in ("count", "kind", "platform", "process_count")):
    out.append(f"devices {_describe_devices(old_dev)} -> {_describe_devices(new_dev)}")
  return out


def summary_rows(record: dict) -> list[tuple[str, str]]:
  """(label, value) rows describing one record, for summary.md."""
  versions = record.get("versions", {})
  git = record.get("git", {})
  rows = [("command", " ".join(shlex.quote(a) for a in record.get("command", []))),
          ("started", f"{record.get('time')} on {record.get('host')}"),
          ("versions", ", ".join([f"python {record.get('python')}"] +
                                 [f"{k} {v}" for k, v in versions.items() if v])),
          ("lepton_jax code", _describe_git(git.get("lepton_jax")))]
  cwd = git.get("cwd")
  if cwd and cwd.get("root") != (git.get("lepton_jax") or {}).get("root"):
    rows.append(("current directory", f"{cwd['root']} at {_describe_git(cwd)}"))
  rows.append(("devices", _describe_devices(record.get("devices", {}))))
  return rows
