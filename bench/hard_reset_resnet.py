"""What NIR's hard reset costs on ResNet-20, and what calibration wins back.

    python bench/hard_reset_resnet.py [--limit 2000] [--T 32] [--modes bias,layerwise]

NIR's IF resets to 0 and starts at 0; snnconvert's rate coding resets by subtraction and starts at
theta/2 (its default, which NIR consumers do not run). The shared ResNet-20 is quantized to 8 bits
on 512 cifar10/train-subset images (as ``bench/nir_consumers.py`` does), converted to rate coding
with each neuron scheme (``reset="subtract", half_init=True`` / ``reset="zero", half_init=False``)
and each ``--calibrate`` mode, and evaluated on ``--limit`` stratified cifar10/test images.
Writes bench/results/hard_reset_resnet[_<tag>].{json,md}. Public API only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from common import CHECKPOINT, TEST, TRAIN, require_shared_data
from harness import BenchOptions, BenchResult, main

import snnconvert
from snnconvert.evaluate import EvaluateConfig, evaluate
from snnconvert.quantize import QuantizeConfig

SCHEMES = {"soft reset, start theta/2 (snnconvert)": {"reset": "subtract", "half_init": True},
           "hard reset, start 0 (NIR)": {"reset": "zero", "half_init": False}}


@dataclass
class Options(BenchOptions):
    limit: int = field(default=2000, metadata={"help": "stratified test images"})
    T: int = field(default=32, metadata={"help": "time steps"})
    modes: str = field(default="bias,layerwise", metadata={"help": "comma-separated --calibrate modes"})


def run(options: Options) -> BenchResult:
    require_shared_data()
    q = snnconvert.quantize("resnet20", weights=str(CHECKPOINT), data=TRAIN, config=QuantizeConfig(calib_limit=512),
                            eval_limit=0)
    eval_cfg = EvaluateConfig(data=TEST, limit=options.limit, reports=("accuracy",), device=options.device)
    rows: list[dict[str, Any]] = []
    for label, scheme in SCHEMES.items():
        for mode in options.modes.split(","):
            start = time.perf_counter()
            snn = snnconvert.to_snn(q, "rate", T=options.T, calibrate=mode, **scheme)
            convert_s = time.perf_counter() - start
            report = evaluate(q, snn, eval_cfg)
            scores = {s.model: s.top1 for s in report.accuracy.scores}
            cal = snn.info.get("calibration") or {}
            rows.append({"scheme": label, **scheme, "calibrate": mode, "T": options.T, "snn_top1": scores["SNN"],
                         "float_top1": scores["float ANN"], "quantized_top1": scores["quantized ANN"],
                         "images": report.accuracy.images, "convert_seconds": convert_s,
                         "calibration_seconds": cal.get("seconds"), "reverted": cal.get("reverted")})
            print(rows[-1], flush=True)
    return BenchResult("hard_reset_resnet", {"rows": rows}, markdown(rows, options))


def markdown(rows: list[dict[str, Any]], options: Options) -> str:
    lines = [f"ResNet-20 rate coding T={options.T}, 8-bit, {rows[0]['images']} stratified CIFAR-10 test images "
             f"(float ANN {100 * rows[0]['float_top1']:.2f} %, quantized ANN {100 * rows[0]['quantized_top1']:.2f} %).",
             "", "| neuron | calibration | SNN top-1 | calibration time |", "|---|---|---|---|"]
    for r in rows:
        seconds = f"{r['calibration_seconds']:.1f} s" if r["calibration_seconds"] is not None else "-"
        lines.append(f"| {r['scheme']} | {r['calibrate']}{' (undone)' if r['reverted'] else ''} | "
                     f"{100 * r['snn_top1']:.2f} % | {seconds} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main(Options, run, __doc__)
