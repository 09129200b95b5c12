"""One-hot multi-level LIF (M-LIF) neurons (``neuron``: dynamics, one-step update, learnable
threshold and leak; ``coding``: conversion)."""

from snnconvert.methods.mlif import coding  # noqa: F401  (registers the coding)
