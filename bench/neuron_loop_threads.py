"""Why the neuron time loops leave torch's thread count alone: the TSA and IF loops on a
ResNet-20-sized frame (T=8, batch 64, 16 x 32 x 32) with torch's default threads and with one.

    python bench/neuron_loop_threads.py [--runs 10]

The loops once forced one CPU thread around themselves (a process-wide change); measured here,
one thread is slower than the default on this machine. Writes
bench/results/neuron_loop_threads.{json,md} (bench/harness.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from harness import BenchOptions, BenchResult, main

from snnconvert.methods.rate.neuron import if_dynamics
from snnconvert.methods.sws.neuron import tsa_dynamics


@dataclass
class Options(BenchOptions):
    runs: int = field(default=10, metadata={"help": "timed calls per loop and thread count (after one warm-up)"})


def mean_ms(fn, runs: int) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(runs):
        fn()
    return (time.perf_counter() - start) / runs * 1000


def run(options: Options) -> BenchResult:
    frames = torch.randn(8, 64, 16, 32, 32, generator=torch.Generator().manual_seed(0))
    loops = {"tsa": lambda: tsa_dynamics(frames, Ts=2, beta=2.0, qmax=255.0),
             "if": lambda: if_dynamics(frames.abs() / 3)}
    default = torch.get_num_threads()
    rows = []
    for name, fn in loops.items():
        for threads in (default, 1):
            torch.set_num_threads(threads)  # this process owns its thread pool
            rows.append({"loop": name, "threads": threads, "ms": mean_ms(fn, options.runs)})
            print(rows[-1], flush=True)
    torch.set_num_threads(default)
    lines = [f"Neuron time loops on a {'x'.join(map(str, frames.shape))} frame, mean of {options.runs} calls.", "",
             "| loop | threads | ms per call |", "|---|---|---|"]
    lines += [f"| {r['loop']} | {r['threads']} | {r['ms']:.2f} |" for r in rows]
    return BenchResult("neuron_loop_threads", {"shape": list(frames.shape), "runs": options.runs, "rows": rows},
                       "\n".join(lines) + "\n")


if __name__ == "__main__":
    main(Options, run, __doc__)
