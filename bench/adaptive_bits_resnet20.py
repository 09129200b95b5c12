"""Adaptive bit allocation (paper 002) on the shared ResNet-20 / CIFAR-10, CPU, fixed wall time per case.

    flock /tmp/snnconvert-bench.lock .venv/bin/python bench/adaptive_bits_resnet20.py --budget-min 6
    python bench/adaptive_bits_resnet20.py --budget-min 0.5 --cases a,b --limit 200 --tag smoke

The shared 8-bit-calibrated ResNet-20 is converted to a multi-bit SNN (T = 1, 4-bit spikes,
percentile thresholds, 8-bit dequantized weights, floats counted at 16 bits as the paper does),
then each case fine-tunes it with the ``adaptive_bits`` training method for the same wall time:

  a: adaptive, target W/S/T 1/1/1, activation renewal   b: uniform 1/1/1 (U-quant, widths fixed)
  c: adaptive, target 2/2/1, activation renewal          d: uniform 2/2/1
  e: adaptive, target 1/1/1, renewal off (ablation of a)

Adaptive cases start at W/S/T = 4/4/2 (--init-bits; A.5.1's CIFAR setting, so the learned T is
exercised: the network is converted at that T with every layer squeezed), bounds 6/6/3, eq 22 with
lambda = 4e-2 / 4e-2 / 1e-2; widths and step sizes train by A.5.1's SGD (--bits-optimizer sgd,
--bits-lr 0.1, momentum 0.9) or, as before, Adam at their own lr (--bits-optimizer adam). Uniform
cases are converted at T = 1 and quantize every
layer at the target widths from the start and learn only weights and step sizes (LSQ). Training:
Adam (--lr) with a cosine schedule sized to the budget, random crop + flip, batch 64, on
cifar10/train (--train-data) minus a 2 % share that validates; each case stops after the first
"epoch" (--epoch-images) that passes --budget-min. Evaluation: --limit stratified test images:
top-1, bit budget (eq 7), S-ACE (eq 8), NS-ACE (eq 9), model size, learned allocation.
Writes bench/results/adaptive_bits_resnet20[_<tag>].{json,md,png}.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from common import CHECKPOINT, RESULTS, SHARED, TEST, TRAIN, machine, require_shared_data, start_process, write_json

from snnconvert.atomic import write_atomically
from snnconvert.errors import SnnConvertError
from snnconvert.evaluate import EvaluateConfig, EvaluationReport, evaluate
from snnconvert.finetune import FinetuneConfig, finetune
from snnconvert.methods.multibit.metrics import allocation
from snnconvert.pipeline import quantize, to_snn
from snnconvert.quantize import QuantizeConfig

FULL_TRAIN = f"imagefolder:{SHARED / 'cifar10' / 'train'}"
CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "a": ("adaptive 1/1/1", {"target_bits": "1/1/1", "renewal": "activations"}),
    "b": ("uniform 1/1/1", {"target_bits": "1/1/1", "init_bits": "1/1/1", "learn_bits": False}),
    "c": ("adaptive 2/2/1", {"target_bits": "2/2/1", "renewal": "activations"}),
    "d": ("uniform 2/2/1", {"target_bits": "2/2/1", "init_bits": "2/2/1", "learn_bits": False}),
    "e": ("adaptive 1/1/1, no renewal", {"target_bits": "1/1/1", "renewal": "none"}),
}


def measures(report: EvaluationReport) -> dict[str, Any]:
    """Top-1 and the multi-bit figures of an SNN evaluation."""
    bits = report.coding_reports.get("bits") or report.coding_metrics or {}
    keys = ("bit_budget", "T_avg", "bits_spike_avg", "bits_weight_avg", "S-ACE", "NS-ACE", "firing_rate",
            "model_size_MB", "float_bits")
    return {"top1": next(s.top1 for s in report.accuracy.scores if s.model == "SNN"),
            **{k: bits.get(k) for k in keys}}


def edge_layers(layers: list[dict[str, Any]]) -> dict[str, Any]:
    """Paper claim 'first and last layers learn more bits': W and S of the first and last synapse
    against the mean of the layers between."""
    mid = layers[1:-1]

    def mean(key: str) -> float:
        vals = [r[key] for r in mid if r[key] is not None]
        return sum(vals) / max(len(vals), 1)

    first, last = layers[0], layers[-1]
    return {"first_W": first["W"], "first_S": first["S"], "last_W": last["W"], "last_S": last["S"],
            "middle_W_mean": mean("W"), "middle_S_mean": mean("S"),
            "edges_have_more_W": first["W"] > mean("W") and last["W"] > mean("W"),
            "edges_have_more_S": first["S"] > mean("S") and last["S"] > mean("S")}


def plot(rows: list[dict[str, Any]], converted: dict[str, Any], float_top1: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if "finetuned" in r]  # cases the engine stopped have no figures
    if not rows:
        return
    adaptive = [r for r in rows if r["learn_bits"]]
    fig, axes = plt.subplots(len(adaptive) + 1, 1, figsize=(10, 2.6 * (len(adaptive) + 1)), squeeze=False)
    ax = axes[0][0]
    xs = range(len(rows))
    ax.bar(list(xs), [100 * r["finetuned"]["top1"] for r in rows], color="tab:blue")
    ax.axhline(100 * float_top1, color="k", ls="--", lw=1, label="float ANN")
    ax.axhline(100 * converted["top1"], color="tab:gray", ls=":", lw=1, label="converted 4-bit spikes, T=1")
    ax.set_xticks(list(xs), [f"{r['label']}\nBB {r['finetuned']['bit_budget']:.2f}" for r in rows], fontsize=7)
    ax.set_ylabel("top-1 (%)")
    ax.set_title(f"ResNet-20 / CIFAR-10, {rows[0]['budget_min']:g} min CPU training per case", fontsize=9)
    ax.legend(fontsize=7)
    for k, row in enumerate(adaptive, start=1):
        ax = axes[k][0]
        layers = row["allocation"]
        lx = list(range(len(layers)))
        for j, (key, color) in enumerate((("W", "tab:blue"), ("S", "tab:orange"), ("T", "tab:green"))):
            ax.bar([x + (j - 1) * 0.27 for x in lx], [r[key] or 0 for r in layers], width=0.27, label=key,
                   color=color)
        ax.set_xticks(lx, [r["layer"] for r in layers], rotation=70, fontsize=6)
        ax.set_ylabel("bits / steps")
        ax.set_title(f"learned allocation: {row['label']} (avg W/S/T {row['finetuned']['bits_weight_avg']:.2f}/"
                     f"{row['finetuned']['bits_spike_avg']:.2f}/{row['finetuned']['T_avg']:.2f})", fontsize=8)
        ax.legend(fontsize=7, ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(rows: list[dict[str, Any]], converted: dict[str, Any], float_top1: float, n: int,
             train_data: str) -> str:
    lines = [f"ResNet-20 / CIFAR-10, {n} stratified test images; float ANN top-1 {100 * float_top1:.2f}%; "
             f"converted multi-bit SNN (T=1, 4-bit spikes, 8-bit weights) {100 * converted['top1']:.2f}% "
             f"at bit budget {converted['bit_budget']:.1f}. Training data: {train_data}.", "",
             "| case | top-1 | W/S/T (avg) | bit budget (eq 7) | S-ACE (G) | NS-ACE (G) | size (MB) | "
             "steps x batch | wall |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "stopped" in r:
            lines.append(f"| {r['label']} | stopped: {r['stopped'][:90]} | | | | | | "
                         f"| {r['wall_seconds'] / 60:.1f} min |")
            continue
        f = r["finetuned"]
        ns = "-" if f["NS-ACE"] is None else f"{f['NS-ACE'] / 1e9:.3f}"
        lines.append(
            f"| {r['label']} | {100 * f['top1']:.2f}% | {f['bits_weight_avg']:.2f}/{f['bits_spike_avg']:.2f}/"
            f"{f['T_avg']:.2f} | {f['bit_budget']:.2f} | {f['S-ACE'] / 1e9:.3f} | {ns} | "
            f"{f['model_size_MB']:.4f} | {r['steps']} x {r['batch_size']} | {r['train_seconds'] / 60:.1f} min |")
    lines.append("")
    for r in rows:
        if r["learn_bits"] and "edges" in r:
            e = r["edges"]
            lines.append(f"- {r['label']}: first layer W/S {e['first_W']}/{e['first_S']:.2f}, last layer W/S "
                         f"{e['last_W']}/{e['last_S']:.2f}, middle layers mean W/S {e['middle_W_mean']:.2f}/"
                         f"{e['middle_S_mean']:.2f}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget-min", type=float, default=6.0, help="training wall time per case (<= 30)")
    parser.add_argument("--cases", default="a,b,c,d,e")
    parser.add_argument("--limit", type=int, default=2000, help="stratified test images")
    parser.add_argument("--epoch-images", type=int, default=1920, help="training images per 'epoch' (budget check)")
    parser.add_argument("--val-limit", type=int, default=200, help="held-out training images validated per epoch")
    parser.add_argument("--train-data", default=FULL_TRAIN)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam lr of weights, biases and step sizes")
    parser.add_argument("--bits-lr", type=float, default=0.1, help="lr of the widths (and, with sgd, step sizes)")
    parser.add_argument("--bits-optimizer", default="sgd", choices=("sgd", "adam"), help="how the widths train")
    parser.add_argument("--init-bits", default="4/4/2", help="initial W/S/T of the adaptive cases (A.5.1: 4/4/2)")
    parser.add_argument("--expected-ips", type=float, default=40.0, help="training images/s assumed to size the "
                                                                           "cosine schedule to the budget")
    parser.add_argument("--tag", default="", help="suffix of the result files")
    parser.add_argument("--device", default="cpu", help="training and evaluation device: cpu, auto, cuda or cuda:N")
    args = parser.parse_args()
    if not 0 < args.budget_min <= 30:
        parser.error("--budget-min must be in (0, 30]")
    require_shared_data()
    start_all = time.perf_counter()
    q = quantize("resnet20", weights=str(CHECKPOINT), data=TRAIN, config=QuantizeConfig(bits=8, calib_limit=1000),
                 eval_limit=0)
    snn = to_snn(q, "multibit", T=1, bits_spike=4, float_bits=16)
    init_T = int(float(args.init_bits.split("/")[2]))
    snn_init = snn if init_T == 1 else to_snn(q, "multibit", T=init_T, bits_spike=4, float_bits=16, squeeze="always")
    eval_cfg = EvaluateConfig(data=TEST, limit=args.limit, reports=("accuracy", "bits", "allocation"),
                              device=args.device)
    before = evaluate(q, snn, eval_cfg)
    float_top1 = next(s.top1 for s in before.accuracy.scores if s.model == "float ANN")
    converted = measures(before)
    print({"converted": converted, "float_top1": float_top1}, flush=True)
    rows = []
    epochs = max(2, int(60 * args.budget_min * args.expected_ips / args.epoch_images))
    for key in args.cases.split(","):
        label, options = CASES[key]
        method = {"init_bits": args.init_bits, "bits_lr": args.bits_lr, "bits_optimizer": args.bits_optimizer,
                  **options}
        start_snn = snn if method.get("learn_bits", True) is False else snn_init
        config = FinetuneConfig(
            epochs=epochs, batch_size=args.batch_size, lr=args.lr, optimizer="adam", schedule="cosine", loss="ce",
            augment=True, seed=0, train_split=0.98, val_limit=args.val_limit, device=args.device,
            max_batches_per_epoch=max(1, args.epoch_images // args.batch_size), time_budget_s=60 * args.budget_min,
            methods={"adaptive_bits": method})
        t0 = time.perf_counter()
        try:
            result = finetune(q, start_snn, config, data=args.train_data, val_data=args.train_data,
                              show_progress=False)
        except SnnConvertError as err:  # the engine stops a run stuck at chance: record it, go on
            rows.append({"case": key, "label": label, "method": method, "learn_bits": method.get("learn_bits", True),
                         "budget_min": args.budget_min, "stopped": str(err), "config": config.as_dict(),
                         "wall_seconds": time.perf_counter() - t0})
            print({"case": key, "stopped": str(err)}, flush=True)
            write_all(args, rows, converted, float_top1, start_all)
            continue
        wall = time.perf_counter() - t0
        after = evaluate(q, result.snn, eval_cfg)
        table = allocation(result.snn)
        seconds = sum(h["seconds"] for h in result.history)
        images = sum(h["images"] for h in result.history)
        row = {"case": key, "label": label, "method": method, "learn_bits": method.get("learn_bits", True),
               "budget_min": args.budget_min, "finetuned": measures(after),
               "allocation": table["layers"] if table else [], "train_seconds": seconds, "wall_seconds": wall,
               "train_images_per_s": images / max(seconds, 1e-9), "epochs": len(result.history),
               "steps": images // args.batch_size, "batch_size": args.batch_size,
               "history": result.history, "config": config.as_dict()}
        if row["learn_bits"] and row["allocation"]:
            row["edges"] = edge_layers(row["allocation"])
        rows.append(row)
        print({k: v for k, v in row.items() if k not in ("history", "config", "allocation")}, flush=True)
        write_all(args, rows, converted, float_top1, start_all)  # after every case: partial results survive


def write_all(args: argparse.Namespace, rows: list[dict[str, Any]], converted: dict[str, Any], float_top1: float,
              start_all: float) -> None:
    name = "adaptive_bits_resnet20" + (f"_{args.tag}" if args.tag else "")
    results = {"machine": machine(), "n_test": args.limit, "train_data": args.train_data,
               "float_top1": float_top1, "converted": converted, "rows": rows, "args": vars(args),
               "total_wall_seconds": time.perf_counter() - start_all}
    path = write_json(f"{name}.json", results)
    text = markdown(rows, converted, float_top1, args.limit, args.train_data)
    write_atomically(RESULTS / f"{name}.md", lambda handle: handle.write(text.encode()))
    plot(rows, converted, float_top1, RESULTS / f"{name}.png")
    print("\n" + text + f"\n{path}", flush=True)


if __name__ == "__main__":
    start_process()
    main()
