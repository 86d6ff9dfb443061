"""Tests for the Cloud TPU VM scripts in tpu_scripts/, against a fake gcloud."""
import json
import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS_DIR = ROOT / "tpu_scripts"
FAKE_GCLOUD = Path(__file__).resolve().with_name("fake_gcloud")
SCRIPTS = ["create.sh", "setup.sh", "run.sh", "babysit.sh", "ssh.sh", "delete.sh", "prepare_data.sh"]
ZONE = "--zone=us-central2-b"
NAME = "lepton-tpu"
RUN_REMOTE = (
    "set -o pipefail; mkdir -p ~/lepton_logs; cd ~/lepton_jax && "
    ".venv/bin/python -m lepton_jax.main --config configs/x.py:small --workdir gs://b/w "
    "--distributed{extra} 2>&1 | tee -a ~/lepton_logs/r1.worker-log"
)
DESCRIBE = ["compute", "tpus", "tpu-vm", "describe", NAME, ZONE, "--format=value(state)"]
RUN_ARGS = ["--config", "configs/x.py:small", "--workdir", "gs://b/w", "--run-id", "r1"]


@pytest.fixture
def sandbox(tmp_path):
    """A cwd, an environment with the fake gcloud first on PATH, and helpers."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "gcloud").symlink_to(FAKE_GCLOUD)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TPU_", "FAKE_GCLOUD_"))}
    env.update(
        PATH=f"{bin_dir}{os.pathsep}{env['PATH']}",
        FAKE_GCLOUD_LOG=str(tmp_path / "gcloud.log"),
        FAKE_GCLOUD_STATES=str(tmp_path / "states"),
        FAKE_GCLOUD_SSH_EXIT=str(tmp_path / "ssh_exit"),
        TPU_POLL_SECONDS="0",
        TMPDIR=str(tmp_path),
    )
    return Sandbox(tmp_path, env)


class Sandbox:
    def __init__(self, path, env):
        self.path, self.env = path, env

    def run(self, script, *args, **env):
        return subprocess.run(
            [str(SCRIPTS_DIR / script), *args],
            cwd=self.path, env={**self.env, **env}, stdin=subprocess.DEVNULL,
            capture_output=True, text=True, timeout=60,
        )

    def script(self, name, *lines):
        (self.path / name).write_text("".join(f"{line}\n" for line in lines))

    def calls(self):
        """The gcloud invocations so far, without the leading `gcloud`."""
        log = self.path / "gcloud.log"
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text().splitlines()]

    def git_repo(self):
        repo = self.path / "src"
        repo.mkdir()
        (repo / "README.md").write_text("hi\n")
        git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(repo)]
        for cmd in (["init", "-q"], ["add", "."], ["commit", "-q", "-m", "init"]):
            subprocess.run(git + cmd, check=True, capture_output=True, timeout=60)
        return repo


def dry_run_commands(stdout):
    lines = stdout.splitlines()
    assert lines and all(line.startswith("+ ") for line in lines), stdout
    return [shlex.split(line[2:]) for line in lines]


def ssh(worker, command):
    return ["compute", "tpus", "tpu-vm", "ssh", NAME, ZONE, f"--worker={worker}", f"--command={command}"]


def setup_remote(fetch):
    return (
        'set -euo pipefail; new=$HOME/lepton_jax.new; rm -rf "$new"; mkdir -p "$new"; '
        f"{fetch}; "
        'if [ -d ~/lepton_jax/.venv ]; then mv ~/lepton_jax/.venv "$new/.venv"; fi; '
        'rm -rf ~/lepton_jax; mv "$new" ~/lepton_jax; cd ~/lepton_jax; '
        "if [ ! -x .venv/bin/python ] && ! python3 -m venv .venv; then "
        "sudo apt-get update -q; sudo apt-get install -y -q python3-venv; python3 -m venv .venv; fi; "
        ".venv/bin/python -m pip install -q --upgrade pip; "
        '.venv/bin/python -m pip install -e ".[tpu]"; '
        '.venv/bin/python -c "import jax, lepton_jax; print(jax.__version__)"'
    )


REPO_FETCH = 'git clone -q https://example.com/l.git "$new"'
TAR_FETCH = 'tar -xzf ~/lepton_jax.tar.gz -C "$new"; rm -f ~/lepton_jax.tar.gz'

# (script, args, expected commands); the fake gcloud answers READY/ACTIVE and
# exit 0, so the real run issues exactly the gcloud commands of the dry run.
CASES = {
    "create": ("create.sh", [], [
        ["compute", "tpus", "tpu-vm", "create", NAME, ZONE, "--accelerator-type=v4-8",
         "--version=tpu-ubuntu2204-base"]]),
    "create-spot": ("create.sh", ["--capacity=spot", "--accelerator-type", "v4-32", "--project=p"], [
        ["compute", "tpus", "tpu-vm", "create", NAME, ZONE, "--project=p", "--accelerator-type=v4-32",
         "--version=tpu-ubuntu2204-base", "--spot"]]),
    "create-queued": ("create.sh", ["--capacity", "queued", "--name", "q1"], [
        ["compute", "tpus", "queued-resources", "create", "q1", "--node-id=q1", ZONE,
         "--accelerator-type=v4-8", "--runtime-version=tpu-ubuntu2204-base"],
        ["compute", "tpus", "queued-resources", "describe", "q1", ZONE, "--format=value(state.state)"]]),
    "delete": ("delete.sh", ["--quiet"], [["compute", "tpus", "tpu-vm", "delete", NAME, ZONE, "--quiet"]]),
    "delete-queued": ("delete.sh", ["--quiet", "--capacity=queued"], [
        ["compute", "tpus", "queued-resources", "delete", NAME, ZONE, "--force", "--quiet"]]),
    "ssh": ("ssh.sh", ["--worker=all", "--command", "ls -l"], [ssh("all", "ls -l")]),
    "setup-repo": ("setup.sh", ["--repo", "https://example.com/l.git"], [ssh("all", setup_remote(REPO_FETCH))]),
    "run": ("run.sh", RUN_ARGS + ["--data-dir=gs://b/d", "--", "--config.train.steps=10", "--config.x=a b"], [
        ssh("all", RUN_REMOTE.format(
            extra=" --config.data.data_dir=gs://b/d --config.train.steps=10 --config.x='a b'"))]),
    "prepare_data": ("prepare_data.sh", ["--dataset", "mnist", "--data-dir", "gs://b/d", "--manual-dir=/m"], [
        ssh(0, "cd ~/lepton_jax && .venv/bin/python -m lepton_jax.prepare_data "
               "--dataset mnist --data-dir gs://b/d --manual-dir /m")]),
    "babysit": ("babysit.sh", RUN_ARGS, [DESCRIBE, ssh("all", RUN_REMOTE.format(extra=""))]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_dry_run_prints_commands_and_calls_nothing(sandbox, case):
    script, args, expected = CASES[case]
    result = sandbox.run(script, "--dry-run", *args)
    assert result.returncode == 0, result.stderr
    assert dry_run_commands(result.stdout) == [["gcloud", *cmd] for cmd in expected]
    assert sandbox.calls() == []


@pytest.mark.parametrize("case", sorted(CASES))
def test_real_run_calls_gcloud(sandbox, case):
    script, args, expected = CASES[case]
    result = sandbox.run(script, *args)
    assert result.returncode == 0, result.stderr
    assert sandbox.calls() == expected


def test_setup_ships_git_archive_to_all_workers(sandbox):
    repo = sandbox.git_repo()
    tarball = str(sandbox.path / "lepton_jax-lepton-tpu.tar.gz")
    scp = ["compute", "tpus", "tpu-vm", "scp", "--recurse", tarball, f"{NAME}:lepton_jax.tar.gz",
           ZONE, "--worker=all"]
    dry = sandbox.run("setup.sh", "--dry-run", "--source-dir", str(repo))
    assert dry.returncode == 0, dry.stderr
    assert dry_run_commands(dry.stdout) == [
        ["git", "-C", str(repo), "archive", "--format=tar.gz", "-o", tarball, "HEAD"],
        ["gcloud", *scp], ["gcloud", *ssh("all", setup_remote(TAR_FETCH))]]
    assert sandbox.calls() == []
    result = sandbox.run("setup.sh", "--source-dir", str(repo))
    assert result.returncode == 0, result.stderr
    assert sandbox.calls() == [scp, ssh("all", setup_remote(TAR_FETCH))]
    assert not Path(tarball).exists()  # the local copy is cleaned up


def test_setup_without_commit_fails(sandbox):
    (sandbox.path / "empty").mkdir()
    subprocess.run(["git", "init", "-q", str(sandbox.path / "empty")], check=True, capture_output=True,
                   timeout=60)
    result = sandbox.run("setup.sh", "--source-dir", str(sandbox.path / "empty"))
    assert result.returncode == 1
    assert "no commit" in result.stderr
    assert sandbox.calls() == []


def test_create_queued_polls_until_active(sandbox):
    sandbox.script("states", "WAITING_FOR_RESOURCES", "PROVISIONING", "ACTIVE")
    result = sandbox.run("create.sh", "--capacity=queued", "--capacity", "queued")
    assert result.returncode == 0, result.stderr
    kinds = [call[2:4] for call in sandbox.calls()]
    assert kinds == [["queued-resources", "create"]] + [["queued-resources", "describe"]] * 3


def test_create_queued_stops_on_failed(sandbox):
    sandbox.script("states", "PROVISIONING", "FAILED")
    result = sandbox.run("create.sh", "--capacity=queued")
    assert result.returncode == 1
    assert "FAILED" in result.stderr


def test_run_returns_remote_status_and_keeps_local_log(sandbox):
    sandbox.script("ssh_exit", "75")
    result = sandbox.run("run.sh", *RUN_ARGS, "--log-dir", "logs")
    assert result.returncode == 75
    assert "fake worker output" in result.stdout  # streamed to the console
    assert "fake worker output" in (sandbox.path / "logs" / "r1.log").read_text()


def test_run_reads_settings_from_environment(sandbox):
    result = sandbox.run("run.sh", TPU_NAME="n2", TPU_ZONE="europe-west4-a", TPU_PROJECT="p",
                         TPU_CONFIG="c.py", TPU_WORKDIR="gs://w", TPU_RUN_ID="e1")
    assert result.returncode == 0, result.stderr
    (call,) = sandbox.calls()
    assert call[:8] == ["compute", "tpus", "tpu-vm", "ssh", "n2", "--zone=europe-west4-a", "--project=p",
                        "--worker=all"]
    assert (sandbox.path / "tpu_logs" / "e1.log").exists()


def kinds(calls):
    """Summarises gcloud calls as describe/run/setup/delete/create/other."""
    out = []
    for call in calls:
        command = next((a for a in call if a.startswith("--command=")), "")
        if "describe" in call:
            out.append("describe")
        elif "lepton_jax.main" in command:
            out.append("run")
        elif "pip install" in command:
            out.append("setup")
        elif "delete" in call or "create" in call:
            out.append(call[3])
        else:
            out.append("other")
    return out


BABYSIT_ARGS = ["--capacity=spot", *RUN_ARGS, "--repo", "https://example.com/l.git"]


def test_babysit_survives_two_preemptions(sandbox):
    sandbox.script("states", "READY", "PREEMPTED", "READY", "PREEMPTED", "READY")
    # run fails, setup ok, run fails, setup ok, run succeeds.
    sandbox.script("ssh_exit", "1", "0", "1", "0", "0")
    result = sandbox.run("babysit.sh", *BABYSIT_ARGS)
    assert result.returncode == 0, result.stderr
    recovery = ["describe", "delete", "create", "setup", "describe", "run"]
    assert kinds(sandbox.calls()) == ["describe", "run"] + recovery * 2
    creates = [call for call in sandbox.calls() if "create" in call]
    assert all("--spot" in call and "--accelerator-type=v4-8" in call for call in creates)
    assert (sandbox.path / "tpu_logs" / "r1.log").read_text().count("fake worker output") == 3


def test_babysit_stops_on_real_failure_while_ready(sandbox):
    sandbox.script("states", "READY")
    sandbox.script("ssh_exit", "3")
    result = sandbox.run("babysit.sh", *BABYSIT_ARGS)
    assert result.returncode == 3
    assert kinds(sandbox.calls()) == ["describe", "run", "describe"]
    assert "not a preemption" in result.stderr


def test_babysit_reruns_on_status_75_while_ready(sandbox):
    sandbox.script("states", "READY")
    sandbox.script("ssh_exit", "75", "0")
    result = sandbox.run("babysit.sh", *BABYSIT_ARGS)
    assert result.returncode == 0, result.stderr
    assert kinds(sandbox.calls()) == ["describe", "run", "describe", "run"]


def test_babysit_gives_up_after_max_restarts(sandbox):
    sandbox.script("states", "READY")
    sandbox.script("ssh_exit", *["75"] * 10)
    result = sandbox.run("babysit.sh", *BABYSIT_ARGS, TPU_MAX_RESTARTS="2")
    assert result.returncode == 75
    assert kinds(sandbox.calls()).count("run") == 3


def test_babysit_creates_missing_slice(sandbox):
    sandbox.script("states", "NOT_FOUND", "CREATING", "READY")
    result = sandbox.run("babysit.sh", *BABYSIT_ARGS)
    assert result.returncode == 0, result.stderr
    assert kinds(sandbox.calls()) == ["describe", "delete", "create", "setup", "describe", "describe", "run"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_prints_defaults(sandbox, script):
    result = sandbox.run(script, "--help")
    assert result.returncode == 0, result.stderr
    for default in ["lepton-tpu", "us-central2-b", "v4-8", "tpu-ubuntu2204-base", "on-demand",
                    "TPU_POLL_SECONDS", "--dry-run"]:
        assert default in result.stdout, (default, result.stdout)
    assert sandbox.calls() == []
    changed = sandbox.run(script, "--help", TPU_ZONE="europe-west4-a")
    assert "europe-west4-a" in changed.stdout


@pytest.mark.parametrize("script,default", [
    ("run.sh", "./tpu_logs"), ("babysit.sh", "TPU_MAX_RESTARTS     (20)"), ("ssh.sh", "TPU_WORKER           (0)"),
    ("setup.sh", "TPU_PYTHON           (python3"), ("create.sh", "TPU_POLL_SECONDS     (0"),
])
def test_help_prints_script_defaults(sandbox, script, default):
    assert default in sandbox.run(script, "--help").stdout


@pytest.mark.parametrize("script", SCRIPTS)
def test_bad_flag_is_a_one_line_error(sandbox, script):
    result = sandbox.run(script, "--no-such-flag")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: "), result.stderr
    assert "--no-such-flag" in result.stderr
    assert sandbox.calls() == []


@pytest.mark.parametrize("script,args,message", [
    ("create.sh", ["--capacity=preemptible"], "--capacity"),
    ("create.sh", ["--zone"], "--zone requires a value"),
    ("create.sh", ["--poll-seconds=soon"], "--poll-seconds"),
    ("run.sh", ["--workdir", "gs://b/w"], "--config is required"),
    ("run.sh", ["--config", "c.py"], "--workdir is required"),
    ("run.sh", ["--config", "c.py", "--workdir", "/tmp/w"], "gs://"),
    ("babysit.sh", ["--config", "c.py", "--workdir", "/tmp/w"], "gs://"),
    ("babysit.sh", RUN_ARGS + ["--max-restarts=many"], "--max-restarts"),
    ("ssh.sh", ["--worker", "first"], "--worker"),
    ("prepare_data.sh", ["--data-dir", "gs://b/d"], "--dataset is required"),
    ("setup.sh", ["--ref", "v1"], "--ref needs --repo"),
])
def test_usage_errors_exit_2(sandbox, script, args, message):
    result = sandbox.run(script, *args)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr
    assert sandbox.calls() == []


def test_run_allows_local_workdir_when_asked(sandbox):
    result = sandbox.run("run.sh", "--config", "c.py", "--workdir", "/tmp/w", "--allow-local-workdir",
                         "--dry-run")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("script", SCRIPTS + ["common.sh"])
def test_scripts_are_strict_bash(script):
    lines = (SCRIPTS_DIR / script).read_text().splitlines()
    assert lines[0] == "#!/usr/bin/env bash"
    assert "set -euo pipefail" in lines
    if script != "common.sh":
        assert os.access(SCRIPTS_DIR / script, os.X_OK)


def test_shellcheck_is_clean():
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (apt-get install -y shellcheck)")
    scripts = sorted(p.name for p in SCRIPTS_DIR.glob("*.sh"))
    result = subprocess.run(["shellcheck", "-x", *scripts], cwd=SCRIPTS_DIR,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout == "", result.stdout + result.stderr
