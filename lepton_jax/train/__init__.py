"""Training: `train_and_evaluate(config, workdir)` trains (resuming from the workdir's newest
checkpoint) and writes the run's report; `loop.train` is the loop alone."""

from lepton_jax.errors import TrainingDiverged  # noqa: F401
from lepton_jax.train.loop import TrainResult, train  # noqa: F401
from lepton_jax.train.preemption import PREEMPTED_EXIT_CODE, Preempted  # noqa: F401
from lepton_jax.train.run import train_and_evaluate  # noqa: F401
