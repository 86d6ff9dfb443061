"""lepton_jax: config-driven JAX experiments from a laptop CPU to a TPU pod."""

__version__ = "0.1.0"
