"""Named experiments: what turns a model + data into a loss and metrics.

Importing this package registers each built-in experiment.
"""

from lepton_jax.experiments import classification
from lepton_jax.experiments import language_model
