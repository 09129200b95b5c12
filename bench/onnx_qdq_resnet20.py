"""ONNX QDQ -> SWS on the shared ResNet-20 / CIFAR-10.

The pretrained ResNet-20 is exported to ONNX taking raw pixels (its input normalization folded
into the first convolution, the border padded with the mean as ``x - mean -> zero pad -> + mean``),
quantized by onnxruntime's ``quantize_static`` (QDQ, per-channel int8 weights, uint8
activations, MinMax calibration on train-subset images), ingested by snnconvert as a quantized
model without re-quantization, converted with SWS (Tc = 8, Ts = 2) and evaluated on 2,000
stratified test images: top-1 of every model and agreement with onnxruntime's int8 session.

``reduce_range`` (7-bit weights) is on: on CPUs without VNNI onnxruntime's u8s8 kernels
saturate 16-bit pair sums, and its int8 session then departs from its own QDQ semantics.

    flock /tmp/snnconvert-bench.lock python bench/onnx_qdq_resnet20.py
"""

from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from common import CHECKPOINT, TEST, TRAIN, machine, require_shared_data, start_process, write_json
from torch import nn

from snnconvert.data import load_split, materialize
from snnconvert.graph import prepare
from snnconvert.graph.modules import PadWithValues
from snnconvert.ingest import load_model
from snnconvert.pipeline import quantized_from_onnx, to_snn


class SubPadAdd(nn.Module):
    """``PadWithValues`` written as ONNX Sub -> Pad -> Add."""

    def __init__(self, pad: PadWithValues) -> None:
        super().__init__()
        self.padding = pad.padding
        self.register_buffer("values", pad.values.view(1, -1, 1, 1).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x - self.values, self.padding) + self.values


def export_raw_pixel_model(path: Path) -> tuple[list[str], torch.nn.Module]:
    """ResNet-20 taking raw pixels, as ONNX; returns the names of the border-pad nodes."""
    loaded = load_model("resnet20", str(CHECKPOINT))
    gm = prepare(loaded.module, loaded.input_spec)
    for name, module in list(gm.named_children()):
        if isinstance(module, PadWithValues):
            setattr(gm, name, SubPadAdd(module))
    gm.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(gm, torch.zeros(1, 3, 32, 32), str(path), dynamo=False, opset_version=17,
                          input_names=["x"], output_names=["logits"], dynamic_axes={"x": {0: "n"}})
    import onnx

    model = onnx.load(str(path))
    border = [n.name for n in model.graph.node if n.op_type in ("Sub", "Pad", "Add") and "input_pad" in n.name]
    return border, gm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=2000, help="test images (stratified)")
    parser.add_argument("--calib", type=int, default=1000, help="calibration images from train-subset")
    parser.add_argument("--result", default="onnx_qdq_resnet20.json", help="file name under bench/results/")
    args = parser.parse_args()
    require_shared_data()
    logging.getLogger().setLevel(logging.ERROR)
    import onnxruntime as ort
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    start = time.perf_counter()
    spec = load_model("resnet20", str(CHECKPOINT)).input_spec
    work = Path(tempfile.mkdtemp(prefix="onnx_qdq_"))
    float_path, q_path = work / "resnet20.onnx", work / "resnet20_qdq.onnx"
    border, _ = export_raw_pixel_model(float_path)

    calib = materialize(load_split(TRAIN, "calib", spec, limit=args.calib, seed=0, calib_split=0.2))
    calib_x = torch.stack([calib.dataset[i][0] for i in range(len(calib.dataset))]).numpy()

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"x": calib_x[i:i + 100]} for i in range(0, len(calib_x), 100)])

        def get_next(self) -> dict | None:
            return next(self.batches, None)

    t0 = time.perf_counter()
    quantize_static(str(float_path), str(q_path), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax, reduce_range=True, nodes_to_exclude=border)
    ort_quant_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    q = quantized_from_onnx(q_path, data=TEST, eval_limit=0)
    snn = to_snn(q, coding="sws", Tc=8, Ts=2)
    ingest_s = time.perf_counter() - t0

    test = materialize(load_split(TEST, "eval", spec, limit=args.limit, seed=0))
    pairs = [test.dataset[i] for i in range(len(test.dataset))]
    x = torch.stack([p[0] for p in pairs])
    y = torch.tensor([int(p[1]) for p in pairs])
    float_sess = ort.InferenceSession(str(float_path), providers=["CPUExecutionProvider"])
    int8_sess = ort.InferenceSession(str(q_path), providers=["CPUExecutionProvider"])
    ort_float = float_sess.run(None, {"x": x.numpy()})[0]
    ort_int8 = int8_sess.run(None, {"x": x.numpy()})[0]
    with torch.no_grad():
        ours_q = q.model(x).numpy()
        ours_float = q.float_model(x).numpy()
    t0 = time.perf_counter()
    snn_logits = []
    snn32 = snn.float()  # evaluate's default precision
    with torch.no_grad():
        for i in range(0, len(x), 100):
            snn_logits.append(snn32(x[i:i + 100]).numpy())
    snn_s = time.perf_counter() - t0
    snn_out = np.concatenate(snn_logits)

    def top1(logits: np.ndarray) -> float:
        return float((logits.argmax(1) == y.numpy()).mean())

    def agree(a: np.ndarray, b: np.ndarray) -> float:
        return float((a.argmax(1) == b.argmax(1)).mean())

    result = {
        "benchmark": "ONNX QDQ (onnxruntime quantize_static) -> snnconvert ingest -> SWS Tc=8 Ts=2, ResNet-20 CIFAR-10",
        "images": len(x),
        "calibration_images": len(calib_x),
        "onnxruntime_quantization": "QDQ, per-channel int8 weights (reduce_range), uint8 activations, MinMax",
        "top1": {"onnx_float_onnxruntime": top1(ort_float), "imported_float": top1(ours_float),
                 "onnxruntime_int8": top1(ort_int8), "imported_quantized_ann": top1(ours_q), "sws_snn": top1(snn_out)},
        "agreement_with_onnxruntime_int8": {"imported_quantized_ann": agree(ours_q, ort_int8),
                                            "sws_snn": agree(snn_out, ort_int8)},
        "agreement_sws_snn_with_imported_quantized_ann": agree(snn_out, ours_q),
        "max_abs_logit_diff_quantized_ann_vs_onnxruntime_int8": float(np.abs(ours_q - ort_int8).max()),
        "sws": {"simulated_in": "float32", "T_inf": snn.info["T_inf"], "neuron_layers": len(snn.info["neuron_layers"]),
                "L_TSA": snn.info["L_TSA"]},
        "seconds": {"onnxruntime_quantize_static": ort_quant_s, "ingest_and_convert": ingest_s, "snn_eval": snn_s,
                    "total": time.perf_counter() - start},
        "machine": machine(),
    }
    shutil.rmtree(work, ignore_errors=True)
    path = write_json(args.result, result)
    print(f"wrote {path}")
    for key, value in result["top1"].items():
        print(f"  top-1 {key:28s} {100 * value:6.2f} %")
    for key, value in result["agreement_with_onnxruntime_int8"].items():
        print(f"  agreement with onnxruntime int8, {key:22s} {100 * value:6.2f} %")
    print(f"  SWS T_inf {snn.info['T_inf']}, wall {result['seconds']['total']:.0f} s")


if __name__ == "__main__":
    start_process()
    main()
