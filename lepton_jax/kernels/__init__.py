"""Array-level ops with backend-specific fast formulations."""

from lepton_jax.kernels import conv  # noqa: F401
from lepton_jax.kernels import pooling  # noqa: F401
