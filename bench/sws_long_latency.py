"""SWS at long latency in evaluate's default precision: exact against the integer reference (issue 27, item 1).

Torchvision networks with random (seeded) weights and a 10-class head, 8 bits, calibrated on 64
train-subset images at 32x32, converted with SWS Tc=8 Ts=8 (every layer waits for all its input:
the SNN must equal the quantized ANN) and evaluated with ``evaluate``'s defaults on stratified
CIFAR-10 test images; plus mobilenet_v2 exported to ONNX and quantized by onnxruntime's
``quantize_static`` (QDQ), ingested without re-quantization. For each: T_inf, the SNN's top-1
agreement with the exact integer reference (``snnconvert.quantize.exact``), the largest logit
difference from it relative to the logit scale, and, for comparison, the same SNN simulated
entirely in float32 (how ``evaluate`` ran SWS before: float32 weights and membranes).

    python bench/sws_long_latency.py [--images 200] [--networks mobilenet_v2,regnet_x_400mf,densenet121,qdq]
"""

from __future__ import annotations

import copy
import logging
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from common import TEST, TRAIN, require_shared_data
from harness import BenchOptions, BenchResult, main

from snnconvert.data import load_split, materialize
from snnconvert.evaluate import EvaluateConfig, evaluate
from snnconvert.ingest import load_model
from snnconvert.pipeline import QuantizedModel, quantize, quantized_from_onnx, to_snn
from snnconvert.quantize import QuantizeConfig
from snnconvert.quantize.exact import exact_logits


@dataclass
class Options(BenchOptions):
    images: int = field(default=200, metadata={"help": "stratified CIFAR-10 test images"})
    calib: int = field(default=64, metadata={"help": "calibration images (train-subset)"})
    networks: str = field(default="mobilenet_v2,regnet_x_400mf,densenet121,qdq",
                          metadata={"help": "comma-separated torchvision names; qdq: onnxruntime QDQ mobilenet_v2"})


def _qdq_mobilenet(calib: int) -> QuantizedModel:
    """Random mobilenet_v2 (seed 0, 10 classes) -> ONNX -> onnxruntime ``quantize_static`` QDQ
    (per-channel int8 weights, uint8 activations, MinMax on ``calib`` train-subset images) -> ingest."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    torch.manual_seed(0)
    loaded = load_model("mobilenet_v2", "random", num_classes=10, input_size=(32, 32))
    module = loaded.module.eval()
    work = Path(tempfile.mkdtemp(prefix="sws_long_latency_"))
    float_path, q_path = work / "mobilenet_v2.onnx", work / "mobilenet_v2_qdq.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, torch.zeros(1, 3, 32, 32), str(float_path), dynamo=False, opset_version=17,
                          input_names=["x"], output_names=["logits"], dynamic_axes={"x": {0: "n"}})
    spec = loaded.input_spec
    split = materialize(load_split(TRAIN, "calib", spec, limit=calib, seed=0, calib_split=0.2))
    images = torch.stack([split.dataset[i][0] for i in range(len(split.dataset))]).numpy()

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"x": images[i:i + 32]} for i in range(0, len(images), 32)])

        def get_next(self) -> dict | None:
            return next(self.batches, None)

    quantize_static(str(float_path), str(q_path), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax, reduce_range=True)
    return quantized_from_onnx(q_path, data=TEST, eval_limit=0)


def _logit_checks(q: QuantizedModel, snn: Any, images: int) -> dict[str, float]:
    """On the same stratified test images ``evaluate`` takes: the SNN as ``evaluate`` simulates it
    (float64 membranes, exact spike sums) and the same SNN wholly in float32 (weights, membranes:
    how SWS ran before) against the exact reference: top-1 agreement and max |logit diff| / logit scale."""
    from snnconvert.evaluate import in_dtype, snn_dtype

    split = materialize(load_split(TEST, "eval", q.info.input_spec, limit=images, seed=0))
    x = torch.stack([split.dataset[i][0] for i in range(len(split.dataset))])
    reference = exact_logits(q.model, x)
    scale = float(reference.abs().max())
    found = {}
    for label, model, dtype in (("default", in_dtype(snn, snn_dtype(snn, EvaluateConfig())), torch.float64),
                                ("float32", copy.deepcopy(snn).float(), torch.float32)):
        with torch.no_grad():
            out = torch.cat([model(x[i:i + 50].to(dtype)).double() for i in range(0, len(x), 50)])
        found[f"{label}_agreement"] = float((out.argmax(1) == reference.argmax(1)).double().mean())
        found[f"{label}_max_rel_logit_diff"] = float((out - reference).abs().max()) / scale
    return found


def run(options: Options) -> BenchResult:
    require_shared_data()
    logging.getLogger().setLevel(logging.ERROR)
    rows: list[dict[str, Any]] = []
    for name in options.networks.split(","):
        start = time.perf_counter()
        if name == "qdq":
            q, label = _qdq_mobilenet(options.calib), "mobilenet_v2 (onnxruntime QDQ)"
        else:
            torch.manual_seed(0)
            loaded = load_model(name, "random", num_classes=10, input_size=(32, 32))
            q = quantize(loaded, data=TRAIN, config=QuantizeConfig(calib_limit=options.calib), eval_limit=0)
            label = name
        snn = to_snn(q, coding="sws", Tc=8, Ts=8)
        report = evaluate(q, snn, EvaluateConfig(data=TEST, limit=options.images, reports=("accuracy",)))
        acc = report.accuracy
        row = {"network": label, "T_inf": snn.info.get("latency"), "images": acc.images,
               "agreement_exact": acc.agreement_snn_quantized,
               "float32_run_vs_exact": acc.quantized_run.agreement_exact,
               "agreement_float32_run": acc.quantized_run.agreement_snn, **_logit_checks(q, snn, options.images),
               "snn_seconds": report.timing.snn_seconds,
               "snn_over_quantized": report.timing.snn_over_quantized, "threads": report.timing.threads,
               "seconds": time.perf_counter() - start}
        print(row, flush=True)
        rows.append(row)
    lines = ["# SWS at long latency: agreement with the exact integer reference in evaluate's default precision", "",
             f"`python bench/sws_long_latency.py`: random-weight torchvision networks (seed 0, 10 classes), 8 bits "
             f"calibrated on {options.calib} train-subset images at 32x32, SWS Tc=8 Ts=8 (the SNN must equal the "
             f"quantized ANN), `evaluate` defaults on {options.images} stratified CIFAR-10 test images. "
             "'float32 SNN' is the same network simulated wholly in float32, as evaluate ran SWS before.", "",
             "| network | T_inf | SNN top-1 = exact reference (evaluate) | max logit diff / scale | "
             "float32 SNN top-1 = exact (before) | its max logit diff / scale | float32 ANN run = exact | "
             "SNN / quantized ANN time |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['network']} | {r['T_inf']} | {100 * r['agreement_exact']:.2f} % | "
                     f"{r['default_max_rel_logit_diff']:.1e} | {100 * r['float32_agreement']:.2f} % | "
                     f"{r['float32_max_rel_logit_diff']:.1e} | {100 * r['float32_run_vs_exact']:.2f} % | "
                     f"{r['snn_over_quantized']:.2f}x |")
    data = {"images": options.images, "calibration_images": options.calib, "rows": rows,
            "numpy": np.__version__, "torch": torch.__version__}
    return BenchResult("sws_long_latency", data, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main(Options, run, __doc__)
