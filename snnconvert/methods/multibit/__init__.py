"""Multi-bit spiking neurons and their learned widths (``neuron``, ``coding``, ``metrics``: the
bit budget; ``adaptive_neuron``, ``learnable`` and ``adaptive_bits``: the adaptive-bits training
method)."""

from snnconvert.methods.multibit import adaptive_bits, coding  # noqa: F401  (register the coding and method)
