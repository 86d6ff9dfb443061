"""Efficiency figures shown live: FLOPs per step, peak FLOP/s, MFU, memory, traces.

MFU (model FLOPs utilization) = FLOPs the compiled step does per device /
(step time x the device's peak FLOP/s). FLOPs come from XLA's cost analysis of
the compiled (partitioned, so per-device) step. Peak FLOP/s: `perf.peak_flops`
if set, else a table of known accelerators (dense bf16 figures of their data
sheets), else — on CPUs — a figure measured at start-up with a float32 matrix
product (a practical peak, which makes CPU MFU a relative figure).
"""

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


def measured_matmul_flops(device=None, n: int = 1024, repeats: int = 5) -> float:
  """FLOP/s of a float32 n x n matrix product on `device` (median of `repeats`)."""
  device = device or jax.devices()[0]
  x = jax.device_put(jnp.ones((n, n), jnp.float32), device)
  matmul = jax.jit(lambda a: a @ a)
  matmul(x).block_until_ready()
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    matmul(x).block_until_ready()
    times.append(time.perf_counter() - t0)
  return 2 * n**3 / sorted(times)[len(times) // 2]


def peak_flops(device, configured: float = 0.0) -> tuple[float, str]:
  """(peak FLOP/s of one device, where the figure comes from)."""
  if configured > 0:
    return configured, "config perf.peak_flops"
  kind = device.device_kind
  for name in sorted(PEAK_FLOPS, key=len, reverse=True):
    if kind.startswith(name):
      return PEAK_FLOPS[name], f"data sheet ({name})"
  if device.platform == "cpu":
    return measured_matmul_flops(device), "measured f32 matmul"
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
    self.active = False

  def before_step(self, step: int) -> None:
    if self.enabled and step == self.start and not self.active:
      jax.profiler.start_trace(self.dir)
      self.active = True

  def after_step(self, step: int, state) -> None:
    if self.active and step + 1 >= self.stop:
      jax.block_until_ready(state)
      jax.profiler.stop_trace()
      self.active = False

  def close(self) -> None:
    if self.active:
      jax.profiler.stop_trace()
      self.active = False
