"""wae_jax: Wasserstein Auto-Encoders (Tolstikhin et al., ICLR 2018) in JAX and Flax."""

__version__ = '0.1.0'
