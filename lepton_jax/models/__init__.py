"""Registered models. Importing this package registers every built-in model."""

from lepton_jax.models import cnn
from lepton_jax.models import llama
from lepton_jax.models import mlp
from lepton_jax.models import resnet
from lepton_jax.models import rnn
from lepton_jax.models import transformer_lm
from lepton_jax.models import vit
