"""Why the neuron time loops leave torch's thread count alone: the TSA and IF loops on a
ResNet-20-sized frame (T=8, batch 64, 16 x 32 x 32) with torch's default threads and with one.

    python bench/neuron_loop_threads.py [--runs 10]

The loops once forced one CPU thread around themselves (a process-wide change); measured here,
one thread is slower than the default on this machine. Writes bench/results/neuron_loop_threads.json.
"""

from __future__ import annotations

import argparse
import time

import torch
from common import machine, start_process, write_json

from snnconvert.methods.rate.neuron import if_dynamics
from snnconvert.methods.sws.neuron import tsa_dynamics


def best_ms(fn, runs: int) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(runs):
        fn()
    return (time.perf_counter() - start) / runs * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    frames = torch.randn(8, 64, 16, 32, 32, generator=torch.Generator().manual_seed(0))
    loops = {"tsa": lambda: tsa_dynamics(frames, Ts=2, beta=2.0, qmax=255.0),
             "if": lambda: if_dynamics(frames.abs() / 3)}
    default = torch.get_num_threads()
    rows = []
    for name, fn in loops.items():
        for threads in (default, 1):
            torch.set_num_threads(threads)  # this process owns its thread pool
            rows.append({"loop": name, "threads": threads, "ms": best_ms(fn, args.runs)})
            print(rows[-1], flush=True)
    torch.set_num_threads(default)
    write_json("neuron_loop_threads.json", {"machine": machine(), "shape": list(frames.shape), "runs": args.runs,
                                            "rows": rows})


if __name__ == "__main__":
    start_process()
    main()
