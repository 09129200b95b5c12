"""snnconvert: turn trained neural networks into accurate low-latency spiking neural networks.

The API mirrors the CLI: :func:`quantize` -> :func:`to_snn` -> :func:`evaluate`, with
:func:`save` / :func:`load` for artifacts, and :func:`run` for a whole recipe
(:func:`load_recipe`), and ``snnconvert.finetune(q, snn, config, data=...)`` to train a converted SNN (the
``snnconvert.finetune`` package is callable; its modules stay importable). The codings are
listed by :func:`codings`.
"""

from snnconvert import finetune  # a package you can call: snnconvert.finetune(q, snn, config, data=...)
from snnconvert._version import __version__
from snnconvert.codings import codings
from snnconvert.evaluate import EvaluateConfig, EvaluationReport, evaluate
from snnconvert.finetune import FinetuneConfig, FinetuneResult
from snnconvert.pipeline import QuantizedModel, RunResult, load, quantize, run, save, to_snn
from snnconvert.quantize import QuantizeConfig
from snnconvert.recipe import Recipe, load_recipe
from snnconvert.simulate.network import SpikingNetwork

__all__ = [
    "EvaluateConfig",
    "EvaluationReport",
    "FinetuneConfig",
    "FinetuneResult",
    "QuantizeConfig",
    "QuantizedModel",
    "Recipe",
    "RunResult",
    "SpikingNetwork",
    "__version__",
    "codings",
    "evaluate",
    "finetune",
    "load",
    "load_recipe",
    "quantize",
    "run",
    "save",
    "to_snn",
]
