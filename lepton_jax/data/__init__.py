"""Datasets and device-side preprocessing ops. Importing registers them."""

from lepton_jax.data import augment
from lepton_jax.data import cifar10
from lepton_jax.data import image_folder
from lepton_jax.data import mnist
from lepton_jax.data import transforms
from lepton_jax.data import sklearn_datasets
from lepton_jax.data import text_files
