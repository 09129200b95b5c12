"""SpQuant-SNN: ternary-membrane LIF neurons, spatial and channel pruning, power-of-two weights
(``neuron``, ``pot``, ``coding``, ``training``: the SpQuant training method)."""

from snnconvert.methods.spquant import coding, training  # noqa: F401  (register the coding and method)
