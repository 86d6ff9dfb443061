"""Shared by the checkpoint tests: a tiny config, reading checkpoints with plain
Orbax, comparing runs, and running the CLI in a subprocess."""

import os
import subprocess
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICKSTART = os.path.join(REPO, "configs", "quickstart.py")
# Measured, not computed: they differ from run to run.
TIMING_FIELDS = {"examples_per_sec", "step_time_ms", "input_wait_fraction", "compile_seconds",
                 "mfu", "memory_bytes", "tokens_per_sec"}


def is_timing(key: str) -> bool:
  return key in TIMING_FIELDS or any(s in key for s in ("per_sec", "_ms", "seconds", "fraction"))

# A tiny CNN on digits: a train step is a few milliseconds, a checkpoint a few KB.
TINY = {
    "num_train_steps": 30, "log_every_steps": 5, "eval_every_steps": 10,
    "checkpoint_every_steps": 10, "model.conv_features": "(8,)", "model.pool": "(True,)",
    "model.hidden_sizes": "(16,)", "optimizer.warmup_steps": 5,
    "perf.peak_flops": 1e11,  # for MFU; saves measuring a matmul at every start
}


def overrides(data_dir: str, **changes) -> list[tuple[str, str]]:
  values = dict(TINY, **{k.replace("__", "."): v for k, v in changes.items()})
  values["data.data_dir"] = data_dir
  return [(k, str(v)) for k, v in values.items()]


def tiny_config(data_dir: str, **changes):
  """The quickstart config shrunk to TINY; `a__b=v` overrides config key a.b."""
  from lepton_jax import config_lib
  config = config_lib.load(QUICKSTART)
  config_lib.apply_overrides(config, overrides(data_dir, **changes))
  return config


def cli_args(workdir: str, data_dir: str, **changes) -> list[str]:
  return ["--config", QUICKSTART, "--workdir", str(workdir)] + [
      f"--config.{k}={v}" for k, v in overrides(data_dir, **changes)]


def subprocess_env(cache_dir: str | None = None) -> dict:
  """One CPU device, and a shared persistent compilation cache (faster restarts)."""
  env = dict(os.environ)
  env.pop("JAX_NUM_CPU_DEVICES", None)
  env.pop("XLA_FLAGS", None)
  env["PYTHONUNBUFFERED"] = "1"
  env["PYTHONFAULTHANDLER"] = "1"  # a crash prints every thread's stack
  if cache_dir:
    env.update(JAX_COMPILATION_CACHE_DIR=str(cache_dir),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
               JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
  return env


def start_cli(workdir, data_dir, log_path, cache_dir=None, **changes) -> subprocess.Popen:
  log = open(log_path, "ab")
  return subprocess.Popen([sys.executable, "-m", "lepton_jax.main"] + cli_args(workdir, data_dir,
                                                                               **changes),
                          cwd=REPO, env=subprocess_env(cache_dir), stdout=log,
                          stderr=subprocess.STDOUT)


# ----------------------------------------------------------- reading results

def read_state(workdir, step: int | None = None) -> tuple[int, dict]:
  """(step, {path: np.ndarray}) of a checkpoint's whole state, read with Orbax alone."""
  import jax
  import orbax.checkpoint as ocp
  from etils import epath
  directory = epath.Path(workdir) / "checkpoints"
  if step is None:
    step = max(int(p.name) for p in directory.iterdir() if p.name.isdigit())
  item = directory / str(step) / "state"
  handler = ocp.PyTreeCheckpointHandler()
  try:
    metadata = handler.metadata(item)
  finally:
    handler.close()
  tree = getattr(metadata, "tree", metadata)
  restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
  with ocp.PyTreeCheckpointer() as checkpointer:
    state = checkpointer.restore(item, args=ocp.args.PyTreeRestore(restore_args=restore_args))
  flat = jax.tree_util.tree_flatten_with_path(state)[0]
  return step, {jax.tree_util.keystr(p): np.asarray(v) for p, v in flat}


def assert_states_equal(a: dict, b: dict) -> None:
  assert sorted(a) == sorted(b)
  for key in a:
    assert a[key].dtype == b[key].dtype and a[key].shape == b[key].shape, key
    assert np.array_equal(a[key], b[key]), f"{key} differs"


def metric_rows(workdir) -> list[dict]:
  """metrics.jsonl without the timing fields (those differ from run to run)."""
  from lepton_jax.metric_writers import read_metrics
  return [{k: v for k, v in row.items() if not is_timing(k)} for row in read_metrics(workdir)]


def assert_same_metrics(resumed, reference) -> None:
  rows, ref = metric_rows(resumed), metric_rows(reference)
  keys = [(r["step"], r["split"]) for r in rows]
  assert len(keys) == len(set(keys)), "a step was logged twice"
  assert keys == [(r["step"], r["split"]) for r in ref]
  for row, want in zip(rows, ref):
    assert row == want, (row, want)


def checkpoint_steps(workdir) -> list[int]:
  from etils import epath
  directory = epath.Path(workdir) / "checkpoints"
  return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit())


def free_port() -> int:
  import socket
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def start_two_processes(workdir, data_dir, log_dir, **changes) -> list[subprocess.Popen]:
  """One run as 2 processes x 1 CPU device (jax.distributed over localhost)."""
  port = free_port()
  procs = []
  for i in range(2):
    env = dict(subprocess_env(), JAX_NUM_CPU_DEVICES="1")
    log = open(os.path.join(log_dir, f"process{i}.log"), "ab")
    procs.append(subprocess.Popen(
        [sys.executable, "-m", "lepton_jax.main"] + cli_args(workdir, data_dir, **changes) +
        [f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2", f"--process_id={i}"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT))
  return procs


def prepare_data(data_dir: str) -> None:
  """Prepares the tiny config's dataset here, before subprocesses that would race to do it."""
  from lepton_jax import registry
  config = tiny_config(data_dir)
  registry.get("dataset", config.data.name)(config.data).info()


class StopAt:
  """A stop_requested callable: true at its `k`-th call after `start` (the loop asks once per
  dispatch, which is once per step unless steps_per_dispatch > 1)."""

  def __init__(self, k: int, start: int = 0):
    self.step, self.k = start, k

  def __call__(self) -> bool:
    self.step += 1
    return self.step == self.k
