"""Balanced-ternary SWS (beta 3, Tc 6) against binary SWS (beta 2, Tc 8) on ResNet-20 / CIFAR-10.

    python bench/sws_beta3_resnet20.py [--n 2000] [--skip-auto] [--auto-agreement 0.997]

The shared ResNet-20 quantized to 8 bits (calibration: 1,000 of the 5,000 train-subset images),
converted with beta 2 (Tc 8) and beta 3 (Tc 6, the default for 8 bits) at Ts 0, 1, 2 and Ts = Tc,
and with --Ts auto (agreement target --auto-agreement on 2,000 train-subset calibration images);
evaluated on --n stratified test images. Per row: top-1, agreement with the 8-bit ANN, T_inf, OPF
(ternary spikes: every non-zero input is one addition or subtraction), energy, and the SNN /
quantized-ANN wall time of the evaluation, also per coding step (Tc dense frames are the floor).
Writes bench/results/sws_beta3_resnet20.{json,md}.
"""

from __future__ import annotations

import argparse
import os
import time

from common import CHECKPOINT, RESULTS, TEST, TRAIN, machine, require_shared_data, start_process, write_json

import snnconvert
from snnconvert.atomic import write_atomically
from snnconvert.evaluate import EvaluateConfig, evaluate
from snnconvert.quantize import QuantizeConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=2000, help="test images (stratified)")
    parser.add_argument("--skip-auto", action="store_true", help="leave out the --Ts auto rows")
    parser.add_argument("--auto-agreement", type=float, default=0.997,
                        help="--Ts auto: agreement with the 8-bit ANN to keep on the calibration images")
    args = parser.parse_args()
    require_shared_data()
    started = time.perf_counter()
    results: dict = {"machine": machine(), "n_test": args.n, "load_average_start": os.getloadavg()}
    q8 = snnconvert.quantize("resnet20", weights=str(CHECKPOINT), data=TRAIN, calib_split=1.0,
                             config=QuantizeConfig(bits=8, calib_limit=1000), eval_limit=0)
    config = EvaluateConfig(data=TEST, limit=args.n, reports=("accuracy", "latency", "opf", "energy"))
    rows = []
    for beta, tc in ((2.0, 8), (3.0, 6)):
        settings: list = [0, 1, 2, tc] + ([] if args.skip_auto else ["auto"])
        for ts in settings:
            t0 = time.perf_counter()
            options = {"auto_agreement": args.auto_agreement} if ts == "auto" else {}
            snn = snnconvert.to_snn(q8, "sws", beta=beta, Ts=ts, **options)
            convert_s = time.perf_counter() - t0
            assert snn.info["Tc"] == tc
            report = evaluate(q8, snn, config, show_progress=True)
            scores = {s.model: s.top1 for s in report.accuracy.scores}
            row = {
                "beta": beta, "Tc": tc, "Ts": ts if ts != "auto" else snn.info["Ts"], "Ts_setting": str(ts),
                "T_inf": snn.info["T_inf"], "snn_top1": scores["SNN"], "quantized_top1": scores["quantized ANN"],
                "float_top1": scores["float ANN"], "agreement": report.accuracy.agreement_snn_quantized,
                "opf": report.ops.opf, "energy_snn_uj": report.ops.energy_snn_uj,
                "energy_ann_uj": report.ops.energy_ann_uj, "snn_seconds": report.timing.snn_seconds,
                "quantized_seconds": report.timing.quantized_seconds, "convert_seconds": convert_s,
                "snn_over_quantized": report.timing.snn_over_quantized,
                "snn_over_quantized_per_coding_step": report.timing.snn_over_quantized / tc,
            }
            rows.append(row)
            print(f"beta {beta:g} Tc {tc} Ts {ts}: T_inf {row['T_inf']}, top-1 {row['snn_top1']:.2%}, "
                  f"agreement {row['agreement']:.2%}, OPF {row['opf']:.3g}, convert {convert_s:.0f} s", flush=True)
    results["rows"] = rows
    results["wall_seconds"] = time.perf_counter() - started
    results["load_average_end"] = os.getloadavg()
    path = write_json("sws_beta3_resnet20.json", results)
    lines = ["| beta | Tc | Ts | T_inf | SNN top-1 | agreement with 8-bit ANN | OPF | SNN energy (uJ) | "
             "SNN / ANN time | per coding step |",
             "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        ts = r["Ts_setting"] if r["Ts_setting"] != "auto" else "auto (per layer)"
        lines.append(f"| {r['beta']:g} | {r['Tc']} | {ts} | {r['T_inf']} | {r['snn_top1']:.2%} | {r['agreement']:.2%} "
                     f"| {r['opf']:.4g} | {r['energy_snn_uj']:.4g} | {r['snn_over_quantized']:.2f}x "
                     f"| {r['snn_over_quantized_per_coding_step']:.2f}x |")
    lines.append("")
    lines.append(f"float ANN {rows[0]['float_top1']:.2%}, 8-bit ANN {rows[0]['quantized_top1']:.2%}, "
                 f"{args.n} stratified test images; --Ts auto target {args.auto_agreement:.1%} on calibration images; "
                 f"wall time {results['wall_seconds']:.0f} s; "
                 f"load average {results['load_average_start']} -> {results['load_average_end']}")
    text = "\n".join(lines) + "\n"
    write_atomically(RESULTS / "sws_beta3_resnet20.md", lambda h: h.write(text.encode()))
    print(text)
    print(path)


if __name__ == "__main__":
    start_process()
    main()
