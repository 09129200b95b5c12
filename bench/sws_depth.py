"""SWS agreement against depth at the paper's fixed setting (Tc 8, Ts 2, beta 2, 8 bits).

    python bench/sws_depth.py [--n 500] [--depths 20,20r,32,44,56,110] [--calib 1000]

Where does agreement with the 8-bit ANN go as CIFAR ResNets get deeper: float32 rounding at
decision boundaries, or residual error that grows with the number of TSA layers?

* ``20`` is the shared pretrained ResNet-20. The others (``20r`` and the deeper ResNets) have
  random (Kaiming, seeded) conv weights, residual branches scaled by 1/sqrt(blocks), batch-norm
  statistics calibrated on train-subset images and a least-squares linear head fitted on the
  same images (so their logits have some decision margin); never the test split. ``20r`` is the
  control: random and pretrained nets of the same depth need not behave alike.
* Every network is quantized to 8 bits (calibration: ``--calib`` train-subset images) and
  converted to SWS at Tc 8, Ts 2, beta 2; evaluated on ``--n`` stratified test images.
* Agreement of the SNN's top-1 with the quantized ANN's, with both in float32 and both in
  float64; the same at Ts = Tc (exact in float64, so any loss is rounding alone); and the
  remedies: the TSA membrane accumulated in float64 inside the float32 network (an experiment
  with hooks: it did not help, so the library has no such option), and the library's
  ``residual_tolerance`` (each layer gets extra silent steps, up to ``--boost-max``, until none
  of its neurons rounds differently from exact on ``--boost-images`` calibration images), in
  float32 and float64.
* Per TSA layer (graph order): the share of neurons whose emitted integer differs from the
  quantized ANN's integer activation (the accumulated error), the share that differ from exact
  rounding of the layer's own input (the error the layer itself adds: residual outside
  [-1/2, 1/2)), and the largest |residual| of an unclamped neuron.

Writes bench/results/sws_depth.{json,md,png}.
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from common import CHECKPOINT, RESULTS, TEST, TRAIN, machine, require_shared_data, start_process, write_json
from torch import nn

import snnconvert
from snnconvert.atomic import write_atomically
from snnconvert.data import load_split, materialize
from snnconvert.evaluate import in_dtype
from snnconvert.ingest import LoadedModel, load_model
from snnconvert.methods.sws.coding import neuron_modules
from snnconvert.methods.sws.neuron import TSANeuron
from snnconvert.models.cifar_resnet import BasicBlock
from snnconvert.neurons.base import unfold_time
from snnconvert.pipeline import QuantizedModel, eval_split
from snnconvert.quantize import QuantizeConfig
from snnconvert.quantize.modules import ActQuant
from snnconvert.simulate.network import SpikingNetwork

TC, TS, BETA = 8, 2, 2.0


def _images(split: Any) -> tuple[torch.Tensor, torch.Tensor]:
    data = materialize(split)
    images = torch.stack([data.dataset[i][0] for i in range(len(data))])
    labels = torch.tensor([int(data.dataset[i][1]) for i in range(len(data))])
    return images, labels


@torch.no_grad()
def calibrated_random(depth: int, seed: int, images: torch.Tensor, labels: torch.Tensor,
                      branch_scale: bool = True) -> LoadedModel:
    """ResNet-``depth`` with Kaiming conv weights (seeded), batch-norm statistics measured on
    ``images`` (train-subset) and a least-squares linear head on its pooled features.

    ``branch_scale``: every residual branch ends with the batch-norm scale 1/sqrt(blocks), so the
    residual stream keeps about the same variance at every depth (with unit branches it grows
    with the number of blocks and the deep nets become chaotic maps whose float32 and float64
    runs already differ in a third of their integers)."""
    torch.manual_seed(seed)
    loaded = load_model(f"resnet{depth}", "random")
    model = loaded.module
    blocks = [m for m in model.modules() if isinstance(m, BasicBlock)]
    if branch_scale:
        for block in blocks:
            block.bn2.weight.fill_(1.0 / math.sqrt(len(blocks)))
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration batches
    # One layer at a time would be exact; a few passes in train mode converge as well.
    for _ in range(3):
        model.train()
        for i in range(0, len(images), 250):
            model(images[i:i + 250])
    model.eval()
    features = []
    hook = model.flatten.register_forward_hook(lambda _m, _i, out: features.append(out))
    for i in range(0, len(images), 250):
        model(images[i:i + 250])
    hook.remove()
    x = torch.cat(features).double()
    x = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1)
    targets = torch.nn.functional.one_hot(labels, 10).double() - 0.1
    ridge = 1e-3 * x.pow(2).sum(0).mean()
    solution = torch.linalg.solve(x.T @ x + ridge * torch.eye(x.shape[1], dtype=x.dtype), x.T @ targets)
    model.linear.weight.copy_(solution[:-1].T.float())
    model.linear.bias.copy_(solution[-1].float())
    return loaded


def build(depth: int, pretrained: bool, calib: int, seed: int, branch_scale: bool = True) -> QuantizedModel:
    config = QuantizeConfig(bits=8, calib_limit=calib)
    if pretrained:
        return snnconvert.quantize("resnet20", weights=str(CHECKPOINT), data=TRAIN, config=config, eval_limit=0)
    spec = load_model("resnet20", "random").input_spec
    images, labels = _images(load_split(TRAIN, "calib", spec, limit=calib, seed=seed))
    loaded = calibrated_random(depth, seed, images, labels, branch_scale)
    return snnconvert.quantize(loaded, data=TRAIN, config=config, eval_limit=0)


@contextmanager
def ann_integers(model: nn.Module, names: list[str], store: dict[str, torch.Tensor]) -> Iterator[None]:
    """Record, per neuron layer name, the quantized ANN's integer activation (quantizer output / scale)."""
    graph = model.graph
    quants = {}
    for node in graph.nodes:
        if node.op == "call_module" and node.target in names:
            user = next(iter(node.users))
            quants[node.target] = model.get_submodule(user.target)
    hooks = []
    for name, quant in quants.items():
        assert isinstance(quant, ActQuant)

        def hook(module: ActQuant, _inputs: Any, output: torch.Tensor, name: str = name) -> None:
            scale = module.scale.to(output.dtype)
            scale = scale.view(1, -1, *([1] * (output.dim() - 2))) if scale.numel() > 1 else scale
            store[name] = torch.round(output.double() / scale.double())
        hooks.append(quant.register_forward_hook(hook))
    try:
        yield
    finally:
        for h in hooks:
            h.remove()


@contextmanager
def snn_values(snn: SpikingNetwork, store: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> Iterator[None]:
    """Record, per TSA layer, ``(emitted integer, total input charge)`` in float64."""
    hooks = []
    for name, neuron in neuron_modules(snn.body).items():
        if not isinstance(neuron, TSANeuron):
            continue

        def hook(module: TSANeuron, inputs: Any, output: torch.Tensor, name: str = name) -> None:
            tc = module.Tc
            weights = torch.tensor([module.beta ** (tc - k) for k in range(1, tc + 1)], dtype=torch.float64)
            shape = (tc,) + (1,) * (output.dim())
            spikes = unfold_time(output, tc).double()
            charge = unfold_time(inputs[0], tc).double()
            store[name] = ((spikes * weights.view(shape)).sum(0), (charge * weights.view(shape)).sum(0))
        hooks.append(neuron.register_forward_hook(hook))
    try:
        yield
    finally:
        for h in hooks:
            h.remove()


def _layer_names(snn: SpikingNetwork) -> list[str]:
    return [n for n, m in neuron_modules(snn.body).items() if isinstance(m, TSANeuron)]


@torch.no_grad()
def compare(quant_model: nn.Module, snn: SpikingNetwork, images: torch.Tensor, dtype: torch.dtype,
            batch: int, qmax: float, membrane64: bool = False) -> dict[str, Any]:
    """Top-1 agreement of ``snn`` with ``quant_model`` (both run in ``dtype``, and the ANN in
    float64: the exact reference) and per-layer errors. ``membrane64``: every TSA layer of the
    ``dtype`` network integrates in float64 (its input frames widened, its spikes, which are
    exact in any dtype, narrowed back): the synapses stay in ``dtype``."""
    names = _layer_names(snn)
    ann = in_dtype(quant_model, dtype).eval()
    exact_ann = in_dtype(quant_model, torch.float64).eval()
    net = in_dtype(snn, dtype).eval()
    if membrane64 and dtype != torch.float64:
        if net is snn:
            net = copy.deepcopy(snn)
        for neuron in neuron_modules(net.body).values():
            neuron.register_forward_pre_hook(lambda _m, inputs: (inputs[0].double(),))
            neuron.register_forward_hook(lambda _m, _i, output, dtype=dtype: output.to(dtype))
    agree = agree_exact = 0
    keys = ("ann_mismatch", "exact_mismatch", "local_error")
    stats = {n: {"neurons": 0, "max_residual": 0.0, **dict.fromkeys(keys, 0)} for n in names}
    seconds = 0.0
    for i in range(0, len(images), batch):
        x = images[i:i + batch]
        ints: dict[str, torch.Tensor] = {}
        exact_ints: dict[str, torch.Tensor] = {}
        vals: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        with ann_integers(ann, names, ints):
            ann_top = ann(x.to(dtype)).argmax(1)
        with ann_integers(exact_ann, names, exact_ints):
            exact_top = exact_ann(x.double()).argmax(1)
        t0 = time.perf_counter()
        with snn_values(net, vals):
            snn_top = net(x.to(dtype)).argmax(1)
        seconds += time.perf_counter() - t0
        agree += int((ann_top == snn_top).sum())
        agree_exact += int((exact_top == snn_top).sum())
        for name in names:
            emitted, charge = vals[name]
            exact = torch.clamp(torch.floor(charge + 0.5), 0, qmax)
            residual = charge - emitted
            unclamped = ~(((emitted <= 0) & (residual < -0.5)) | ((emitted >= qmax) & (residual > 0.5)))
            s = stats[name]
            s["neurons"] += emitted.numel()
            s["ann_mismatch"] += int((emitted != ints[name]).sum())
            s["exact_mismatch"] += int((emitted != exact_ints[name]).sum())
            s["local_error"] += int((emitted != exact).sum())
            s["max_residual"] = max(s["max_residual"], float(residual[unclamped].abs().max()))
    layers = [{"layer": n, **{k: s[k] / s["neurons"] for k in keys}, "max_residual": s["max_residual"]}
              for n, s in stats.items()]
    return {"agreement": agree / len(images), "agreement_exact_ann": agree_exact / len(images),
            "seconds": seconds, "layers": layers}


@torch.no_grad()
def ann_agreement(quant_model: nn.Module, images: torch.Tensor, batch: int, names: list[str]) -> dict[str, Any]:
    """The quantized ANN in float32 against itself in float64: top-1 agreement and, per neuron
    layer, the share of integer activations that differ."""
    a32, a64 = in_dtype(quant_model, torch.float32).eval(), in_dtype(quant_model, torch.float64).eval()
    same = 0
    counts = dict.fromkeys(names, 0)
    total = dict.fromkeys(names, 0)
    for i in range(0, len(images), batch):
        i32: dict[str, torch.Tensor] = {}
        i64: dict[str, torch.Tensor] = {}
        with ann_integers(a32, names, i32):
            top32 = a32(images[i:i + batch]).argmax(1)
        with ann_integers(a64, names, i64):
            top64 = a64(images[i:i + batch].double()).argmax(1)
        same += int((top32 == top64).sum())
        for n in names:
            counts[n] += int((i32[n] != i64[n]).sum())
            total[n] += i32[n].numel()
    return {"agreement": same / len(images), "layer_mismatch": [counts[n] / total[n] for n in names]}


def run_depth(token: str, args: argparse.Namespace) -> dict[str, Any]:
    """One network: ``20`` is the pretrained ResNet-20, ``20r`` (any depth with ``r``) and every
    other depth a random-weight one."""
    depth, pretrained = int(token.rstrip("r")), token == "20"
    name = f"ResNet-{depth}" + ("" if pretrained else " (random)")
    t0 = time.perf_counter()
    q8 = build(depth, pretrained, args.calib, args.seed, not args.unit_branches)
    images, labels = _images(eval_split(q8, TEST, limit=args.n))
    qmax = max(m.qmax for m in q8.model.modules() if isinstance(m, ActQuant))
    with torch.no_grad():
        float_top = torch.cat([q8.float_model(images[i:i + 250]).argmax(1) for i in range(0, len(images), 250)])
        quant_top = torch.cat([q8.model(images[i:i + 250]).argmax(1) for i in range(0, len(images), 250)])
    row: dict[str, Any] = {
        "depth": depth, "name": name, "pretrained": pretrained,
        "weights": "pretrained" if pretrained else "random, calibrated BN, least-squares head",
        "float_top1": float((float_top == labels).double().mean()),
        "quantized_top1": float((quant_top == labels).double().mean()),
    }
    runs: dict[str, Any] = {}
    settings = [("Ts2_float32", TS, torch.float32, {}), ("Ts2_float64", TS, torch.float64, {}),
                ("TsTc_float32", TC, torch.float32, {})]
    for label, ts, dtype, extra in settings + _remedies(args):
        extra = dict(extra)
        membrane64 = extra.pop("membrane64", False)
        snn = snnconvert.to_snn(q8, "sws", Tc=TC, Ts=ts, beta=BETA, **extra)
        if label == "Ts2_float32":
            row["L_TSA"] = snn.info["L_TSA"]
            row["T_inf"] = snn.info["T_inf"]
            ann = ann_agreement(q8.model, images, args.batch, _layer_names(snn))
            row["ann32_vs_ann64"] = ann["agreement"]
            row["ann32_vs_ann64_layers"] = ann["layer_mismatch"]
        result = compare(q8.model, snn, images, dtype, args.batch, qmax, membrane64)
        result["T_inf"] = snn.info["T_inf"]
        if "residual_boost" in snn.info:
            result["raised"] = snn.info["residual_boost"]["raised"]
        runs[label] = result
        print(f"{name} {label}: agreement {result['agreement']:.2%}, T_inf {snn.info['T_inf']}, "
              f"{result['seconds']:.0f} s", flush=True)
    row["runs"] = runs
    row["wall_seconds"] = time.perf_counter() - t0
    return row


def _remedies(args: argparse.Namespace) -> list[tuple[str, Any, torch.dtype, dict]]:
    """The remedy rows: the TSA membrane in float64 inside the float32 network, and extra silent
    steps where the residual profile (float64, ``--boost-images`` calibration images) asks."""
    boost = {"residual_tolerance": args.tolerance, "auto_limit": args.boost_images, "auto_max": args.boost_max}
    return [("Ts2_membrane64_float32", TS, torch.float32, {"membrane64": True}),
            ("Ts2_boost_float32", TS, torch.float32, boost),
            ("Ts2_boost_float64", TS, torch.float64, boost)]


def _markdown(rows: list[dict[str, Any]], results: dict[str, Any]) -> str:
    labels = list(rows[0]["runs"])
    head = "| network | L_TSA | float top-1 | 8-bit top-1 | ANN f32 vs f64 | " + \
        " | ".join(f"{k} (vs f64 ANN)" for k in labels) + " |"
    lines = ["Top-1 agreement of the SNN with the 8-bit ANN run in the same dtype (in brackets: with the "
             "float64 ANN, the exact reference):", "", head, "|" + "---:|" * (5 + len(labels))]
    for r in rows:
        cells = " | ".join(f"{r['runs'][k]['agreement']:.2%} ({r['runs'][k]['agreement_exact_ann']:.2%})"
                           for k in labels)
        lines.append(f"| {r['name']} | {r['L_TSA']} | {r['float_top1']:.2%} | {r['quantized_top1']:.2%} | "
                     f"{r['ann32_vs_ann64']:.2%} | {cells} |")
    lines += ["", "T_inf of each run (boost: the layers raised, by how many steps) and SNN seconds:", "",
              "| network | run | T_inf | SNN seconds | raised |", "|---|---|---:|---:|---|"]
    for r in rows:
        for k in labels:
            run = r["runs"][k]
            raised = ", ".join(f"{n} +{v}" for n, v in run.get("raised", {}).items())
            lines.append(f"| {r['name']} | {k} | {run['T_inf']} | {run['seconds']:.1f} | {raised} |")
    lines += ["", "Per-layer error at Ts 2 (share of neurons; mean and worst over the TSA layers):", "",
              "| network | run | differ from same-dtype ANN integers: mean / last layer | differ from float64 ANN "
              "integers: mean / last | own rounding error: mean / max | max residual |",
              "|---:|---|---:|---:|---:|---:|"]
    for r in rows:
        ann = r["ann32_vs_ann64_layers"]
        lines.append(f"| {r['name']} | float32 ANN | | {sum(ann) / len(ann):.3%} / {ann[-1]:.3%} | | |")
        for k in labels:
            layers = r["runs"][k]["layers"]
            mism = [lo["ann_mismatch"] for lo in layers]
            ex = [lo["exact_mismatch"] for lo in layers]
            local = [lo["local_error"] for lo in layers]
            lines.append(f"| {r['name']} | {k} | {sum(mism) / len(mism):.3%} / {mism[-1]:.3%} | "
                         f"{sum(ex) / len(ex):.3%} / {ex[-1]:.3%} | "
                         f"{sum(local) / len(local):.4%} / {max(local):.4%} | "
                         f"{max(lo['max_residual'] for lo in layers):.3g} |")
    lines += ["", f"{results['n_test']} stratified test images per network; ResNet-20 pretrained, the others random "
              f"weights (residual branches scaled: {results['random_branch_scale']}) with calibrated BN and a "
              "least-squares head (train-subset only); wall time "
              f"{results['wall_seconds']:.0f} s; load average {results['load_average_start']} -> "
              f"{results['load_average_end']}"]
    return "\n".join(lines) + "\n"


def _plot(rows: list[dict[str, Any]], stem: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4))
    random_rows = [r for r in rows if not r["pretrained"]]
    for i, k in enumerate(rows[0]["runs"]):
        color = f"C{i}"
        ax.plot([r["depth"] for r in random_rows], [100 * r["runs"][k]["agreement"] for r in random_rows],
                marker="o", color=color, label=k)
        for r in rows:
            if r["pretrained"]:
                ax.plot([r["depth"]], [100 * r["runs"][k]["agreement"]], marker="*", markersize=12, color=color,
                        linestyle="none")
    ax.set_xlabel("ResNet depth")
    ax.set_ylabel("top-1 agreement with the 8-bit ANN, same dtype (%)")
    ax.set_title("SWS Tc 8, beta 2 (lines: random weights; stars: pretrained)")
    ax.legend(fontsize=8)
    for i, r in enumerate(rows):
        for run, style in (("Ts2_float64", "-"), ("TsTc_float32", ":")):
            layers = r["runs"][run]["layers"]
            bx.plot(range(1, len(layers) + 1), [100 * lo["exact_mismatch"] for lo in layers], linestyle=style,
                    color=f"C{i}", label=f"{r['name']}, {run}")
    bx.set_xlabel("TSA layer (graph order)")
    bx.set_ylabel("neurons differing from float64 ANN integers (%)")
    bx.set_title("solid: Ts 2 in float64 (residual only); dotted: Ts Tc in float32 (rounding only)", fontsize=9)
    bx.legend(fontsize=7)
    fig.tight_layout()
    path = RESULTS / f"{stem}.png"

    def save(handle: Any) -> None:
        fig.savefig(handle, format="png", dpi=110)
    write_atomically(path, save)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=500, help="test images per depth (stratified)")
    parser.add_argument("--depths", default="20,20r,32,44,56,110",
                        help="comma-separated CIFAR ResNet depths: 20 is the pretrained checkpoint, 20r a random "
                             "ResNet-20 (the control for the random deeper ones)")
    parser.add_argument("--calib", type=int, default=1000, help="train-subset images for calibration")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--unit-branches", action="store_true",
                        help="random nets: leave every residual branch at unit scale (no 1/sqrt(blocks))")
    parser.add_argument("--batch", type=int, default=25)
    parser.add_argument("--tolerance", type=float, default=0.0, help="--residual-tolerance of the boost rows")
    parser.add_argument("--boost-images", type=int, default=200, help="calibration images of the boost profile")
    parser.add_argument("--boost-max", type=int, default=4, help="largest silent period the boost gives a layer")
    parser.add_argument("--out", default="sws_depth", help="result file stem in bench/results/")
    args = parser.parse_args()
    require_shared_data()
    started = time.perf_counter()
    results: dict[str, Any] = {"machine": machine(), "n_test": args.n, "calib": args.calib, "seed": args.seed,
                               "random_branch_scale": "none" if args.unit_branches else "1/sqrt(blocks)",
                               "Tc": TC, "Ts": TS, "beta": BETA, "load_average_start": os.getloadavg()}
    rows = [run_depth(d.strip(), args) for d in args.depths.split(",")]
    results["rows"] = rows
    results["wall_seconds"] = time.perf_counter() - started
    results["load_average_end"] = os.getloadavg()
    path = write_json(f"{args.out}.json", results)
    text = _markdown(rows, results)
    write_atomically(RESULTS / f"{args.out}.md", lambda h: h.write(text.encode()))
    _plot(rows, args.out)
    print(text)
    print(path, f"({math.ceil(results['wall_seconds'])} s)")


if __name__ == "__main__":
    start_process()
    main()
