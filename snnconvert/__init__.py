"""snnconvert: turn trained neural networks into accurate low-latency spiking neural networks."""

__version__ = "0.1.0"
