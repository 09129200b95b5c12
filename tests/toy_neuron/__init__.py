"""A new neuron kind in one folder: a hard-reset LIF neuron and the coding that uses it.

Nothing in snnconvert names it. Importing this package registers the coding
(:func:`snnconvert.codings.register_coding`) and the neuron class (``@serializable``); the
neuron's protocol methods give it fine-tuning, one-step (ONNX ``--mode step``) execution and
storage. ``tests/test_toy_neuron.py`` drives it through the CLI; an installed plugin would
advertise this package in the ``snnconvert.methods`` entry-point group instead.
"""

from toy_neuron.coding import TOY_CODING
from toy_neuron.neuron import HardResetLIF

__all__ = ["TOY_CODING", "HardResetLIF"]
