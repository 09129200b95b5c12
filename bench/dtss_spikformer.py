"""DTSS (dynamic per-layer time steps) on a CPU-sized Spikformer and on ResNet-20, CIFAR-10, CPU.

    flock /tmp/snnconvert-bench.lock python bench/dtss_spikformer.py [--budget-min 25]
    python bench/dtss_spikformer.py --budget-min 0.3 --limit 32 --resnet-limit 32 --converted-limit 16 \
        --ann-images 128 --train-share 0.002 --epoch-batches 1 --tag smoke   # a quick check of the script

1. Spikformer (--model, default spikformer-2-128; spikformer-1-64 is 4x cheaper): the ANN (ReLU) trains from scratch on
   cifar10/train for --ann-share of the budget (Adam 2e-3, crop + flip, batch 64), is calibrated
   (256 train-subset images) and converted with rate coding (IF neurons, 99.9th-percentile
   thresholds) at T = 1, 2, 4; each SNN is then fine-tuned with BPTT for the same wall time
   (learnable thresholds and leaks: LIF, Adam 1e-3, batch 16, crop + flip): fixed T = 1, 2, 4 and
   DTSS with T_max = 4 (``--method dtss``: masks initialised to ceil(T_max/2) = 2 steps,
   lambda_m, groups and the scores' lr from --lambda-m / --groups / --score-lr; table III's
   best groups, qkv + mlp, by default; every layer keeps at least --min-steps steps and
   lambda_m ramps up over --warmup-steps optimizer steps).
2. ResNet-20 (the shared checkpoint; --no-resnet skips it): rate coding T = 4, fine-tuned for the
   same wall time with fixed T = 4 and with DTSS (T_max = 4, every layer in the mask loss, the
   same floor and warm-up, and --resnet-lambda-m: without the floor, lambda_m = 1e-3 drove 11 of
   19 layers to 0 steps and the network to chance).

Every fine-tuned SNN is evaluated on --limit (ResNet-20: --resnet-limit) stratified test images
(the converted ones on an every-k-th subset of --converted-limit images): top-1, T_avg (eq 3), spikes per neuron
per inference, and compute / memory / total energy per inference with the DTSS paper's energy
model (1.8 pJ AC, 13.32 pJ MAC, first layer at MAC cost; 5 pJ per membrane access, T_l accesses
x 2 per neuron; see snnconvert/methods/dtss/report.py), normalised to the DTSS network.
Writes bench/results/dtss_spikformer[_<tag>].{json,md} and dtss_*.png.
"""

from __future__ import annotations

import argparse
import math
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from common import CHECKPOINT, RESULTS, SHARED, TEST, TRAIN, machine, require_shared_data, start_process, write_json

from snnconvert.atomic import write_atomically
from snnconvert.data import load_split, materialize
from snnconvert.finetune import FinetuneConfig, finetune
from snnconvert.finetune.augment import apply, default_pad, draw
from snnconvert.finetune.splits import stacked
from snnconvert.methods.dtss.mask import dtss_masks, t_avg
from snnconvert.methods.dtss.report import (
    E_MEM_PJ,
    ENERGY_MODELS,
    energy_breakdown,
    layer_steps,
    measured_run,
    plot_steps,
    spikes_per_neuron,
)
from snnconvert.methods.rate.neuron import IFNeuron
from snnconvert.models.registry import BUNDLED_MODELS
from snnconvert.pipeline import eval_split, quantize, to_snn
from snnconvert.quantize import QuantizeConfig

FULL_TRAIN = f"imagefolder:{SHARED / 'cifar10' / 'train'}"
NEURONS = {"paper": "the DTSS paper's eqs 1-2 in every arm (leaked reset, fire above threshold, U0 = 0)",
           "keep": "as converted (unleaked reset, fire at >=, U0 = theta/2)"}


def train_ann(model: torch.nn.Module, spec, seconds: float, images: torch.Tensor, labels: torch.Tensor,
              seed: int = 0) -> dict[str, Any]:
    """Train the float ANN for ``seconds`` of wall time (Adam, crop + flip, batch 64)."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    mean = torch.tensor(spec.mean).view(1, -1, 1, 1)
    std = torch.tensor(spec.std).view(1, -1, 1, 1)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    pad = default_pad(images.shape[-2])
    start, seen, steps = time.perf_counter(), 0, 0
    model.train()
    while time.perf_counter() - start < seconds:
        order = torch.randperm(len(images), generator=gen)
        for s in range(0, len(order) - 63, 64):
            idx = order[s:s + 64]
            x = images[idx].float().div(255.0) if images.dtype == torch.uint8 else images[idx]
            x = apply(x, draw(len(idx), pad, gen), pad)
            loss = F.cross_entropy(model((x - mean) / std), labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            seen, steps = seen + len(idx), steps + 1
            if time.perf_counter() - start >= seconds:
                break
    model.eval()
    return {"seconds": time.perf_counter() - start, "images": seen, "steps": steps}


def measure(snn, images: torch.Tensor, labels: torch.Tensor, t_max: int) -> dict[str, Any]:
    """Top-1, T_avg, spikes/neuron and energy (paper's model) of ``snn`` on the test tensors."""
    e_mac, e_ac = ENERGY_MODELS["dtss-fpga"]
    start = time.perf_counter()
    logits, loads = measured_run(snn, images, 100)
    energy = energy_breakdown(snn, loads, e_mac=e_mac, e_ac=e_ac, e_mem=E_MEM_PJ)
    steps = layer_steps(snn)
    masks = dtss_masks(snn)
    return {"top1": float((logits.argmax(1) == labels).float().mean()),
            "t_avg": t_avg(steps), "t_max": t_max, "T_per_layer": steps,
            "groups": {m.layer: m.group for m in masks.values()},
            "min_T_l": min(steps.values()) if steps else None,
            "spikes_per_neuron": spikes_per_neuron(snn), **energy, "eval_s": time.perf_counter() - start}


def run_case(q, network: str, label: str, coding_opts: dict, method: dict | None, seconds: float, test,
             args) -> dict[str, Any]:
    print(f"--- {network}: {label}", flush=True)
    snn = to_snn(q, coding="rate", **coding_opts)
    if args.lif == "paper":  # every arm runs the DTSS paper's eqs 1-2 (what --method dtss sets by default)
        for neuron in snn.modules():
            if isinstance(neuron, IFNeuron):
                neuron.order, neuron.init = "dtss", 0.0
    if method is not None:
        method = {**method, "order": "dtss" if args.lif == "paper" else "keep"}
    stride = max(1, len(test[1]) // args.converted_limit)  # an every-k-th subset keeps the classes mixed
    converted = measure(snn, test[0][::stride], test[1][::stride], coding_opts["T"])
    cfg = FinetuneConfig(epochs=10_000, batch_size=args.batch_size, lr=1e-3, learn_threshold=True, learn_leak=True,
                         augment=True, val_limit=0, train_split=args.train_share,
                         max_batches_per_epoch=args.epoch_batches,
                         time_budget_s=seconds, methods={"dtss": method} if method is not None else {},
                         device=args.device)
    start = time.perf_counter()
    result = finetune(q, snn, cfg, data=FULL_TRAIN)
    wall = time.perf_counter() - start
    hist = result.history
    trained = measure(result.snn, *test, coding_opts["T"])
    row = {"network": network, "case": label, "coding": {"name": "rate", **coding_opts}, "method": method,
           "converted": converted, "finetuned": trained, "train_seconds": sum(r["seconds"] for r in hist),
           "wall_seconds": wall, "train_images": sum(r["images"] for r in hist), "epochs": len(hist),
           "t_avg_history": [r.get("T_avg") for r in hist]}
    print(f"{network} {label}: top-1 {converted['top1']:.2%} -> {trained['top1']:.2%}, T_avg {trained['t_avg']:.2f}, "
          f"spikes/neuron {trained['spikes_per_neuron']:.3f}, TE {trained['total_pj'] / 1e6:.3f} uJ "
          f"({row['train_images']} images in {row['train_seconds']:.0f} s)", flush=True)
    if method is not None:
        plot_steps({"layers": [{"layer": k, "group": trained["groups"].get(k, "other"), "T_l": v}
                               for k, v in trained["T_per_layer"].items()],
                    "t_avg": trained["t_avg"], "t_max": coding_opts["T"]},
                   RESULTS / f"dtss_{args.slug(network + ' ' + label)}{args.suffix}.png",
                   f"{network} {label}: learned T_l per layer")
    return row


def table(rows: list[dict], ref: dict) -> list[str]:
    lines = ["| network | case | T_avg | converted top-1 | fine-tuned top-1 | spikes/neuron | CE (uJ) | ME (uJ) "
             "| TE (uJ) | norm. CE | norm. ME | norm. TE | train images |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        f = r["finetuned"]
        base = ref[r["network"]]["finetuned"]
        lines.append(
            f"| {r['network']} | {r['case']} | {f['t_avg']:.2f} | {100 * r['converted']['top1']:.2f} % | "
            f"**{100 * f['top1']:.2f} %** | {f['spikes_per_neuron']:.3f} | {f['compute_pj'] / 1e6:.3f} | "
            f"{f['memory_pj'] / 1e6:.3f} | {f['total_pj'] / 1e6:.3f} | {f['compute_pj'] / base['compute_pj']:.2f}x | "
            f"{f['memory_pj'] / base['memory_pj']:.2f}x | {f['total_pj'] / base['total_pj']:.2f}x | "
            f"{r['train_images']} |")
    return lines


def plot_summary(rows: list[dict], path: Path) -> None:
    import matplotlib.pyplot as plt

    from snnconvert.reports.plots import save_figure

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for net, marker in (("spikformer", "o"), ("resnet20", "s")):
        sel = [r for r in rows if r["network"].startswith(net)]
        if not sel:
            continue
        for r in sel:
            f = r["finetuned"]
            color = "tab:red" if r["method"] else "tab:blue"
            axes[0].scatter(f["t_avg"], 100 * f["top1"], marker=marker, color=color)
            axes[0].annotate(f"{net}: {r['case']}", (f["t_avg"], 100 * f["top1"]), fontsize=7)
            axes[1].scatter(f["total_pj"] / 1e6, 100 * f["top1"], marker=marker, color=color)
            axes[1].annotate(f"{net}: {r['case']}", (f["total_pj"] / 1e6, 100 * f["top1"]), fontsize=7)
    axes[0].set_xlabel("T_avg (eq 3)")
    axes[1].set_xlabel("total energy per inference (uJ, paper's model)")
    axes[1].set_xscale("log")
    for ax in axes:
        ax.set_ylabel("test top-1 (%)")
        ax.grid(alpha=0.3)
    fig.suptitle("DTSS (red) vs fixed T (blue), same wall-time budget per case", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-min", type=float, default=25.0, help="Total wall budget (minutes).")
    parser.add_argument("--model", default="spikformer-2-128")
    parser.add_argument("--batch-size", type=int, default=16, help="SNN fine-tuning batch size.")
    parser.add_argument("--score-lr", type=float, default=0.05, help="Learning rate of the DTSS scores.")
    parser.add_argument("--ann-share", type=float, default=0.25, help="Share of the budget for ANN training.")
    parser.add_argument("--ann-images", type=int, default=10000, help="Training images decoded for the ANN.")
    parser.add_argument("--train-share", type=float, default=0.01, help="Share of train each fine-tune decodes.")
    parser.add_argument("--limit", type=int, default=300, help="Test images (Spikformer).")
    parser.add_argument("--resnet-limit", type=int, default=150, help="Test images (ResNet-20).")
    parser.add_argument("--converted-limit", type=int, default=100, help="Test images for the converted SNNs.")
    parser.add_argument("--overhead-s", type=float, default=30.0, help="Expected seconds per case outside "
                        "training (conversion, decoding, evaluations); sizes each case's training.")
    parser.add_argument("--lambda-m", type=float, default=1e-3)
    parser.add_argument("--resnet-lambda-m", type=float, default=1e-4, help="lambda_m of the ResNet-20 DTSS case.")
    parser.add_argument("--min-steps", type=int, default=1, help="DTSS floor: steps every layer keeps at least.")
    parser.add_argument("--warmup-steps", type=int, default=20, help="Optimizer steps of the lambda_m warm-up.")
    parser.add_argument("--groups", default="qkv,mlp")
    parser.add_argument("--epoch-batches", type=int, default=8, help="Batches per epoch (the budget is checked "
                        "at epoch ends).")
    parser.add_argument("--no-resnet", action="store_true")
    parser.add_argument("--lif", default="paper", choices=("paper", "keep"),
                        help="paper: every arm (fixed T too) runs eqs 1-2 (leaked reset, fire above threshold, "
                             "U0 = 0); keep: the converted IF/LIF neuron (unleaked reset, fire at >=, U0 = theta/2)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--tag", default="")
    parser.add_argument("--finish-by", default=None, help="UTC time HH:MM by which to finish: shrinks the budget "
                        "when the run starts late (e.g. after waiting for the bench lock).")
    parser.add_argument("--device", default="cpu", help="training and evaluation device: cpu, auto, cuda or cuda:N")
    args = parser.parse_args()
    args.argv = __import__("sys").argv[1:]
    require_shared_data()
    torch.set_num_threads(args.threads)
    args.suffix = f"_{args.tag}" if args.tag else ""
    args.slug = lambda s: "".join(c if c.isalnum() else "_" for c in s.lower()).strip("_")
    t0 = time.perf_counter()
    budget = args.budget_min * 60
    if args.finish_by:
        now = datetime.now(timezone.utc)
        hour, minute = (int(v) for v in args.finish_by.split(":"))
        end = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
        if end < now - timedelta(hours=12):
            end += timedelta(days=1)
        budget = max(60.0, min(budget, (end - now).total_seconds()))
        scale = budget / (args.budget_min * 60)
        if scale < 1:  # a late start: shrink the evaluations and epochs with the budget
            args.limit = max(100, int(args.limit * scale))
            args.resnet_limit = max(60, int(args.resnet_limit * scale))
            args.converted_limit = max(50, int(args.converted_limit * scale))
            args.overhead_s *= scale
            args.epoch_batches = max(2, int(args.epoch_batches * scale))
        args.budget_min = round(budget / 60, 1)
        print(f"budget: {args.budget_min} min (finish by {args.finish_by} UTC)", flush=True)
    head = machine()
    head["load_at_start"] = list(__import__("os").getloadavg())

    # --- Spikformer ANN
    arch = BUNDLED_MODELS[args.model]
    spec = arch.input_spec
    train = stacked(materialize(load_split(FULL_TRAIN, "train", spec, limit=args.ann_images, seed=0,
                                           calib_split=1.0)))
    model = arch.build(10)
    ann_seconds = args.ann_share * budget
    ann = train_ann(model, spec, ann_seconds, *train)
    print(f"ANN trained: {ann}", flush=True)
    q = quantize(model, data=TRAIN, input_spec=spec, config=QuantizeConfig(bits=8, calib_limit=256), eval_limit=0)
    test_split = materialize(eval_split(q, TEST, limit=args.limit))
    test = stacked(test_split)
    with torch.no_grad():
        ann_top1 = float((q.float_model(test[0]).argmax(1) == test[1]).float().mean())
    print(f"float ANN top-1 on {len(test[1])} test images: {ann_top1:.2%}", flush=True)

    cases = [("fixed T=1", {"T": 1, "percentile": 99.9}, None),
             ("fixed T=2", {"T": 2, "percentile": 99.9}, None),
             ("fixed T=4", {"T": 4, "percentile": 99.9}, None),
             ("DTSS T_max=4", {"T": 4, "percentile": 99.9},
              {"t_max": 4, "lambda_m": args.lambda_m, "groups": args.groups, "score_lr": args.score_lr,
              "min_steps": args.min_steps, "warmup_steps": args.warmup_steps})]
    resnet_cases = [] if args.no_resnet else [
        ("fixed T=4", {"T": 4, "percentile": 99.9}, None),
        ("DTSS T_max=4", {"T": 4, "percentile": 99.9}, {"t_max": 4, "lambda_m": args.resnet_lambda_m,
                                                            "groups": "all", "score_lr": args.score_lr,
                                                            "min_steps": args.min_steps,
                                                            "warmup_steps": args.warmup_steps})]
    left = budget - (time.perf_counter() - t0)
    overhead = args.overhead_s  # conversion, data decoding and the two evaluations of each case
    per_case = max(1.0, left / (len(cases) + len(resnet_cases)) - overhead)
    print(f"{per_case:.0f} s of training per case", flush=True)
    rows = []
    for label, opts, method in cases:
        rows.append(run_case(q, args.model, label, opts, method, per_case, test, args))
    if resnet_cases:
        q20 = quantize("resnet20", weights=str(CHECKPOINT), data=TRAIN, config=QuantizeConfig(bits=8, calib_limit=256),
                       eval_limit=0)
        test20 = stacked(materialize(eval_split(q20, TEST, limit=args.resnet_limit)))
        for label, opts, method in resnet_cases:
            rows.append(run_case(q20, "resnet20", label, opts, method, per_case, test20, args))
    ref = {r["network"]: r for r in rows if r["method"] is not None}
    lines = [f"# DTSS vs fixed T ({args.model} and ResNet-20, CIFAR-10)", "",
             f"Command: `flock /tmp/snnconvert-bench.lock python bench/dtss_spikformer.py "
             f"{' '.join(args.argv)}`  ",
             f"Neurons: {NEURONS[args.lif]}.  ",
             f"DTSS: T_max = 4, floor {args.min_steps} step(s) per layer, lambda_m warm-up over "
             f"{args.warmup_steps} steps; {args.model}: lambda_m = {args.lambda_m:g} on {args.groups}; ResNet-20: "
             f"lambda_m = {args.resnet_lambda_m:g} on all layers; score lr {args.score_lr:g}.  ",
             f"Machine: {head['cpu']}, {head['cores']} cores, torch {head['torch']} with {head['torch_threads']} "
             f"threads; load average at start {head['load_at_start']}.  ",
             f"{args.model} ANN: {ann['seconds']:.0f} s of training ({ann['images']} images); float top-1 "
             f"{100 * ann_top1:.2f} % on {len(test[1])} stratified test images. Each SNN case: {per_case:.0f} s "
             f"of BPTT fine-tuning. Energy: {ENERGY_MODELS['dtss-fpga'][1]} pJ AC, "
             f"{ENERGY_MODELS['dtss-fpga'][0]} pJ MAC, {E_MEM_PJ} pJ per membrane access; normalised "
             f"columns are case / DTSS of the same network (table V reads the inverse).", ""]
    lines += table(rows, ref)
    wall = time.perf_counter() - t0
    lines += ["", f"Total wall time: {wall / 60:.1f} min."]
    suffix = args.suffix
    write_json(f"dtss_spikformer{suffix}.json", {"machine": head, "args": {k: v for k, v in vars(args).items()
                                                                         if k != "slug"},
                                                "ann": {**ann, "top1": ann_top1}, "per_case_seconds": per_case,
                                                "rows": rows, "wall_seconds": wall})
    text = ("\n".join(lines) + "\n").encode()
    write_atomically(RESULTS / f"dtss_spikformer{suffix}.md", lambda handle: handle.write(text), suffix=".md")
    plot_summary(rows, RESULTS / f"dtss_summary{suffix}.png")
    print("\n".join(lines))
    if math.isfinite(wall) and wall > budget * 1.1:
        print(f"warning: {wall / 60:.1f} min exceeded the budget of {args.budget_min} min")


if __name__ == "__main__":
    start_process()
    main()
