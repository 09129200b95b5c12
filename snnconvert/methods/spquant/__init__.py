"""SpQuant-SNN: ternary-membrane LIF neurons, spatial and channel pruning, power-of-two weights
(``neuron``, ``pot``, ``coding``, ``training``: the SpQuant training method)."""

from snnconvert.methods.spquant import config  # noqa: F401  (torch-free: registers the coding's options)

REGISTERS = ("coding", "training")
"""The modules that register the rest (they import torch; :func:`snnconvert.registry.load_methods`)."""
