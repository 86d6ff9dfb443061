"""Two processes x 4 CPU devices (jax.distributed over localhost, gloo collectives)."""

import os
import socket
import subprocess
import sys
import time

import jax
import numpy as np

from lepton_jax import config_lib, metric_writers, train
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SMALL = ["--config.model.conv_features=(8,)", "--config.model.pool=(True,)",
         "--config.model.hidden_sizes=(32,)", "--config.optimizer.warmup_steps=2",
         "--config.data.num_shards=2"]
TIMEOUT = 300  # every process gets one: a dead peer must never hang the suite


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def launch(workdir, data_dir, steps, port):
  env = dict(os.environ, JAX_NUM_CPU_DEVICES="4", PYTHONUNBUFFERED="1")
  return [subprocess.Popen(
      [sys.executable, "-m", "lepton_jax.main", "--config", os.path.join(REPO, "configs", "quickstart.py"),
       "--workdir", workdir, f"--config.data.data_dir={data_dir}", f"--config.num_train_steps={steps}",
       "--config.log_every_steps=1", f"--config.eval_every_steps={steps}", *SMALL,
       f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2", f"--process_id={i}"],
      env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
      for i in range(2)]


def test_two_processes_log_the_losses_of_one_process_with_8_devices(data_dir, tmp_path):
  config = config_lib.load(os.path.join(REPO, "configs", "quickstart.py"))
  config_lib.apply_overrides(config, [("data.data_dir", data_dir), ("num_train_steps", "20"),
                                      ("log_every_steps", "1"), ("eval_every_steps", "20")] +
                             [tuple(a[len("--config."):].split("=", 1)) for a in SMALL])
  train.train_and_evaluate(config, str(tmp_path / "single"), devices=jax.devices())
  single = [r["loss"] for r in metric_writers.read_metrics(str(tmp_path / "single")) if r["split"] == "train"]

  procs = launch(str(tmp_path / "multi"), data_dir, 20, free_port())
  outputs = [p.communicate(timeout=TIMEOUT)[0] for p in procs]
  assert [p.returncode for p in procs] == [0, 0], outputs[0][-2000:] + outputs[1][-2000:]
  multi = [r["loss"] for r in metric_writers.read_metrics(str(tmp_path / "multi")) if r["split"] == "train"]
  assert len(multi) == 20
  np.testing.assert_allclose(multi, single, rtol=1e-5)
  assert "step 20/20" in outputs[0] and "step 20/20" not in outputs[1]  # only process 0 prints


def test_processes_read_disjoint_halves(data_dir):
  import ml_collections
  from lepton_jax.data import pipeline, sklearn_datasets
  dataset = sklearn_datasets.Digits(ml_collections.ConfigDict({"data_dir": data_dir}))
  halves = [pipeline.TrainData(dataset, "train", 64, 0, pipeline.ShardLayout.create(2, p, 2))
            for p in range(2)]
  images = [{tuple(x.ravel()) for x in h.shards[s]["image"]} for h in halves for s in h.shards]
  assert len(images) == 2 and not images[0] & images[1]
  assert sum(len(h.shards[s]["label"]) for h in halves for s in h.shards) == 1437


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
