"""Registered models. Importing this package registers every built-in model."""

from lepton_jax.models import cnn
from lepton_jax.models import mlp
