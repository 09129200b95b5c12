"""The SWS paper's fig 5b on the shared ResNet-20: the TSA threshold lowered or not, with and
without a silent period.

    python bench/sws_threshold_ablation.py [--limit 2000] [--Ts 2]

The pretrained ResNet-20 quantized to 8 bits on 1,000 cifar10/train-subset images (as the SWS
benchmark does), converted with Tc = 8 and each of: V_th = theta beta^Ts (``lowered_threshold=
False``) or theta beta^Ts / 2 (the paper's), Ts = 0 or ``--Ts``; evaluated on ``--limit``
stratified cifar10/test images (top-1 of the SNN, agreement with the exact quantized ANN, mean
|residual| of the TSA layers in units of theta, fig 5a's measure). The paper (ResNet-18, CIFAR-10):
about chance, 35.41 % lowered only, 84.21 % silent period only, 95.68 % both.
Writes bench/results/sws_threshold_ablation[_<tag>].{json,md}. Public API only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from common import CHECKPOINT, TEST, TRAIN, require_shared_data
from harness import BenchOptions, BenchResult, main

import snnconvert
from snnconvert.evaluate import EvaluateConfig, evaluate
from snnconvert.quantize import QuantizeConfig


@dataclass
class Options(BenchOptions):
    limit: int = field(default=2000, metadata={"help": "stratified test images"})
    Ts: int = field(default=2, metadata={"help": "the silent period of the arms that have one"})


def run(options: Options) -> BenchResult:
    require_shared_data()
    q = snnconvert.quantize("resnet20", weights=str(CHECKPOINT), data=TRAIN,
                            config=QuantizeConfig(bits=8, calib_limit=1000), eval_limit=0)
    eval_cfg = EvaluateConfig(data=TEST, limit=options.limit, reports=("accuracy", "residual"), device=options.device)
    rows: list[dict[str, Any]] = []
    for lowered in (False, True):
        for ts in (0, options.Ts):
            snn = snnconvert.to_snn(q, "sws", Tc=8, Ts=ts, lowered_threshold=lowered)
            report = evaluate(q, snn, eval_cfg)
            scores = {s.model: s.top1 for s in report.accuracy.scores}
            residuals = report.coding_reports.get("residual") or []
            mean_abs = (sum(r["mean_abs"] for r in residuals) / len(residuals)) if residuals else None
            rows.append({"lowered_threshold": lowered, "Ts": ts, "T_inf": snn.info["T_inf"], "snn_top1": scores["SNN"],
                         "float_top1": scores["float ANN"], "quantized_top1": scores["quantized ANN"],
                         "agreement": report.accuracy.agreement_snn_quantized, "mean_abs_residual": mean_abs,
                         "images": report.accuracy.images, "layers": len(residuals)})
            print(rows[-1], flush=True)
    return BenchResult("sws_threshold_ablation", {"rows": rows}, markdown(rows))


def markdown(rows: list[dict[str, Any]]) -> str:
    first = rows[0]
    lines = [f"ResNet-20 SWS Tc=8, 8-bit, {first['images']} stratified CIFAR-10 test images (float ANN "
             f"{100 * first['float_top1']:.2f} %, quantized ANN {100 * first['quantized_top1']:.2f} %). The paper's "
             "fig 5b (ResNet-18), in the same row order: about chance, 84.21 %, 35.41 %, 95.68 %.", "",
             "| threshold V_th | Ts | T_inf | SNN top-1 | agreement with the quantized ANN | mean abs residual "
             "(theta) |", "|---|---|---|---|---|---|"]
    for r in rows:
        threshold = "theta beta^Ts / 2 (lowered)" if r["lowered_threshold"] else "theta beta^Ts (not lowered)"
        residual = f"{r['mean_abs_residual']:.3f}" if r["mean_abs_residual"] is not None else "-"
        lines.append(f"| {threshold} | {r['Ts']} | {r['T_inf']} | {100 * r['snn_top1']:.2f} % | "
                     f"{100 * r['agreement']:.2f} % | {residual} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main(Options, run, __doc__)
