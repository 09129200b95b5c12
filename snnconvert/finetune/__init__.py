"""Fine-tuning of converted SNNs: BPTT with surrogate gradients over the time-folded simulator.

    from snnconvert.finetune import FinetuneConfig, finetune
    result = finetune(q, snn, FinetuneConfig(epochs=5, lr=1e-4, learn_threshold=True), data="digits")
    snnconvert.save("tuned.snnc", q, result.snn)

    # the fair float reference: the ANN fine-tuned on the same images with the same budget
    reference = finetune_ann(q, FinetuneConfig(epochs=5), data="digits").model
"""

import sys
import types
from typing import Any

from snnconvert.finetune.config import FinetuneConfig  # torch-free: the CLI reads its defaults

__all__ = ["FinetuneConfig", "FinetuneResult", "finetune", "finetune_ann", "resolve_device"]
_LAZY = {"FinetuneResult": "snnconvert.finetune.loop", "finetune": "snnconvert.finetune.loop",
         "finetune_ann": "snnconvert.finetune.loop",
         "resolve_device": "snnconvert.device"}


def __getattr__(name: str) -> Any:
    """The torch-backed names, imported on first use (``snnconvert finetune --help`` loads no torch)."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _CallablePackage(types.ModuleType):
    """``snnconvert.finetune(...)`` calls :func:`finetune`; the package's modules stay importable."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from snnconvert.finetune.loop import finetune

        return finetune(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
