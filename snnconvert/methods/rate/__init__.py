"""Rate coding with integrate-and-fire neurons, the classic conversion baseline (``neuron``: IF
neurons and rate max-pooling; ``coding``: threshold balancing and conversion)."""

from snnconvert.methods.rate import coding  # noqa: F401  (registers the coding)
