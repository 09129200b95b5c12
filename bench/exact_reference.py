"""SWS agreement against the exact integer reference and against the float32 quantized ANN (issue 27, item 1).

The pretrained CIFAR ResNet-20 and ResNet-56 (../shared/data), 8-bit, converted with SWS Tc=8 Ts=2,
evaluated with ``evaluate``'s defaults on stratified CIFAR-10 test images: the SNN's top-1
agreement with the quantized ANN in exact arithmetic (snnconvert.quantize.exact, the reference
``evaluate`` now reports) and with the same ANN run in the evaluation's dtype (float32: what
earlier releases reported), and how often that run itself differs from the exact one. Writes
bench/results/exact_reference.{json,md}.

    python bench/exact_reference.py [--images 2000] [--float64]
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from common import SHARED, TEST, TRAIN, require_shared_data
from harness import BenchOptions, BenchResult, main

from snnconvert.evaluate import EvaluateConfig, evaluate
from snnconvert.pipeline import quantize, to_snn
from snnconvert.quantize import QuantizeConfig


@dataclass
class Options(BenchOptions):
    images: int = field(default=2000, metadata={"help": "stratified CIFAR-10 test images"})
    float64: bool = field(default=False, metadata={"help": "also simulate the SNNs in float64 (about 4x slower)"})
    networks: str = field(default="resnet20,resnet56", metadata={"help": "comma-separated"})


def run(options: Options) -> BenchResult:
    require_shared_data()
    rows: list[dict[str, Any]] = []
    for name in options.networks.split(","):
        weights = SHARED / f"{name}-cifar10.th"
        q = quantize(name, weights=str(weights), data=TRAIN, config=QuantizeConfig(calib_limit=512), eval_limit=0)
        snn = to_snn(q, coding="sws", Tc=8, Ts=2)
        for dtype in ("float32", "float64") if options.float64 else ("float32",):
            start = time.perf_counter()
            report = evaluate(q, snn, EvaluateConfig(data=TEST, limit=options.images, reports=("accuracy",),
                                                     dtype=dtype))
            acc = report.accuracy
            top1 = {s.model: s.top1 for s in acc.scores}
            row = {"network": name, "dtype": dtype, "T_inf": snn.info.get("latency"), "images": acc.images,
                   "float_top1": top1["float ANN"], "exact_top1": top1["quantized ANN"], "snn_top1": top1["SNN"],
                   "run_top1": acc.quantized_run.top1, "agreement_exact": acc.agreement_snn_quantized,
                   "agreement_run": acc.quantized_run.agreement_snn, "run_vs_exact": acc.quantized_run.agreement_exact,
                   "seconds": time.perf_counter() - start}
            print(row, flush=True)
            rows.append(row)
    lines = ["# SWS agreement: the exact integer reference against the float32 quantized ANN", "",
             f"`python bench/exact_reference.py`: pretrained CIFAR ResNets, 8 bits (calibrated on 512 train-subset "
             f"images; the SWS benchmark uses 1,000, hence other figures), SWS Tc=8 Ts=2, `evaluate` on "
             f"{options.images} stratified CIFAR-10 test images (JPEG).", "",
             "| network | dtype (SNN and ANN run) | T_inf | float top-1 | quantized top-1 (exact / run) | SNN top-1 | "
             "SNN agreement with the exact reference | with the run | run = exact |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['network']} | {r['dtype']} | {r['T_inf']} | {100 * r['float_top1']:.2f} % | "
                     f"{100 * r['exact_top1']:.2f} % / {100 * r['run_top1']:.2f} % | {100 * r['snn_top1']:.2f} % | "
                     f"{100 * r['agreement_exact']:.2f} % | {100 * r['agreement_run']:.2f} % | "
                     f"{100 * r['run_vs_exact']:.2f} % |")
    return BenchResult("exact_reference", {"images": options.images, "rows": rows}, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main(Options, run, __doc__)
