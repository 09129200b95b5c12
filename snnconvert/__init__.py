"""snnconvert: turn trained neural networks into accurate low-latency spiking neural networks.

The API mirrors the CLI: :func:`quantize` -> :func:`to_snn` -> :func:`evaluate`, with
:func:`save` / :func:`load` for artifacts, and :func:`run` for a whole recipe
(:func:`load_recipe`), and ``snnconvert.finetune(q, snn, config, data=...)`` to train a converted SNN (the
``snnconvert.finetune`` package is callable; its modules stay importable). The codings are
listed by :func:`codings`. :func:`tune_allocator` makes glibc keep freed tensor memory (the
command line does; a notebook may: 20-35 % faster CPU evaluation).
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

from snnconvert._version import __version__

# Imported on first use (PEP 562), so that ``import snnconvert`` and the CLI's ``--help`` do not load torch.
_LAZY = {
    "finetune": "snnconvert.finetune",  # a package you can call: snnconvert.finetune(q, snn, config, data=...)
    "codings": "snnconvert.codings",
    "EvaluateConfig": "snnconvert.evaluate",
    "EvaluationReport": "snnconvert.evaluate",
    "evaluate": "snnconvert.evaluate",
    "FinetuneConfig": "snnconvert.finetune",
    "FinetuneResult": "snnconvert.finetune",
    "finetune_ann": "snnconvert.finetune",
    "QuantizedModel": "snnconvert.pipeline",
    "RunResult": "snnconvert.pipeline",
    "load": "snnconvert.pipeline",
    "quantize": "snnconvert.pipeline",
    "run": "snnconvert.pipeline",
    "save": "snnconvert.pipeline",
    "to_snn": "snnconvert.pipeline",
    "QuantizeConfig": "snnconvert.quantize",
    "Recipe": "snnconvert.recipe",
    "load_recipe": "snnconvert.recipe",
    "SpikingNetwork": "snnconvert.simulate.network",
    "export_onnx": "snnconvert.export.onnx",
    "export_nir": "snnconvert.export.nir",
    "tune_allocator": "snnconvert.allocator",
}

if TYPE_CHECKING:
    from snnconvert import finetune
    from snnconvert.allocator import tune_allocator
    from snnconvert.codings import codings
    from snnconvert.evaluate import EvaluateConfig, EvaluationReport, evaluate
    from snnconvert.export.nir import export_nir
    from snnconvert.export.onnx import export_onnx
    from snnconvert.finetune import FinetuneConfig, FinetuneResult, finetune_ann
    from snnconvert.pipeline import QuantizedModel, RunResult, load, quantize, run, save, to_snn
    from snnconvert.quantize import QuantizeConfig
    from snnconvert.recipe import Recipe, load_recipe
    from snnconvert.simulate.network import SpikingNetwork


_SHADOWING = ("quantize", "codings", "evaluate")
"""API functions named like a submodule: importing the submodule binds it here, yet
``snnconvert.quantize`` (``codings``, ``evaluate``) is the function, as an eager import made it."""


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'snnconvert' has no attribute {name!r}")
    loaded = importlib.import_module(module)
    value = loaded if name == "finetune" else getattr(loaded, name)  # the finetune package is callable
    if name not in _SHADOWING:
        globals()[name] = value
    return value


class _Package(types.ModuleType):
    def __getattribute__(self, name: str) -> Any:
        if name in _SHADOWING:
            return getattr(importlib.import_module(_LAZY[name]), name)
        return super().__getattribute__(name)


sys.modules[__name__].__class__ = _Package


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
    "export_nir",
    "export_onnx",
    "finetune",
    "finetune_ann",
    "load",
    "load_recipe",
    "quantize",
    "run",
    "save",
    "to_snn",
    "tune_allocator",
]
