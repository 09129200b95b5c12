"""SWS on ResNet-20 / CIFAR-10 (../shared/data): fidelity, --Ts auto latency, speed, 4-bit QAT.

    python bench/sws_resnet20.py [--n 2000] [--skip-qat] [--skip-resnet50]
    python bench/sws_resnet20.py --speed-only     # the speed ratio alone, for a quiet machine
    python bench/sws_resnet20.py --auto-only      # the --Ts auto search and its test accuracy alone

Calibration on the train-subset (1,000 images), evaluation on --n stratified test images.
Prints one table and writes bench/results/sws_resnet20.json and sws_resnet20_accuracy_vs_tinf.png.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import CHECKPOINT, RESULTS, TEST, TRAIN, machine, require_shared_data, start_process, write_json

import snnconvert
from snnconvert.evaluate import EvaluateConfig, evaluate
from snnconvert.methods.sws.coding import search_plot
from snnconvert.quantize import QuantizeConfig
from snnconvert.reports.plots import accuracy_latency_plot


def pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def frontier_png(row: dict, stem: str) -> Path:
    """The search's T_inf against calibration agreement (every evaluation) as ``<stem>_frontier.png``."""
    with tempfile.TemporaryDirectory() as tmp:
        (png,) = search_plot(row["search"], Path(tmp), "ResNet-20, Tc=8")
        target = RESULTS / f"{stem}_frontier.png"
        shutil.copyfile(png, target)
    return target


def speed_rounds(q8, base: EvaluateConfig, rounds: int, results: dict) -> None:
    """SNN / quantized-ANN evaluation wall time, beta 2 (Tc=8 Ts=2) and beta 3 (Tc=6 Ts=2): each
    round evaluates both networks (each evaluation times the float ANN, the quantized ANN and the
    SNN on the same images, one after the other); medians over the rounds, and the page faults."""
    networks = {"beta 2, Tc=8 Ts=2": snnconvert.to_snn(q8, "sws", Tc=8, Ts=2),
                "beta 3, Tc=6 Ts=2": snnconvert.to_snn(q8, "sws", Tc=6, Ts=2, beta=3)}
    samples: dict[str, dict[str, list[float]]] = {name: {"snn": [], "quantized": [], "ratio": [], "faults": []}
                                                 for name in networks}
    evaluate(q8, networks["beta 2, Tc=8 Ts=2"], dataclasses.replace(base, limit=100))  # warm-up
    for r in range(rounds):
        for name, snn in networks.items():
            faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            timing = evaluate(q8, snn, base, show_progress=True).timing
            got = samples[name]
            got["snn"].append(timing.snn_seconds)
            got["quantized"].append(timing.quantized_seconds)
            got["ratio"].append(timing.snn_over_quantized)
            got["faults"].append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults)
            print(f"round {r + 1}/{rounds} {name}: SNN {timing.snn_seconds:.1f} s, quantized ANN "
                  f"{timing.quantized_seconds:.2f} s, {timing.snn_over_quantized:.2f}x, "
                  f"{got['faults'][-1]} page faults", flush=True)
    quantized = statistics.median(v for got in samples.values() for v in got["quantized"])
    rows = []
    for name, snn in networks.items():
        got = samples[name]
        snn_s = statistics.median(got["snn"])
        rows.append({"setting": name, "Tc": snn.info["Tc"], "T_inf": snn.info["T_inf"], "snn_seconds": got["snn"],
                     "quantized_seconds": got["quantized"], "ratios": got["ratio"], "page_faults": got["faults"],
                     "snn_median_s": snn_s, "snn_over_quantized": snn_s / quantized,
                     "per_coding_step": snn_s / quantized / snn.info["Tc"]})
    results.update({"rows": rows, "rounds": rounds, "images": base.limit, "quantized_median_s": quantized,
                    "speed_ratio": rows[0]["snn_over_quantized"], "speed_ratio_goal": 8.8,
                    "beta3_per_step_over_beta2": rows[1]["per_coding_step"] / rows[0]["per_coding_step"],
                    "load_average_end": os.getloadavg()})
    path = write_json("sws_resnet20_speed.json", results)
    print(f"\n{base.limit} test images, {rounds} rounds, medians; quantized ANN {quantized:.2f} s")
    print("| network | T_inf | SNN s | SNN / quantized ANN | per coding step | each round |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['setting']} | {row['T_inf']} | {row['snn_median_s']:.1f} | {row['snn_over_quantized']:.2f}x | "
              f"{row['per_coding_step']:.2f}x | {', '.join(f'{v:.2f}x' for v in row['ratios'])} |")
    print(f"beta 3 per coding step / beta 2 per coding step: {results['beta3_per_step_over_beta2']:.2f}; "
          f"allocator tuned: {results['machine']['allocator_tuned']}; {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=2000, help="test images (stratified)")
    parser.add_argument("--skip-qat", action="store_true")
    parser.add_argument("--skip-resnet50", action="store_true")
    parser.add_argument("--speed-only", action="store_true",
                        help="only the speed: SNN vs quantized-ANN wall time, beta 2 Tc=8 Ts=2 and beta 3 Tc=6 Ts=2, "
                             "medians of --rounds alternating evaluations (writes sws_resnet20_speed.json)")
    parser.add_argument("--rounds", type=int, default=3, help="--speed-only: evaluations of each network")
    parser.add_argument("--auto-only", action="store_true",
                        help="only Tc=8 Ts=auto: search, T_inf, test accuracy (writes sws_resnet20_auto.json)")
    parser.add_argument("--auto-budget-s", type=float, default=None,
                        help="--Ts auto: seconds for its per-layer search after the uniform one (default: none)")
    parser.add_argument("--auto-agreement", type=float, default=0.995,
                        help="--Ts auto: agreement with the 8-bit ANN to keep on the calibration images; results "
                             "of a target other than 0.995 go to sws_resnet20_auto_target<per mille>.json")
    parser.add_argument("--reuse-auto", action="store_true",
                        help="take the Ts=auto setting from sws_resnet20_auto.json (an earlier --auto-only run) "
                             "instead of searching again; the row is still evaluated here")
    args = parser.parse_args()
    auto_file = ("sws_resnet20_auto.json" if args.auto_agreement == 0.995
                 else f"sws_resnet20_auto_target{round(1000 * args.auto_agreement)}.json")
    require_shared_data()
    results: dict = {"machine": machine(), "n_test": args.n, "load_average_start": os.getloadavg()}

    print("quantizing ResNet-20 to 8 bits (calibration: 1,000 of the 5,000 train-subset images) ...", flush=True)
    # the whole train subset (5,000 images) is the calibration pool: ranges from 1,000 of them,
    # and --Ts auto's default sample of 2,000 from the same pool (never the test split)
    q8 = snnconvert.quantize("resnet20", weights=str(CHECKPOINT), data=TRAIN, calib_split=1.0,
                             config=QuantizeConfig(bits=8, calib_limit=1000), eval_limit=0)
    base = EvaluateConfig(data=TEST, limit=args.n, reports=("accuracy", "latency", "opf", "energy"))

    rows = []
    if args.speed_only:
        speed_rounds(q8, base, args.rounds, results)
        return

    def run(label: str, snn, q=q8, dtype: str = "float32", limit: int | None = None) -> dict:
        cfg = dataclasses.replace(base, dtype=dtype, limit=limit or args.n)
        report = evaluate(q, snn, cfg, show_progress=True)
        scores = {s.model: s.top1 for s in report.accuracy.scores}
        row = {
            "setting": label,
            "images": report.accuracy.images,
            "float_top1": scores["float ANN"],
            "quantized_top1": scores["quantized ANN"],
            "snn_top1": scores.get("SNN"),
            "agreement_snn_quantized": report.accuracy.agreement_snn_quantized,
            "T_inf": report.snn_info.get("T_inf"),
            "Ts": report.snn_info.get("Ts"),
            "opf": report.ops.opf if report.ops else None,
            "delta": report.ops.delta if report.ops else None,
            "quantized_seconds": report.timing.quantized_seconds,
            "snn_seconds": report.timing.snn_seconds,
            "snn_over_quantized": report.timing.snn_over_quantized,
            "snn_images_per_second": report.timing.snn_images_per_second,
            "peak_rss_mb": report.timing.peak_rss_mb,
            "dtype": dtype,
        }
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "Ts"}), flush=True)
        return row

    def reuse_auto() -> dict:
        saved = json.loads((RESULTS / auto_file).read_text())
        searched = next(r for r in saved["rows"] if r["setting"] == "Tc=8 Ts=auto")
        row = run("Tc=8 Ts=auto", snnconvert.to_snn(q8, "sws", Tc=8, Ts=list(searched["Ts"])))
        row["search_seconds"] = searched["search_seconds"]
        row["search"] = searched["search"]
        row["search_from"] = f"{auto_file} ({saved['machine']['date']})"
        return row

    def run_auto() -> dict:
        if args.reuse_auto:
            return reuse_auto()
        start = time.perf_counter()
        auto_snn = snnconvert.to_snn(q8, "sws", Tc=8, Ts="auto", show_progress=True,
                                     auto_budget_s=args.auto_budget_s, auto_agreement=args.auto_agreement)
        auto_seconds = time.perf_counter() - start
        row = run("Tc=8 Ts=auto", auto_snn)
        row["search_seconds"] = auto_seconds
        row["search"] = {k: v for k, v in auto_snn.info["auto"].items() if k != "profile"}
        for r in row["search"]["repairs"]:
            print(f"  repair: raised {r['raised']} (head images {r['head_images']}, "
                  f"disagreeing after: {r['head_mismatches'][r['raised']]})")
        for trial in row["search"]["trials"]:
            print(f"  {trial['step']}: calibration agreement {pct(trial['agreement'])}, T_inf {trial['T_inf']}")
        return row

    if args.auto_only:
        auto = run_auto()
        results["rows"] = rows
        results["auto_agreement_target"] = args.auto_agreement
        path = write_json(auto_file, results)
        print(f"frontier: {frontier_png(auto, auto_file.removesuffix('.json'))}")
        print(f"--Ts auto: T_inf {auto['T_inf']} (goal <= 30), test agreement {pct(auto['agreement_snn_quantized'])}, "
              f"top-1 {pct(auto['snn_top1'])} (float {pct(auto['float_top1'])}); search "
              f"{auto['search_seconds']:.0f} s; Ts per layer {auto['Ts']}; {path}")
        return
    main_row = run("Tc=8 Ts=2 (8-bit)", snnconvert.to_snn(q8, "sws", Tc=8, Ts=2))
    ceiling = run("Tc=8 Ts=8 float32 (numerical ceiling)", snnconvert.to_snn(q8, "sws", Tc=8, Ts=8))
    exact = run("Tc=8 Ts=8 float64", snnconvert.to_snn(q8, "sws", Tc=8, Ts=8), dtype="float64", limit=200)
    sweep = [main_row if ts == 2 else run(f"Tc=8 Ts={ts}", snnconvert.to_snn(q8, "sws", Tc=8, Ts=ts))
             for ts in (0, 1, 3)]
    auto = run_auto()

    if not args.skip_qat:
        print("4-bit QAT (12 epochs x 20 batches, the paper's A.2 schedule) ...", flush=True)
        q4 = snnconvert.quantize("resnet20", weights=str(CHECKPOINT), data=TRAIN, calib_split=1.0,
                                 config=QuantizeConfig(bits=4, calib_limit=1000, qat_epochs=12,
                                                       qat_batches_per_epoch=20), eval_limit=0, show_progress=True)
        for ts in (1, 2, 4):
            run(f"4-bit QAT, Tc=4 Ts={ts}", snnconvert.to_snn(q4, "sws", Tc=4, Ts=ts), q=q4)

    if not args.skip_resnet50:
        out = subprocess.run([sys.executable, __file__.replace("sws_resnet20.py", "sws_memory.py")],
                             capture_output=True, text=True, check=True)
        results["resnet50_memory"] = json.loads(out.stdout.strip().splitlines()[-1])

    results["rows"] = rows
    results["targets"] = {
        "fidelity_gap_points": 100 * (main_row["float_top1"] - main_row["snn_top1"]),
        "fidelity_agreement": main_row["agreement_snn_quantized"],
        "float32_ceiling_agreement_at_Ts_eq_Tc": ceiling["agreement_snn_quantized"],
        "float64_agreement_at_Ts_eq_Tc": exact["agreement_snn_quantized"],
        "auto_T_inf": auto["T_inf"],
        "auto_agreement_test": auto["agreement_snn_quantized"],
        "speed_ratio": main_row["snn_over_quantized"],
        "speed_ratio_limit": 1.3 * 8,
    }
    path = write_json("sws_resnet20.json", results)
    points = [(r["T_inf"], r["snn_top1"], r["setting"].replace("Tc=8 ", "")) for r in [*sweep, main_row, auto]]
    accuracy_latency_plot({"SNN (SWS, Tc=8, 8-bit)": points},
                          {"float ANN": main_row["float_top1"], "8-bit ANN": main_row["quantized_top1"]},
                          RESULTS / "sws_resnet20_accuracy_vs_tinf.png",
                          title="ResNet-20 / CIFAR-10: SWS accuracy vs T_inf")
    print("\n| setting | top-1 | agreement w/ quantized | T_inf | OPF | delta | SNN/quantized time |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['setting']} | {pct(r['snn_top1'])} | {pct(r['agreement_snn_quantized'])} | {r['T_inf']} | "
              f"{r['opf'] / 1e6:.1f}M | {r['delta']:.2f}x | {r['snn_over_quantized']:.2f}x |")
    print(f"\nfloat ANN {pct(main_row['float_top1'])}, 8-bit ANN {pct(main_row['quantized_top1'])} on "
          f"{main_row['images']} test images; results in {path}")
    print(f"peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    if "resnet50_memory" in results:
        print(f"ResNet-50 224x224 batch 8 SWS: {results['resnet50_memory']}")


if __name__ == "__main__":
    start_process()
    main()
