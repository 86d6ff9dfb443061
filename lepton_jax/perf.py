"""Efficiency figures shown live: FLOPs per step, peak FLOP/s, MFU, memory, traces.

MFU (model FLOPs utilization) = model FLOPs of a step per device / (step time x
the device's peak FLOP/s). Model FLOPs come from `lepton_jax.flops` (counted
from the traced step, the same on every backend); `step_flops` is XLA's count of
a compiled step, which leaves out library calls (cuBLAS, cuDNN) and so
undercounts on GPUs. Peak FLOP/s, in this order: `perf.peak_flops` if set; a
table of known accelerators (dense bf16 figures of their data sheets); on CPUs,
a float32 matrix product measured once per machine (best of several runs, a
practical peak that makes CPU MFU a relative figure) and cached in
$LEPTON_JAX_CACHE_DIR (default ~/.cache/lepton_jax, or $XDG_CACHE_HOME/lepton_jax)
under the CPU model, core count, jax version and device kind; delete the file to
measure again.
"""

import datetime
import json
import os
import platform
import time

import jax
import jax.numpy as jnp
from etils import epath

# Dense bf16 peak FLOP/s per chip/device, from the vendors' data sheets.
PEAK_FLOPS = {
    "TPU v2": 45e12 / 2,  # per core; a v2 chip has 2
    "TPU v3": 123e12 / 2,
    "TPU v4": 275e12,
    "TPU v5 lite": 197e12,
    "TPU v5e": 197e12,
    "TPU v5p": 459e12,
    "TPU v5": 459e12,
    "TPU v6 lite": 918e12,
    "TPU v6e": 918e12,
    "NVIDIA H100": 989e12,
    "NVIDIA H200": 989e12,
    "NVIDIA A100": 312e12,
    "NVIDIA L4": 121e12,
    "NVIDIA A10G": 70e12,
    "NVIDIA V100": 125e12,
}


def step_flops(compiled) -> float | None:
  """FLOPs of one call of a compiled function, per device, if XLA reports them."""
  try:
    analysis = compiled.cost_analysis()
  except Exception:  # some backends have no cost model
    return None
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0] if analysis else None
  flops = (analysis or {}).get("flops")
  return float(flops) if flops and flops > 0 else None


def measured_matmul_flops(device=None, n: int = 1024, repeats: int = 10, per_run: int = 3) -> float:
  """FLOP/s of float32 n x n matrix products on `device`: the best of `repeats` runs of `per_run`
  products each (the best, not the median: a busy moment only ever slows a run down)."""
  device = device or jax.devices()[0]
  x = jax.device_put(jnp.ones((n, n), jnp.float32), device)
  matmul = jax.jit(lambda a: a @ a)
  matmul(x).block_until_ready()
  best = float("inf")
  for _ in range(repeats):
    t0 = time.perf_counter()
    for _ in range(per_run):
      y = matmul(x)
    y.block_until_ready()
    best = min(best, (time.perf_counter() - t0) / per_run)
  return 2 * n**3 / best


CACHE_DIR_ENV = "LEPTON_JAX_CACHE_DIR"
PEAK_CACHE_FILE = "peak_flops.json"


def cache_dir() -> str:
  """Where lepton_jax keeps per-machine measurements: $LEPTON_JAX_CACHE_DIR, else the user's
  cache dir."""
  if os.environ.get(CACHE_DIR_ENV):
    return os.environ[CACHE_DIR_ENV]
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(base, "lepton_jax")


def _cpu_model() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def machine_key(device) -> str:
  """What a measured peak depends on: CPU model, usable cores, jax version, device kind."""
  cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
  return f"{_cpu_model()} | {cores} cores | jax {jax.__version__} | {device.device_kind}"


def _read_cache(path: str) -> dict:
  """The cache's entries; an unreadable or malformed file reads as empty (it is re-measured)."""
  try:
    with open(path) as f:
      entries = json.load(f)
  except (OSError, ValueError):
    return {}
  return entries if isinstance(entries, dict) else {}


def _valid(entry) -> bool:
  return (isinstance(entry, dict) and isinstance(entry.get("flops"), (int, float))
          and entry["flops"] > 0 and isinstance(entry.get("date"), str))


def _write_cache(path: str, entries: dict) -> bool:
  """Writes the cache atomically (a temp file renamed over it); False where it cannot."""
  try:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    partial = f"{path}.{os.getpid()}.partial"
    with open(partial, "w") as f:
      json.dump(entries, f, indent=2, sort_keys=True)
    os.replace(partial, path)
    return True
  except OSError:
    return False


def cached_measured_peak(device, measure=None) -> tuple[float, str]:
  """(measured peak FLOP/s of `device`, where it comes from): measured (by
  `measure(device)`, default `measured_matmul_flops`) once per machine, then cached."""
  path = os.path.join(cache_dir(), PEAK_CACHE_FILE)
  key = machine_key(device)
  entries = _read_cache(path)
  if _valid(entries.get(key)):
    return float(entries[key]["flops"]), f"cached measurement from {entries[key]['date']}"
  value = float((measure or measured_matmul_flops)(device))
  entries[key] = {"flops": value, "date": datetime.date.today().isoformat()}
  if _write_cache(path, entries):
    return value, f"measured f32 matmul, cached in {path}"
  return value, "measured f32 matmul (the cache dir is not writable)"


def peak_flops(device, configured: float = 0.0) -> tuple[float, str]:
  """(peak FLOP/s of one device, where the figure comes from)."""
  if configured > 0:
    return configured, "config perf.peak_flops"
  kind = device.device_kind
  for name in sorted(PEAK_FLOPS, key=len, reverse=True):
    if kind.startswith(name):
      return PEAK_FLOPS[name], f"data sheet ({name})"
  if device.platform == "cpu":
    return cached_measured_peak(device)
  return 0.0, "unknown device"


def memory_in_use(device) -> int | None:
  """Bytes of device memory in use, where the backend reports it (not on CPU)."""
  try:
    stats = device.memory_stats()
  except Exception:
    return None
  return int(stats["bytes_in_use"]) if stats and "bytes_in_use" in stats else None


class Profiler:
  """Captures a jax.profiler trace of steps [start, start + num_steps) into WORKDIR/profile."""

  def __init__(self, workdir: str, start_step: int, num_steps: int, enabled: bool = True):
    self.dir = str(epath.Path(workdir) / "profile")
    self.start = start_step
    self.stop = start_step + num_steps
    self.enabled = enabled and start_step >= 0 and num_steps > 0
    self.active = self.done = False

  def before_step(self, step: int) -> None:
    """Starts the trace at the first step at or after start_step (dispatches may run several)."""
    if self.enabled and self.start <= step < self.stop and not self.active and not self.done:
      jax.profiler.start_trace(self.dir)
      self.active = True

  def after_step(self, step: int, state) -> None:
    if self.active and step + 1 >= self.stop:
      jax.block_until_ready(state)
      jax.profiler.stop_trace()
      self.active, self.done = False, True

  def close(self) -> None:
    if self.active:
      jax.profiler.stop_trace()
      self.active = False

  def __enter__(self) -> "Profiler":
    return self

  def __exit__(self, *exc) -> None:
    self.close()
