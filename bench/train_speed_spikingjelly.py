"""Training speed of snnconvert's BPTT engine against SpikingJelly 2.0's surrogate-gradient
training of the same network, measured in one run.

    python bench/train_speed_spikingjelly.py [--T 1,4] [--steps 20] [--batch 64] [--threads 2]

Network: the shared CIFAR-10 ResNet-20 (batch-norm fused: the weights snnconvert converts).
* snnconvert: the converted SNN (M-LIF with S=1, i.e. LIF, and S=3) made trainable
  (``make_trainable``, learnable thresholds), trained through its own time-folded engine.
* SpikingJelly: the same fused float ResNet-20 with every ReLU replaced by SpikingJelly's
  multi-step ``LIFNode`` (its PyTorch implementation; hard reset off: soft reset as in snnconvert's LIF,
  decay_input False, tau 2 so the leak is 1/2, ``PiecewiseQuadratic`` surrogate: a triangle,
  like snnconvert's ``triangular``); convolutions run on the T*B folded frames, as in
  SpikingJelly's ``SeqToANNContainer``.
* the float ANN, trained the same way, as the reference cost.
Same T, batch, threads, optimizer (Adam) and input batches; images/s of full training steps
(forward, CE on the time-averaged output, backward, optimizer step), median of --steps after
warm-up. Writes bench/results/train_speed_spikingjelly.{json,md}.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from common import CHECKPOINT, RESULTS, TRAIN, machine, require_shared_data, start_process, write_json
from torch import Tensor, fx, nn

import snnconvert
from snnconvert.graph.ops import Kind, kind_of
from snnconvert.neurons.trainable import make_trainable
from snnconvert.quantize import QuantizeConfig


class _FoldedStep(nn.Module):
    """A SpikingJelly multi-step neuron inside a time-folded (T*B, ...) graph."""

    def __init__(self, neuron: nn.Module, T: int) -> None:
        super().__init__()
        self.neuron, self.T = neuron, T

    def forward(self, x: Tensor) -> Tensor:
        return self.neuron(x.reshape(self.T, x.shape[0] // self.T, *x.shape[1:])).reshape(x.shape)


class _SJNetwork(nn.Module):
    def __init__(self, body: fx.GraphModule, T: int) -> None:
        super().__init__()
        self.body, self.T = body, T

    def forward(self, images: Tensor) -> Tensor:
        frames = images.unsqueeze(0).expand(self.T, *images.shape).reshape(-1, *images.shape[1:])
        out = self.body(frames)
        return out.reshape(self.T, images.shape[0], -1).mean(0)


def spikingjelly_network(float_model: fx.GraphModule, T: int) -> nn.Module:
    from spikingjelly.activation_based import neuron, surrogate

    gm = copy.deepcopy(float_model)
    for node in gm.graph.nodes:
        if kind_of(gm, node) is Kind.ACTIVATION:
            lif = neuron.LIFNode(tau=2.0, decay_input=False, v_threshold=1.0, v_reset=None,
                                 surrogate_function=surrogate.PiecewiseQuadratic(), step_mode="m")
            gm.add_submodule(node.target, _FoldedStep(lif, T))
    gm.recompile()
    return _SJNetwork(gm, T)


def train_speed(model: nn.Module, images: Tensor, labels: Tensor, steps: int, reset=None) -> float:
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, 1e-4)
    model.train()
    times = []
    for k in range(steps + 3):
        start = time.perf_counter()
        loss = nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if reset is not None:
            reset(model)
        if k >= 3:  # warm-up
            times.append(time.perf_counter() - start)
    return len(images) / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--T", default="1,4")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    require_shared_data()
    from spikingjelly.activation_based import functional

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    q = snnconvert.quantize("resnet20", weights=str(CHECKPOINT), data=TRAIN, config=QuantizeConfig(calib_limit=256),
                            eval_limit=0)
    images, labels = torch.rand(args.batch, 3, 32, 32), torch.randint(0, 10, (args.batch,))
    ann = copy.deepcopy(q.float_model)
    for p in ann.parameters():
        p.requires_grad_(True)
    rows = [{"network": "float ANN", "T": 1, "images_per_s": train_speed(ann, images, labels, args.steps)}]
    for T in (int(t) for t in args.T.split(",")):
        for S in (1, 3):
            snn = make_trainable(snnconvert.to_snn(q, "mlif", S=S, T=T), learn_threshold=True)
            rows.append({"network": f"snnconvert M-LIF S={S}" + (" (LIF)" if S == 1 else ""), "T": T,
                         "images_per_s": train_speed(snn, images, labels, args.steps)})
        sj = spikingjelly_network(q.float_model, T)
        rows.append({"network": "SpikingJelly LIF (multi-step)", "T": T,
                     "images_per_s": train_speed(sj, images, labels, args.steps, reset=functional.reset_net)})
        print(rows[-3:], flush=True)
    ann_ips = rows[0]["images_per_s"]
    lines = ["| network | T | training images/s | / float ANN | / SpikingJelly (same T) |", "|---|---|---|---|---|"]
    for r in rows:
        sj_ips = next((x["images_per_s"] for x in rows if x["T"] == r["T"] and x["network"].startswith("Spiking")),
                      None)
        ratio = f"{r['images_per_s'] / sj_ips:.2f}x" if sj_ips and r["network"] != "float ANN" else "-"
        lines.append(f"| {r['network']} | {r['T']} | {r['images_per_s']:.1f} | {r['images_per_s'] / ann_ips:.2f} "
                     f"| {ratio} |")
    text = "\n".join(lines)
    write_json("train_speed_spikingjelly.json", {"machine": machine(), "batch": args.batch, "threads": args.threads,
                                                 "steps": args.steps, "rows": rows})
    (RESULTS / "train_speed_spikingjelly.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    start_process()
    main()
