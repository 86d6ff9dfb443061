import glob
import os
import types

import jax
import jax.numpy as jnp
import pytest

from lepton_jax import config_lib, metric_writers, perf, train


def test_step_flops_counts_a_matmul():
  compiled = jax.jit(lambda a, b: a @ b).lower(jnp.ones((64, 32)), jnp.ones((32, 16))).compile()
  assert perf.step_flops(compiled) == 2 * 64 * 32 * 16


def test_peak_flops_sources():
  assert perf.peak_flops(jax.devices()[0], 5e12) == (5e12, "config perf.peak_flops")
  tpu = types.SimpleNamespace(device_kind="TPU v5 lite", platform="tpu")
  assert perf.peak_flops(tpu) == (197e12, "data sheet (TPU v5 lite)")
  value, source = perf.peak_flops(jax.devices()[0])
  assert source == "measured f32 matmul" and value > 1e8


def test_live_figures_and_profile_are_written(quick_config, tmp_path):
  config_lib.apply_overrides(quick_config, [("perf.profile_start_step", "12"),
                                            ("perf.profile_num_steps", "3")])
  workdir = str(tmp_path)
  train.train_and_evaluate(quick_config, workdir, devices=jax.devices()[:1])
  rows = [r for r in metric_writers.read_metrics(workdir) if r["split"] == "train"]
  assert "compile_seconds" in rows[0] and rows[0]["compile_seconds"] > 0
  for row in rows:
    assert row["examples_per_sec"] > 0 and row["step_time_ms"] > 0
    assert 0 <= row["input_wait_fraction"] < 1
    assert 0 < row["mfu"]
  assert glob.glob(os.path.join(workdir, "profile", "plugins", "profile", "*", "*.xplane.pb"))


@pytest.mark.parametrize("on_device_max_mb", [256, 0])
def test_bench_prints_medians(quick_config, data_dir, capsys, on_device_max_mb):
  from lepton_jax import bench
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  bench.main(["--config", os.path.join(repo, "configs", "quickstart.py"),
              f"--config.data.data_dir={data_dir}", "--config.model.conv_features=(8,)",
              "--config.model.pool=(True,)", "--config.optimizer.warmup_steps=2",
              f"--config.data.on_device_max_mb={on_device_max_mb}",
              "--steps", "5", "--repeats", "2", "--rounds", "1"])
  lines = capsys.readouterr().out.splitlines()
  for part in ("step", "loop"):
    assert any(line.startswith(part) and "examples/s" in line for line in lines), lines
  input_line = next(line for line in lines if line.startswith("input"))
  if on_device_max_mb:
    assert "the split is on the devices" in input_line
  else:
    assert "examples/s" in input_line
  assert any(line.startswith("loop / bare step throughput:") for line in lines)


def test_bench_reports_a_bad_flag_as_one_line_error():
  from lepton_jax import bench
  from lepton_jax.errors import UserError
  with pytest.raises(UserError, match=r"^unrecognized arguments: --bogus \(see --help\)$"):
    bench.main(["--config", "configs/quickstart.py", "--bogus"])
