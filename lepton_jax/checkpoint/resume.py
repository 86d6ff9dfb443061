"""Where training starts: the newest readable checkpoint of the workdir, else a fresh state (with
config.init_from's parameters when set)."""

from lepton_jax.checkpoint import init_from
from lepton_jax.checkpoint.manager import Checkpointer


def start_state(checkpointer: Checkpointer, task, say) -> tuple[object, dict]:
  """(state, meta of the checkpoint it came from or {}); `say` prints one line of what it did.

  An unreadable newest checkpoint is skipped with a warning; one that does not fit the model is
  a UserError raised before anything is restored or written.
  """
  restored = checkpointer.restore_latest(task.abstract_state)
  if restored is not None:
    say(f"resumed from checkpoint at step {restored.step}")
    return restored.state, restored.meta
  state = task.init_state(task.init_rng)
  config = task.config
  if config.init_from:
    state, report = init_from.load_init_from(config.init_from, config.init_from_params,
                                             task.abstract_state, state)
    say(report)
  return state, {}
