"""jgrok: a JAX/Flax toolkit for studying grokking with vmapped, checkpointed sweeps."""

__version__ = "0.1.0"
