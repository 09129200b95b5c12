"""BPTT fine-tuning of converted ResNet-20 SNNs on CIFAR-10 (../shared/data), CPU, fixed wall-time budget.

    python bench/finetune_resnet20.py [--budget-min 30] [--cases a,b,c,d] [--limit 2000]
    python bench/finetune_resnet20.py --budget-min 1 --cases a --limit 200 --epoch-images 640 --tag smoke

Cases (each converted from the shared 8-bit-calibrated ResNet-20, then fine-tuned):
  a: M-LIF S=3, T=1    b: M-LIF S=1 (LIF), T=1    c: rate (IF) T=8    d: SWS Tc=8, Ts=0
Fine-tuning: Adam (--lr, default 1e-3: the paper's 1e-4 is for 150 epochs) with a cosine schedule
sized to the budget (--expected-ips), each neuron's own surrogate unless --surrogate (M-LIF: the
window of triangles, 000 A.1), learnable thresholds and leaks where the neuron has them, CE loss,
random crop + flip, batch 64, on cifar10/train minus a 2% share of which --val-limit images
validate each epoch. Every case stops after the first "epoch" (--epoch-images
images) that passes --budget-min minutes of training, so all cases get the same wall time.
Evaluation: --limit stratified test images, before and after fine-tuning: top-1, spikes per neuron,
delta = E_ANN / E_SNN (M-LIF eq 11, from evaluate's ops report), plus training images/s.
Writes bench/results/finetune_resnet20[_<tag>].{json,md,png}.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from common import CHECKPOINT, RESULTS, SHARED, TEST, TRAIN, machine, require_shared_data, start_process, write_json

import snnconvert
from snnconvert.evaluate import EvaluateConfig, EvaluationReport, evaluate
from snnconvert.finetune import FinetuneConfig, finetune
from snnconvert.quantize import QuantizeConfig

FULL_TRAIN = f"imagefolder:{SHARED / 'cifar10' / 'train'}"
CASES = {
    "a": ("M-LIF S=3 T=1", "mlif", {"S": 3, "T": 1}),
    "b": ("M-LIF S=1 (LIF) T=1", "mlif", {"S": 1, "T": 1}),
    "c": ("rate (IF) T=8", "rate", {"T": 8}),
    "d": ("SWS Tc=8 Ts=0", "sws", {"Tc": 8, "Ts": 0}),
}


def measures(report: EvaluationReport) -> dict[str, float]:
    """Top-1, spikes per neuron (all neuron layers but the encoder) and delta of an SNN report."""
    snn_top1 = next(s.top1 for s in report.accuracy.scores if s.model == "SNN")
    rates = [r for r in report.rates if r.name != "encoder"]
    neurons = sum(r.neurons for r in rates)
    spikes = sum(r.rate * r.neurons for r in rates) / max(neurons, 1)
    return {"top1": snn_top1, "spikes_per_neuron": spikes, "delta": report.ops.delta if report.ops else float("nan")}


def plot(rows: list[dict], float_top1: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.8))
    xs = range(len(rows))
    ax.bar([x - 0.2 for x in xs], [100 * r["converted"]["top1"] for r in rows], width=0.4, label="converted")
    ax.bar([x + 0.2 for x in xs], [100 * r["finetuned"]["top1"] for r in rows], width=0.4, label="fine-tuned")
    ax.axhline(100 * float_top1, color="k", ls="--", lw=1, label="float ANN")
    ax.set_xticks(list(xs), [r["label"] for r in rows], fontsize=8)
    ax.set_ylabel("top-1 (%)")
    ax.set_title(f"ResNet-20 / CIFAR-10: fine-tuning, {rows[0]['budget_min']:g} min per case (CPU)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def markdown(rows: list[dict], float_top1: float, n: int) -> str:
    lines = [f"ResNet-20 / CIFAR-10, {n} stratified test images; float ANN top-1 {100 * float_top1:.2f}%.", "",
             "| case | latency | converted top-1 | fine-tuned top-1 | spikes/neuron (conv -> ft) | "
             "delta E_ANN/E_SNN (conv -> ft) | train img/s | epochs x images | training wall |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        c, f = r["converted"], r["finetuned"]
        lines.append(
            f"| {r['label']} | {r['latency']} | {100 * c['top1']:.2f}% | {100 * f['top1']:.2f}% | "
            f"{c['spikes_per_neuron']:.3f} -> {f['spikes_per_neuron']:.3f} | {c['delta']:.2f}x -> {f['delta']:.2f}x | "
            f"{r['train_images_per_s']:.1f} | {r['epochs']} x {r['epoch_images']} | "
            f"{r['train_seconds'] / 60:.1f} min |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget-min", type=float, default=30.0, help="training wall time per case (<= 30)")
    parser.add_argument("--cases", default="a,b,c,d")
    parser.add_argument("--limit", type=int, default=2000, help="stratified test images")
    parser.add_argument("--epoch-images", type=int, default=2560, help="training images per 'epoch' (budget check)")
    parser.add_argument("--val-limit", type=int, default=500, help="held-out training images validated per epoch")
    parser.add_argument("--train-data", default=FULL_TRAIN)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--tag", default="", help="suffix of the result files")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (000 A.3 uses 1e-4 for 150 epochs)")
    parser.add_argument("--surrogate", default=None,
                        help="surrogate spec for every neuron (default: each neuron's own, e.g. the M-LIF window)")
    parser.add_argument("--expected-ips", type=float, default=180.0,
                        help="training images/s assumed to size the cosine schedule to the budget (T=1)")
    parser.add_argument("--device", default="cpu", help="training and evaluation device: cpu, auto, cuda or cuda:N")
    args = parser.parse_args()
    if not 0 < args.budget_min <= 30:
        parser.error("--budget-min must be in (0, 30]")
    require_shared_data()
    q = snnconvert.quantize("resnet20", weights=str(CHECKPOINT), data=TRAIN,
                            config=QuantizeConfig(bits=8, calib_limit=1000), eval_limit=0)
    eval_cfg = EvaluateConfig(data=TEST, limit=args.limit, reports=("accuracy", "opf", "energy", "rates"),
                              device=args.device)
    rows, float_top1 = [], float("nan")
    for key in args.cases.split(","):
        label, coding, options = CASES[key]
        snn = snnconvert.to_snn(q, coding, **options)
        before = evaluate(q, snn, eval_cfg)
        float_top1 = next(s.top1 for s in before.accuracy.scores if s.model == "float ANN")
        steps = max(1, int(snn.info.get("frames", 1)))
        epochs = max(2, int(60 * args.budget_min * args.expected_ips / steps / args.epoch_images))
        config = FinetuneConfig(
            epochs=epochs, batch_size=args.batch_size, lr=args.lr, optimizer="adam", surrogate=args.surrogate,
            schedule="cosine", learn_threshold=coding != "sws", learn_leak=coding == "mlif", loss="ce", augment=True,
            seed=0,
            train_split=0.98, val_limit=args.val_limit, device=args.device,
            max_batches_per_epoch=max(1, args.epoch_images // args.batch_size), time_budget_s=60 * args.budget_min,
        )
        start = time.perf_counter()
        result = finetune(q, snn, config, data=args.train_data, val_data=args.train_data, show_progress=True)
        wall = time.perf_counter() - start
        after = evaluate(q, result.snn, eval_cfg)
        seconds = sum(h["seconds"] for h in result.history)
        images = sum(h["images"] for h in result.history)
        row = {"case": key, "label": label, "coding": coding, "options": options,
               "latency": int(snn.info.get("latency", 0)), "budget_min": args.budget_min,
               "converted": measures(before), "finetuned": measures(after),
               "train_images_per_s": images / max(seconds, 1e-9), "train_seconds": seconds, "wall_seconds": wall,
               "epochs": len(result.history), "epoch_images": config.max_batches_per_epoch * args.batch_size,
               "history": result.history, "config": config.as_dict()}
        rows.append(row)
        print({k: v for k, v in row.items() if k not in ("history", "config")}, flush=True)
    name = "finetune_resnet20" + (f"_{args.tag}" if args.tag else "")
    results = {"machine": machine(), "n_test": args.limit, "train_data": args.train_data,
               "float_top1": float_top1, "rows": rows}
    path = write_json(f"{name}.json", results)
    text = markdown(rows, float_top1, args.limit)
    (RESULTS / f"{name}.md").write_text(text)
    plot(rows, float_top1, RESULTS / f"{name}.png")
    print("\n" + text + f"\n{path}")


if __name__ == "__main__":
    start_process()
    main()
