"""Fine-tuning of converted SNNs: BPTT with surrogate gradients over the time-folded simulator.

    from snnconvert.finetune import FinetuneConfig, finetune
    result = finetune(q, snn, FinetuneConfig(epochs=5, lr=1e-4, learn_threshold=True), data="digits")
    snnconvert.save("tuned.snnc", q, result.snn)
"""

import sys
import types
from typing import Any

from snnconvert.device import resolve_device
from snnconvert.finetune.config import FinetuneConfig
from snnconvert.finetune.loop import FinetuneResult, finetune

__all__ = ["FinetuneConfig", "FinetuneResult", "finetune", "resolve_device"]


class _CallablePackage(types.ModuleType):
    """``snnconvert.finetune(...)`` calls :func:`finetune`; the package's modules stay importable."""

    def __call__(self, *args: Any, **kwargs: Any) -> FinetuneResult:
        return finetune(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
