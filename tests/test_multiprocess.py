"""Two processes x 4 CPU devices (jax.distributed over localhost, gloo collectives): the losses
of one process with 8 devices, each process reading a disjoint shard of the data."""

import os
import socket
import subprocess
import sys
import time

import jax
import numpy as np

from lepton_jax import config_lib, metric_writers, train
from lepton_jax.data import order

import logged_digits

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SMALL = ["--config.model.conv_features=(8,)", "--config.model.pool=(True,)",
         "--config.model.hidden_sizes=(32,)", "--config.optimizer.warmup_steps=2",
         "--config.data.num_shards=2", "--config.imports=('logged_digits',)",
         "--config.data.name=_logged_digits"]
TIMEOUT = 300  # every process gets one: a dead peer must never hang the suite


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def launch(workdir, data_dir, steps, port, read_log=""):
  env = dict(os.environ, JAX_NUM_CPU_DEVICES="4", PYTHONUNBUFFERED="1",
             PYTHONPATH=os.pathsep.join([REPO, os.path.join(REPO, "tests")]))
  env[logged_digits.LOG_DIR] = read_log or os.path.join(os.path.dirname(workdir), "reads")
  os.makedirs(env[logged_digits.LOG_DIR], exist_ok=True)
  # main, with the logging dataset registered first (config.imports takes effect when a config
  # file is loaded, before the command line's overrides).
  main = "import sys, logged_digits; from lepton_jax import main; main.run(sys.argv[1:])"
  return [subprocess.Popen(
      [sys.executable, "-c", main, "--config", os.path.join(REPO, "configs", "quickstart.py"),
       "--workdir", workdir, f"--config.data.data_dir={data_dir}", f"--config.num_train_steps={steps}",
       "--config.log_every_steps=1", f"--config.eval_every_steps={steps}", *SMALL,
       f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2", f"--process_id={i}"],
      env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
      for i in range(2)]


def test_two_processes_log_the_losses_of_one_process_with_8_devices_from_disjoint_shards(
    data_dir, tmp_path, monkeypatch):
  monkeypatch.setenv(logged_digits.LOG_DIR, str(tmp_path))
  config = config_lib.load(os.path.join(REPO, "configs", "quickstart.py"))
  config_lib.apply_overrides(config, [("data.data_dir", data_dir), ("num_train_steps", "20"),
                                      ("log_every_steps", "1"), ("eval_every_steps", "20")] +
                             [tuple(a[len("--config."):].split("=", 1)) for a in SMALL])
  train.train_and_evaluate(config, str(tmp_path / "single"), devices=jax.devices())
  single = [r["loss"] for r in metric_writers.read_metrics(str(tmp_path / "single")) if r["split"] == "train"]

  read_log = tmp_path / "reads"
  read_log.mkdir()
  procs = launch(str(tmp_path / "multi"), data_dir, 20, free_port(), str(read_log))
  outputs = [p.communicate(timeout=TIMEOUT)[0] for p in procs]
  assert [p.returncode for p in procs] == [0, 0], outputs[0][-2000:] + outputs[1][-2000:]
  multi = [r["loss"] for r in metric_writers.read_metrics(str(tmp_path / "multi")) if r["split"] == "train"]
  assert len(multi) == 20
  np.testing.assert_allclose(multi, single, rtol=1e-5)
  assert "step 20/20" in outputs[0] and "step 20/20" not in outputs[1]  # only process 0 prints

  # Each process read its own contiguous half of the train split: 20 steps of 32 rows each,
  # more than an epoch (17 steps), so every example but a shard's remainder.
  read = [set(logged_digits.reads(read_log, "train", p)) for p in range(2)]
  for p, (lo, hi) in enumerate(order.shard_bounds(1150, 2)):
    assert read[p] <= set(range(lo, hi)) and len(set(range(lo, hi)) - read[p]) < 32
  # Evaluation read every validation example exactly once, half on each process.
  seen = [logged_digits.reads(read_log, "validation", p) for p in range(2)]
  assert not set(seen[0]) & set(seen[1]) and (len(seen[0]), len(seen[1])) == (144, 143)
  assert sorted(seen[0] + seen[1]) == list(range(287))


def test_a_killed_peer_ends_the_other_process_quickly(data_dir, tmp_path):
  procs = launch(str(tmp_path / "w"), data_dir, 100000, free_port())
  try:
    deadline = time.time() + TIMEOUT
    seen = ""
    while "step 3/" not in seen:  # training is under way on both
      assert time.time() < deadline and procs[0].poll() is None, seen[-2000:]
      seen += procs[0].stdout.readline()
    procs[1].kill()
    killed_at = time.time()
    rest = procs[0].communicate(timeout=120)[0]
    elapsed = time.time() - killed_at
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  assert procs[0].returncode != 0
  assert elapsed < 120
  assert "another task died" in rest or "unhealthy" in rest, rest[-3000:]
