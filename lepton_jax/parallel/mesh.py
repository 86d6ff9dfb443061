"""The device mesh from `config.mesh`, and the shardings of batches on it."""

import math

import jax
from jax.sharding import NamedSharding, PartitionSpec as P

from lepton_jax.errors import UserError

AXES = ("data", "fsdp", "model")
# The batch is split over both data-parallel axes.
BATCH_AXES = ("data", "fsdp")


def axis_sizes(mesh_config, num_devices: int) -> tuple[int, int, int]:
  """Resolves the config's axis sizes (-1 = the rest) against the device count."""
  sizes = [int(mesh_config.get(axis, 1)) for axis in AXES]
  if sum(s == -1 for s in sizes) > 1:
    raise UserError("only one of mesh.data, mesh.fsdp, mesh.model may be -1 (\"the rest\")")
  if any(s == 0 or s < -1 for s in sizes):
    raise UserError(f"mesh axis sizes must be positive or -1, got data={sizes[0]}, "
                    f"fsdp={sizes[1]}, model={sizes[2]}")
  known = math.prod(s for s in sizes if s != -1)
  if -1 in sizes:
    if num_devices % known:
      raise UserError(f"mesh axes {dict(zip(AXES, sizes))} cannot fill {num_devices} devices: "
                      f"{num_devices} is not a multiple of {known}")
    sizes[sizes.index(-1)] = num_devices // known
  if math.prod(sizes) != num_devices:
    raise UserError(f"mesh data={sizes[0]} x fsdp={sizes[1]} x model={sizes[2]} = "
                    f"{math.prod(sizes)} devices, but there are {num_devices}; make the product "
                    f"{num_devices} or set one axis to -1")
  return tuple(sizes)


def make_mesh(mesh_config, devices=None) -> jax.sharding.Mesh:
  """A (data, fsdp, model) mesh over `devices` (all global devices by default).

  Axes are Auto (GSPMD): shardings of parameters and batches are given
  explicitly at the jit boundary and XLA propagates them through the step.
  """
  devices = list(devices if devices is not None else jax.devices())
  sizes = axis_sizes(mesh_config, len(devices))
  return jax.make_mesh(sizes, AXES, axis_types=(jax.sharding.AxisType.Auto,) * len(AXES),
                       devices=devices)


def batch_sharding(mesh) -> NamedSharding:
  return NamedSharding(mesh, P(BATCH_AXES))


def replicated(mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def data_parallel_size(mesh) -> int:
  return mesh.shape["data"] * mesh.shape["fsdp"]


def check_batch(global_batch: int, mesh, what: str = "batch_size") -> None:
  size = data_parallel_size(mesh)
  if global_batch % size:
    raise UserError(f"{what}={global_batch} is not divisible by the {size} data-parallel devices "
                    f"(mesh data x fsdp); use a multiple of {size}")


def summary(mesh, global_batch: int) -> str:
  shape = " x ".join(f"{axis}={mesh.shape[axis]}" for axis in AXES)
  kinds = sorted({d.device_kind for d in mesh.devices.flat})
  return (f"devices: {mesh.devices.size} ({', '.join(kinds)}) in {jax.process_count()} process(es); "
          f"mesh {shape}; global batch {global_batch}, "
          f"per device {global_batch // data_parallel_size(mesh)}")
