"""snnconvert: turn trained neural networks into accurate low-latency spiking neural networks.

The API mirrors the CLI: :func:`quantize` -> :func:`to_snn` -> :func:`evaluate`, with
:func:`save` / :func:`load` for artifacts.
"""

__version__ = "0.1.0"

from snnconvert.evaluate import EvaluateConfig, EvaluationReport, evaluate  # noqa: E402
from snnconvert.pipeline import QuantizedModel, load, quantize, save, to_snn  # noqa: E402
from snnconvert.quantize import QuantizeConfig  # noqa: E402
from snnconvert.simulate.network import SpikingNetwork  # noqa: E402

__all__ = [
    "EvaluateConfig",
    "EvaluationReport",
    "QuantizeConfig",
    "QuantizedModel",
    "SpikingNetwork",
    "__version__",
    "evaluate",
    "load",
    "quantize",
    "save",
    "to_snn",
]
