"""Datasets and device-side preprocessing ops. Importing registers them."""

from lepton_jax.data import mnist
from lepton_jax.data import ops
from lepton_jax.data import sklearn_datasets
