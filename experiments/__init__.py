"""Named experiments: what turns a model + data into a loss and metrics.

Installed as `lepton_jax.experiments`; importing it registers each experiment.
"""

from lepton_jax.experiments import classification
from lepton_jax.experiments import language_model
