"""Conversion alone (no BPTT), with and without layer-wise calibration, on a CIFAR ResNet.

    python bench/calibration_resnet.py [--model resnet20|resnet56] [--n 2000] [--modes none,bias,layerwise]
        [--only mlif,rate,multibit,spquant] [--calib-limit 1000] [--tag smoke]

The shared pretrained checkpoint (../shared/data/<model>-cifar10.th) is quantized to 8 bits on
--calib-limit train-subset images; each coding is converted once per --calibrate mode (the
coding's own calibration against the float ANN, snnconvert.calibrate: ``bias`` = threshold
scale and bias correction per layer, ``layerwise`` = also a least-squares weight fit, the
command line's default; the quantizer's 1,000 images halved: 500 fitted, 500 held out) and
evaluated on --n stratified test images. Rows: M-LIF S=3 T=1, rate T=8, multi-bit B_s=2 T=1,
SpQuant T=2. Columns: top-1, agreement
with the float ANN, calibration seconds and the held-out proxy before -> after.
Writes bench/results/calibration_<model>[_<tag>].{json,md} (on the benchmark harness). Public API only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from common import SHARED, TEST, TRAIN
from harness import BenchOptions, BenchResult, main

import snnconvert
from snnconvert.evaluate import EvaluateConfig, evaluate
from snnconvert.quantize import QuantizeConfig

CASES = {
    "mlif": ("M-LIF S=3 T=1", {"S": 3, "T": 1}),
    "rate": ("rate T=8", {"T": 8}),
    "multibit": ("multi-bit B_s=2 T=1", {"bits_spike": 2, "T": 1}),
    "spquant": ("SpQuant T=2", {"T": 2}),
}
CALIBRATED = ("mlif", "rate", "multibit", "spquant")  # codings with a --calibrate option


@dataclass
class Options(BenchOptions):
    model: str = field(default="resnet20", metadata={"help": "resnet20 or resnet56"})
    n: int = field(default=2000, metadata={"help": "stratified test images"})
    modes: str = field(default="none,bias,layerwise", metadata={"help": "comma-separated --calibrate modes"})
    only: str = field(default=",".join(CASES), metadata={"help": "comma-separated codings: " + ", ".join(CASES)})
    calib_limit: int = field(default=1000, metadata={"help": "quantize's calibration images"})


def markdown(model: str, rows: list[dict], float_top1: float, n: int) -> str:
    lines = [f"{model} / CIFAR-10 (JPEG), conversion only, {n} stratified test images; float ANN top-1 "
             f"{100 * float_top1:.2f}%.", "",
             "| coding | calibration | top-1 | agreement with float | calibration time | proxy top-1 before -> after |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        cal = r.get("calibration") or {}
        proxy = (f"{100 * cal['before']['top1']:.1f}% -> {100 * cal['after']['top1']:.1f}%"
                 if cal.get("before") else "-") + (" (undone: agreement fell)" if cal.get("reverted") else "")
        seconds = f"{cal['seconds']:.1f} s" if cal.get("seconds") is not None else "-"
        lines.append(f"| {r['label']} | {r['mode']} | {100 * r['top1']:.2f}% | {100 * r['agreement']:.2f}% | "
                     f"{seconds} | {proxy} |")
    return "\n".join(lines) + "\n"


def run(options: Options) -> BenchResult:
    if options.model not in ("resnet20", "resnet56"):
        raise SystemExit(f"--model must be resnet20 or resnet56, not {options.model!r}")
    checkpoint = SHARED / f"{options.model}-cifar10.th"
    if not checkpoint.is_file():
        raise SystemExit(f"benchmark data not found: {checkpoint} (set SNNCONVERT_SHARED_DATA)")
    q = snnconvert.quantize(options.model, weights=str(checkpoint), data=TRAIN,
                            config=QuantizeConfig(bits=8, calib_limit=options.calib_limit), eval_limit=0)
    eval_cfg = EvaluateConfig(data=TEST, limit=options.n, reports=("accuracy",), device=options.device)
    rows: list[dict[str, Any]] = []
    float_top1 = float("nan")
    for key in options.only.split(","):
        label, coding_options = CASES[key]
        for mode in options.modes.split(","):
            if key not in CALIBRATED and mode != "none":
                continue
            start = time.perf_counter()
            snn = snnconvert.to_snn(q, key, **coding_options, calibrate=mode)
            convert_s = time.perf_counter() - start
            report = evaluate(q, snn, eval_cfg)
            scores = {s.model: s.top1 for s in report.accuracy.scores}
            float_top1 = scores["float ANN"]
            row = {"coding": key, "label": label, "options": coding_options, "mode": mode, "top1": scores["SNN"],
                   "agreement": report.accuracy.agreement_snn_float, "convert_seconds": convert_s,
                   "calibration": snn.info.get("calibration")}
            rows.append(row)
            print({k: v for k, v in row.items() if k != "calibration"},
                  (row["calibration"] or {}).get("seconds"), flush=True)
    data = {"model": options.model, "n_test": options.n, "calib_limit": options.calib_limit,
            "float_top1": float_top1, "rows": rows}
    return BenchResult(f"calibration_{options.model}", data, markdown(options.model, rows, float_top1, options.n))


if __name__ == "__main__":
    main(Options, run, __doc__)
