"""Orbax checkpoints in `WORKDIR/checkpoints`: async saves, atomic commits,
exact resume onto any mesh.

A checkpoint is plain Orbax: item `state` (the TrainState pytree, restorable
with orbax.checkpoint alone) and item `meta` (JSON: step, metrics).
"""

import jax
import orbax.checkpoint as ocp
from etils import epath

from lepton_jax.errors import UserError


class Checkpointer:
  def __init__(self, workdir: str, *, max_to_keep: int = 3, async_save: bool = True):
    self.directory = epath.Path(workdir) / "checkpoints"
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep,
        enable_async_checkpointing=async_save,
        create=True,
        cleanup_tmp_directories=True,
    )
    self.manager = ocp.CheckpointManager(self.directory, options=options, item_names=("state", "meta"))

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, step: int, state, meta: dict | None = None, force: bool = True) -> bool:
    return self.manager.save(
        int(step),
        args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                meta=ocp.args.JsonSave(dict(meta or {}, step=int(step)))),
        force=force)

  def restore(self, abstract_state, step: int | None = None):
    """Restores `step` (default: latest) with the shardings of `abstract_state`."""
    step = self.latest_step() if step is None else step
    if step is None:
      raise UserError(f"no complete checkpoint in {self.directory}")
    try:
      restored = self.manager.restore(
          step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state)))
    except (ValueError, KeyError, TypeError) as e:
      raise UserError(f"checkpoint {self.directory / str(step)} does not fit this model: "
                      f"{str(e).splitlines()[0]}; use a fresh --workdir, or config.init_from "
                      "to start from it") from e
    return restored.state

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.close()


def abstract_with_shardings(abstract_state, shardings):
  return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                      abstract_state, shardings)
