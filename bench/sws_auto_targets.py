"""``--Ts auto`` against its promise on test images (issue 27, items 2 and 3).

The pretrained CIFAR ResNet-20 and ResNet-56 (../shared/data), 8 bits calibrated on ``--calib``
train-subset images, SWS Tc=8: Ts=2 everywhere, then ``--Ts auto`` at each ``--targets`` agreement
(0.995 is the default) with every other search option at its default (so the search runs on the
calibration pool, a fifth held out). Each network is evaluated with ``evaluate``'s defaults on
``--images`` stratified CIFAR-10 test images. Per row: T_inf, search time and rounds, the target it
searched at, the search's own agreement, its held-out estimate, the test agreement with the exact
integer reference and with the float32 quantized ANN, and SNN top-1 minus float top-1.

    python bench/sws_auto_targets.py [--networks resnet20,resnet56] [--targets 0.99,0.995,0.997]
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
    calib: int = field(default=1000, metadata={"help": "calibration images (train-subset): the search's pool"})
    networks: str = field(default="resnet20,resnet56", metadata={"help": "comma-separated"})
    targets: str = field(default="0.99,0.995,0.997", metadata={"help": "--auto-agreement values"})


def _row(name: str, setting: str, q, snn, images: int, search_s: float) -> dict[str, Any]:
    report = evaluate(q, snn, EvaluateConfig(data=TEST, limit=images, reports=("accuracy",)))
    acc = report.accuracy
    top1 = {s.model: s.top1 for s in acc.scores}
    auto = snn.info.get("auto") or {}
    held = auto.get("holdout") or {}
    return {"network": name, "setting": setting, "T_inf": snn.info["latency"], "search_seconds": search_s,
            "rounds": len(auto.get("rounds", [])), "search_target": auto.get("search_target"),
            "searched_agreement": auto.get("searched_agreement"), "holdout_agreement": held.get("agreement"),
            "holdout_images": held.get("images"), "searched_images": auto.get("images"),
            "test_agreement_exact": acc.agreement_snn_quantized,
            "test_agreement_float32_run": acc.quantized_run.agreement_snn,
            "float_top1": top1["float ANN"], "snn_top1": top1["SNN"],
            "snn_minus_float": top1["SNN"] - top1["float ANN"], "snn_over_quantized": report.timing.snn_over_quantized,
            "threads": report.timing.threads, "images": acc.images}


def run(options: Options) -> BenchResult:
    require_shared_data()
    rows: list[dict[str, Any]] = []
    for name in options.networks.split(","):
        q = quantize(name, weights=str(SHARED / f"{name}-cifar10.th"), data=TRAIN,
                     config=QuantizeConfig(calib_limit=options.calib), eval_limit=0)
        settings: list[tuple[str, dict[str, Any]]] = [("Ts=2", {"Ts": 2})]
        settings += [(f"--Ts auto --auto-agreement {t}", {"Ts": "auto", "auto_agreement": float(t)})
                     for t in options.targets.split(",")]
        for label, kwargs in settings:
            start = time.perf_counter()
            snn = to_snn(q, coding="sws", Tc=8, **kwargs)
            row = _row(name, label, q, snn, options.images, time.perf_counter() - start)
            print(row, flush=True)
            rows.append(row)

    return BenchResult("sws_auto_targets", {"images": options.images, "calibration_images": options.calib,
                                            "rows": rows}, markdown(rows, options.images, options.calib))


def markdown(rows: list[dict[str, Any]], images: int, calib: int) -> str:
    """The result table (also rebuilt from a result's JSON rows)."""

    def pct(x: float | None) -> str:
        return "—" if x is None else f"{100 * x:.2f} %"

    lines = ["# `--Ts auto`: the search's estimates against test images", "",
             f"`python bench/sws_auto_targets.py`: pretrained CIFAR ResNets, 8 bits calibrated on {calib} "
             f"train-subset images (the search's pool: a fifth held out), SWS Tc=8, `evaluate` defaults on "
             f"{images} stratified CIFAR-10 test images (JPEG). Agreement is top-1 agreement with the "
             "quantized ANN in exact integer arithmetic unless marked float32 (the same ANN run in float32).", "",
             "| network | setting | T_inf | search time | rounds (searched at) | searched | held out (estimate) | "
             "test (exact) | test (float32 ANN) | SNN - float |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        searched_at = f"{r['rounds']} ({100 * r['search_target']:.3f} %)" if r["rounds"] else "—"
        lines.append(f"| {r['network']} | {r['setting']} | {r['T_inf']} | {r['search_seconds']:.0f} s | "
                     f"{searched_at} | "
                     f"{pct(r['searched_agreement'])} | {pct(r['holdout_agreement'])} | "
                     f"{pct(r['test_agreement_exact'])} | {pct(r['test_agreement_float32_run'])} | "
                     f"{100 * r['snn_minus_float']:+.2f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main(Options, run, __doc__)
