"""Peak memory of an SWS ResNet-50 (random weights) on one 224x224 batch of 8, in its own process.

    python bench/sws_memory.py      # prints one JSON line
"""

from __future__ import annotations

import json
import resource
import time

import torch
import torchvision

from snnconvert.data import InputSpec
from snnconvert.evaluate import in_dtype
from snnconvert.graph import prepare
from snnconvert.methods.sws.coding import SWSConfig, convert_sws
from snnconvert.quantize import QuantizeConfig, quantize_graph


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    torch.manual_seed(0)
    spec = InputSpec(3, (224, 224), 256, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    model = torchvision.models.resnet50().eval()
    calib = [(torch.rand(4, 3, 224, 224), torch.zeros(4, dtype=torch.long))]
    q = quantize_graph(prepare(model, spec), calib, QuantizeConfig(bits=8), example_shape=(1, 3, 224, 224)).model
    snn = in_dtype(convert_sws(q, SWSConfig(Tc=8, Ts=2)), torch.float32)
    del model, calib
    before = rss_mb()
    x = torch.rand(8, 3, 224, 224)
    start = time.perf_counter()
    with torch.no_grad():
        snn(x)
    print(json.dumps({"model": "resnet50", "batch": 8, "Tc": 8, "Ts": 2, "peak_rss_mb_before_run": round(before),
                      "peak_rss_mb": round(rss_mb()), "seconds": round(time.perf_counter() - start, 1)}))


if __name__ == "__main__":
    main()
