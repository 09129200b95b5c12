"""The SpQuant pruned convolution against the dense one, at kept channel shares 5-80 %.

    python bench/pruned_conv_speed.py [--runs 5]

For the three ResNet-20 conv shapes (16 x 32 x 32, 32 x 16 x 16, 64 x 8 x 8; 3x3, batch 64,
T = 2, 35 % of the positions pruned after the first step as eqs 21-22), each sample keeps a random
``share`` of the output channels (eq 23's mask). The pruned path computes only the kept rows of
every sample in one batched product, padded to the largest kept count (no per-sample loop); the
dense path runs the dense conv, then the masks. Both give the same output (checked here). Times:
mean of ``--runs`` calls after one warm-up, inference (no gradients) and training (forward +
backward), in one run. Writes bench/results/pruned_conv_speed.{json,md} (bench/harness.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from harness import BenchOptions, BenchResult, main

from snnconvert.methods.spquant.pot import SPARSE_BELOW, PoTConv2d

SHAPES = ((16, 32), (32, 16), (64, 8))
SHARES = (0.05, 0.1, 0.2, 0.5, 0.8)


@dataclass
class Options(BenchOptions):
    runs: int = field(default=5, metadata={"help": "timed calls per case (after one warm-up)"})
    batch: int = field(default=64, metadata={"help": "images per call"})


def mean_ms(fn, runs: int) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(runs):
        fn()
    return (time.perf_counter() - start) / runs * 1000


def case(channels: int, size: int, share: float, options: Options) -> dict:
    gen = torch.Generator().manual_seed(channels)
    steps, batch = 2, options.batch
    conv = PoTConv2d(channels, channels, 3, padding=1, steps=steps, bits=None, prune_spatial=0.35,
                     prune_precision="ternary")
    x = (torch.rand(steps * batch, channels, size, size, generator=gen) > 0.8).float()
    kept = max(1, round(share * channels))
    mask = torch.zeros(batch, channels)
    for b in range(batch):
        mask[b, torch.randperm(channels, generator=gen)[:kept]] = 1.0
    row = {"channels": channels, "size": size, "share": share, "kept_channels": kept}
    outputs = {}
    for name, below in (("pruned", 1.0), ("dense", 0.0)):
        conv.sparse_below = below
        with torch.no_grad():
            outputs[name] = conv(x, mask)
            row[f"{name}_infer_ms"] = mean_ms(lambda: conv(x, mask), options.runs)

        def train() -> None:
            conv.zero_grad(set_to_none=True)
            conv(x, mask).sum().backward()

        row[f"{name}_train_ms"] = mean_ms(train, options.runs)
    row["max_abs_diff"] = float((outputs["pruned"] - outputs["dense"]).abs().max())
    row["infer_speedup"] = row["dense_infer_ms"] / row["pruned_infer_ms"]
    row["train_speedup"] = row["dense_train_ms"] / row["pruned_train_ms"]
    return row


def run(options: Options) -> BenchResult:
    rows = []
    for channels, size in SHAPES:
        for share in SHARES:
            rows.append(case(channels, size, share, options))
            print({k: round(v, 3) if isinstance(v, float) else v for k, v in rows[-1].items()}, flush=True)
    lines = [f"SpQuant pruned conv vs dense then masked: batch {options.batch}, T = 2, 35 % of positions pruned "
             f"after step 1, {torch.get_num_threads()} threads, mean of {options.runs} calls. The coding switches "
             f"to the pruned path below a kept share of {SPARSE_BELOW:g} (`SPARSE_BELOW`).", "",
             "| layer (C x H x W) | kept channels | pruned infer ms | dense infer ms | dense / pruned "
             "| pruned train ms | dense train ms | dense / pruned | max abs diff |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['channels']} x {r['size']} x {r['size']} | {100 * r['share']:.0f} % ({r['kept_channels']}) "
                     f"| {r['pruned_infer_ms']:.2f} | {r['dense_infer_ms']:.2f} | {r['infer_speedup']:.2f}x "
                     f"| {r['pruned_train_ms']:.2f} | {r['dense_train_ms']:.2f} | {r['train_speedup']:.2f}x "
                     f"| {r['max_abs_diff']:.1e} |")
    return BenchResult("pruned_conv_speed", {"rows": rows, "runs": options.runs, "batch": options.batch},
                       "\n".join(lines) + "\n")


if __name__ == "__main__":
    main(Options, run, __doc__)
