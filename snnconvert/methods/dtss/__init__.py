"""Dynamic time-step spiking (DTSS): per-layer learned time-step masks (``mask``: the mask layer,
a time gate; ``training``: the DTSS training method; ``report`` and ``timestep_sensitivity``: its analyses)."""

from snnconvert.methods.dtss import config  # noqa: F401  (torch-free: registers the method's options)

REGISTERS = ("report", "timestep_sensitivity", "training")
"""The modules that register the rest (they import torch; :func:`snnconvert.registry.load_methods`)."""
