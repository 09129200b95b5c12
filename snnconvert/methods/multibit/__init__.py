"""Multi-bit spiking neurons and their learned widths (``neuron``, ``coding``, ``metrics``: the
bit budget; ``adaptive_neuron``, ``learnable`` and ``adaptive_bits``: the adaptive-bits training
method)."""

from snnconvert.methods.multibit import config  # noqa: F401  (torch-free: registers the coding's options)

REGISTERS = ("coding", "adaptive_bits")
"""The modules that register the rest (they import torch; :func:`snnconvert.registry.load_methods`)."""
