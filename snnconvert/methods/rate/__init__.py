"""Rate coding with integrate-and-fire neurons, the classic conversion baseline (``neuron``: IF
neurons and rate max-pooling; ``coding``: threshold balancing and conversion)."""

from snnconvert.methods.rate import config  # noqa: F401  (torch-free: registers the coding's options)

REGISTERS = ("coding",)
"""The modules that register the rest (they import torch; :func:`snnconvert.registry.load_methods`)."""
