"""The prepared GPU check: smoke checks, then short M-LIF and SWS fine-tuning runs on CUDA.

    python bench/gpu_check.py [--budget-min 2]      (make gpu-check)

1. ``bench/gpu_smoke.py``: CUDA vs CPU agreement of conversion, fine-tuning, evaluation, QAT and
   calibration statistics on LeNet-5 / digits (its own tolerances);
2. ``bench/finetune_resnet20.py --device cuda --cases a,d --budget-min B --tag gpu``: ResNet-20
   M-LIF S=3 T=1 and SWS Tc=8 Ts=0 fine-tuned for B minutes each on the shared CIFAR-10 data,
   evaluated on 2,000 stratified test images; writes bench/results/finetune_resnet20_gpu.{json,md,png}.
Sized to finish within 8 minutes on one H100 with the default budget (2 x 2 min of training, the
conversions, four evaluations and the smoke checks). Without a CUDA device it says so and exits 0;
it exits 1 when a step fails. Writes bench/results/gpu_check.json (what ran, exit codes, seconds).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from common import machine, start_process, write_json

HERE = Path(__file__).resolve().parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget-min", type=float, default=2.0, help="training minutes per fine-tuning case")
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device on this machine; nothing to check (exit 0)")
        return 0
    steps = [
        ("smoke", [sys.executable, str(HERE / "gpu_smoke.py")]),
        ("finetune", [sys.executable, str(HERE / "finetune_resnet20.py"), "--device", "cuda", "--cases", "a,d",
                      "--budget-min", str(args.budget_min), "--limit", "2000", "--tag", "gpu",
                      "--expected-ips", "2000"]),
    ]
    done = []
    for name, command in steps:
        start = time.perf_counter()
        code = subprocess.call(command)
        done.append({"step": name, "command": command[1:], "exit": code, "seconds": time.perf_counter() - start})
        print(f"gpu_check: {name} exited {code} after {done[-1]['seconds']:.0f} s", flush=True)
    write_json("gpu_check.json", {"machine": machine(), "device": torch.cuda.get_device_name(0), "steps": done})
    return 0 if all(step["exit"] == 0 for step in done) else 1


if __name__ == "__main__":
    start_process()
    sys.exit(main())
