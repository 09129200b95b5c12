"""SWS / TSA: exact conversion of a quantized ANN into signed, stepwise-weighted spike trains
(``neuron``: TSA neurons, the SWS encoder and max-pool; ``coding``: conversion and ``--Ts auto``;
``reference``: an independent step-by-step simulator that checks the engine)."""

from snnconvert.methods.sws import config  # noqa: F401  (torch-free: registers the coding's options)

REGISTERS = ("coding",)
"""The modules that register the rest (they import torch; :func:`snnconvert.registry.load_methods`)."""
