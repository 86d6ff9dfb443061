"""Array-level ops with backend-specific fast formulations."""

from lepton_jax.ops import conv  # noqa: F401
from lepton_jax.ops import pooling  # noqa: F401
