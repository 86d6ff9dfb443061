"""train_and_evaluate: what `python -m lepton_jax.main` runs for training — the loop, then the
run's report (plots, summary.md, the final evaluation's files)."""

import jax

from lepton_jax import report
from lepton_jax.errors import warn
from lepton_jax.train.loop import TrainResult, train


def train_and_evaluate(config, workdir: str, devices=None, stop_requested=None) -> dict:
  """Trains `config` in `workdir` (resuming from its newest checkpoint), writes plots/ and
  summary.md, and returns the final eval metrics plus `step`."""
  result: TrainResult = train(config, workdir, devices, stop_requested)
  if jax.process_index() == 0:  # a failed report warns: the run stands
    try:
      report.after_training(workdir, config, result)
    except Exception as e:  # noqa: BLE001
      warn(f"could not write the plots/summary ({type(e).__name__}: {e}); run "
           f"python -m lepton_jax.report {workdir}")
  return result.as_dict()
