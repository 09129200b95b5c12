"""Every coding across its latency knob on ResNet-20 / CIFAR-10 (../shared/data), conversion only.

    python bench/codings_resnet20.py [--n 2000] [--only rate,mlif,multibit,sws] [--rate-T 16,32,64]
        [--multibit-T 1,2,4] [--multibit-bits 2,4,8] [--calib-limit 1000] [--suffix _smoke]

Rows: rate T = 16..256; M-LIF S in 1..4 x T in 1,2,4,8; multi-bit B_s in 2,4,8 x T in 1,2,4; SWS Tc=8
for reference. Columns: top-1, agreement with the float ANN, latency (time steps), spike rate
(spikes per neuron per inference), OPF and delta = E_ANN / E_SNN. Multi-bit rows also carry the
figures of paper 002: ``bit_budget`` (eq 7), ``S-ACE`` (eq 8), ``NS-ACE`` (eq 9, from the recorded
spikes) and ``model_size_MB``, with float weights, biases and analog values counted at
``float_bits`` = 16 bits as the paper does (the 8-bit quantized weights count 8). Calibration:
--calib-limit (1,000) train-subset images; evaluation: --n stratified test images, decoded once and
shared by all rows. Writes bench/results/codings_resnet20[_<only>][<suffix>].json and .png.
"""

from __future__ import annotations

import argparse
import dataclasses

from common import CHECKPOINT, RESULTS, TEST, TRAIN, machine, require_shared_data, start_process, write_json

import snnconvert
from snnconvert.evaluate import EvaluateConfig, evaluate
from snnconvert.quantize import QuantizeConfig
from snnconvert.reports.plots import accuracy_latency_plot

GRIDS = {
    "rate": ({"T": 16, "percentile": 99.9}, {"T": [16, 32, 64, 128, 256]}),
    "mlif": ({"S": 1, "T": 1}, {"S": [1, 2, 3, 4], "T": [1, 2, 4, 8]}),
    "multibit": ({"bits_spike": 2, "T": 1}, {"bits_spike": [2, 4, 8], "T": [1, 2, 4]}),
    "sws": ({"Tc": 8, "Ts": 2}, {"Ts": [0, 1, 2]}),
}
MULTIBIT_FIGURES = ("bit_budget", "S-ACE", "NS-ACE", "model_size_MB", "float_bits", "T_avg", "bits_spike_avg",
                    "bits_weight_avg", "firing_rate")


def _ints(text: str) -> list[int]:
    return [int(t) for t in text.split(",")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--only", default=",".join(GRIDS))
    parser.add_argument("--rate-T", default=None, help="override the rate coding's T values (e.g. 16,32,64)")
    parser.add_argument("--multibit-T", default=None, help="override the multi-bit T values (e.g. 1,2)")
    parser.add_argument("--multibit-bits", default=None, help="override the multi-bit B_s values (e.g. 2,4)")
    parser.add_argument("--calib-limit", type=int, default=1000, help="calibration images")
    parser.add_argument("--suffix", default="", help="appended to the result file names (e.g. _smoke)")
    args = parser.parse_args()
    if args.rate_T:
        GRIDS["rate"][1]["T"] = _ints(args.rate_T)
    if args.multibit_T:
        GRIDS["multibit"][1]["T"] = _ints(args.multibit_T)
    if args.multibit_bits:
        GRIDS["multibit"][1]["bits_spike"] = _ints(args.multibit_bits)
    require_shared_data()
    q8 = snnconvert.quantize("resnet20", weights=str(CHECKPOINT), data=TRAIN,
                             config=QuantizeConfig(bits=8, calib_limit=args.calib_limit), eval_limit=0)
    config = EvaluateConfig(data=TEST, limit=args.n, reports=("accuracy",))
    rows, float_top1 = [], None
    for coding in args.only.split(","):
        base, sweep = GRIDS[coding]
        snn = snnconvert.to_snn(q8, coding, **base)
        report = evaluate(q8, snn, dataclasses.replace(config, sweep=sweep), show_progress=True)
        float_top1 = next(s.top1 for s in report.accuracy.scores if s.model == "float ANN")
        for r in report.sweep:
            row = {"coding": coding, **dataclasses.asdict(r), "float_top1": float_top1}
            figures = row.pop("coding_metrics")
            if coding == "multibit":  # eqs 7-9 and the size, counted at float_bits (16) for floats
                row.update({k: figures.get(k) for k in MULTIBIT_FIGURES})
            rows.append(row)
            print(row, flush=True)
    results = {"machine": machine(), "n_test": args.n, "rows": rows}
    suffix = "" if set(args.only.split(",")) == set(GRIDS) else "_" + "_".join(args.only.split(","))
    suffix += args.suffix
    path = write_json(f"codings_resnet20{suffix}.json", results)
    series: dict[str, list] = {}
    for r in rows:
        setting = r["setting"]
        label = {"mlif": f"M-LIF S={setting.get('S')}", "multibit": f"multi-bit B_s={setting.get('bits_spike')}",
                 "rate": "rate (IF)", "sws": "SWS Tc=8"}[r["coding"]]
        series.setdefault(label, []).append((r["latency"], r["top1"], ""))
    accuracy_latency_plot(series, {"float ANN": float_top1}, RESULTS / f"codings_resnet20{suffix}.png",
                          title="ResNet-20 / CIFAR-10: conversion without fine-tuning", log_x=True)
    print("\n| coding | setting | top-1 | delta vs float | latency | spikes/neuron | OPF | delta (E_ANN/E_SNN) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        setting = ", ".join(f"{k}={v}" for k, v in r["setting"].items())
        print(f"| {r['coding']} | {setting} | {100 * r['top1']:.2f}% | {100 * (r['top1'] - float_top1):+.2f} | "
              f"{r['latency']} | {r['spike_rate']:.3f} | {r['opf'] / 1e6:.1f}M | {r['delta']:.2f}x |")
    multibit = [r for r in rows if r["coding"] == "multibit"]
    if multibit:
        print(f"\nmulti-bit figures (paper 002 eqs 7-9; floats counted at {multibit[0]['float_bits']} bits)")
        print("| B_s | T | top-1 | bit budget (eq 7) | S-ACE (eq 8, G) | NS-ACE (eq 9, G) | size (MB) |")
        print("|---|---|---|---|---|---|---|")
        for r in multibit:
            ns = "-" if r["NS-ACE"] is None else f"{r['NS-ACE'] / 1e9:.3f}"
            print(f"| {r['setting'].get('bits_spike')} | {r['setting'].get('T')} | {100 * r['top1']:.2f}% | "
                  f"{r['bit_budget']:.1f} | {r['S-ACE'] / 1e9:.3f} | {ns} | {r['model_size_MB']:.4f} |")
    print(f"\nfloat ANN top-1 {100 * float_top1:.2f}% on {args.n} test images; {path}")


if __name__ == "__main__":
    start_process()
    main()
