"""Dynamic time-step spiking (DTSS): per-layer learned time-step masks (``mask``: the mask layer,
a time gate; ``training``: the DTSS training method; ``report`` and ``timestep_sensitivity``: its analyses)."""

from snnconvert.methods.dtss import report, timestep_sensitivity, training  # noqa: F401  (register them)
