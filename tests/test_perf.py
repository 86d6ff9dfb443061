import datetime
import glob
import json
import os
import types

import jax
import jax.numpy as jnp
import pytest

from lepton_jax import config_lib, metric_writers, perf, train


def test_step_flops_counts_a_matmul():
  compiled = jax.jit(lambda a, b: a @ b).lower(jnp.ones((64, 32)), jnp.ones((32, 16))).compile()
  assert perf.step_flops(compiled) == 2 * 64 * 32 * 16


def test_peak_flops_sources(tmp_path, monkeypatch):
  monkeypatch.setenv(perf.CACHE_DIR_ENV, str(tmp_path))
  assert perf.peak_flops(jax.devices()[0], 5e12) == (5e12, "config perf.peak_flops")
  tpu = types.SimpleNamespace(device_kind="TPU v5 lite", platform="tpu")
  assert perf.peak_flops(tpu) == (197e12, "data sheet (TPU v5 lite)")
  h200 = types.SimpleNamespace(device_kind="NVIDIA H200", platform="gpu")
  assert perf.peak_flops(h200) == (989e12, "data sheet (NVIDIA H200)")
  monkeypatch.setattr(perf, "measured_matmul_flops", lambda device: 3e9)
  value, source = perf.peak_flops(jax.devices()[0])
  assert value == 3e9 and source.startswith("measured f32 matmul, cached in")


def test_measured_peak_is_cached_once_per_machine(tmp_path, monkeypatch):
  monkeypatch.setenv(perf.CACHE_DIR_ENV, str(tmp_path / "cache"))
  cpu = jax.devices()[0]
  assert perf.cached_measured_peak(cpu, measure=lambda d: 2e9)[0] == 2e9

  def must_not_measure(device):
    raise AssertionError("measured again although a cached figure exists")

  value, source = perf.cached_measured_peak(cpu, measure=must_not_measure)
  assert value == 2e9 and source == f"cached measurement from {datetime.date.today().isoformat()}"
  entries = json.loads((tmp_path / "cache" / perf.PEAK_CACHE_FILE).read_text())
  assert list(entries) == [perf.machine_key(cpu)]
  assert cpu.device_kind in perf.machine_key(cpu) and jax.__version__ in perf.machine_key(cpu)
  # Another machine (here: another device kind) measures for itself.
  other = types.SimpleNamespace(device_kind="some other cpu", platform="cpu")
  assert perf.cached_measured_peak(other, measure=lambda d: 7e9) == (
      7e9, f"measured f32 matmul, cached in {tmp_path / 'cache' / perf.PEAK_CACHE_FILE}")


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"KEY": {"flops": "fast"}}',
                                     '{"KEY": {"flops": -1, "date": "2020-01-01"}}'])
def test_a_corrupt_cache_is_measured_again(tmp_path, monkeypatch, content):
  monkeypatch.setenv(perf.CACHE_DIR_ENV, str(tmp_path))
  cpu = jax.devices()[0]
  (tmp_path / perf.PEAK_CACHE_FILE).write_text(content.replace("KEY", perf.machine_key(cpu)))
  value, source = perf.cached_measured_peak(cpu, measure=lambda d: 4e9)
  assert value == 4e9 and "cached in" in source
  assert perf.cached_measured_peak(cpu, measure=lambda d: 1.0)[0] == 4e9


def test_an_unwritable_cache_dir_still_gives_a_figure(tmp_path, monkeypatch):
  blocker = tmp_path / "file"
  blocker.write_text("not a directory")
  monkeypatch.setenv(perf.CACHE_DIR_ENV, str(blocker / "cache"))
  assert perf.cached_measured_peak(jax.devices()[0], measure=lambda d: 5e9) == (
      5e9, "measured f32 matmul (the cache dir is not writable)")


def test_measured_peak_is_the_best_run_not_the_median(monkeypatch):
  """A busy moment slows some runs down; the figure is the fastest run's."""
  durations = iter([0.5, 0.5, 0.1, 0.5, 0.5])  # seconds per run of `per_run` products
  clock = {"now": 0.0}

  def perf_counter():
    clock["now"] += next(durations) if clock.setdefault("started", False) else 0.0
    clock["started"] = not clock["started"]
    return clock["now"]

  monkeypatch.setattr(perf.time, "perf_counter", perf_counter)
  value = perf.measured_matmul_flops(jax.devices()[0], n=64, repeats=5, per_run=1)
  assert value == pytest.approx(2 * 64**3 / 0.1)


def test_live_figures_and_profile_are_written(quick_config, tmp_path, monkeypatch):
  monkeypatch.setenv(perf.CACHE_DIR_ENV, str(tmp_path / "cache"))
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
