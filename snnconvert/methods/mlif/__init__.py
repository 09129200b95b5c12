"""One-hot multi-level LIF (M-LIF) neurons (``neuron``: dynamics, one-step update, learnable
threshold and leak; ``coding``: conversion)."""

from snnconvert.methods.mlif import config  # noqa: F401  (torch-free: registers the coding's options)

REGISTERS = ("coding",)
"""The modules that register the rest (they import torch; :func:`snnconvert.registry.load_methods`)."""
