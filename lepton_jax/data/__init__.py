"""Datasets and device-side preprocessing ops. Importing registers them."""

from lepton_jax.data import augment
from lepton_jax.data import datasets
from lepton_jax.data import synthetic
from lepton_jax.data import transforms
