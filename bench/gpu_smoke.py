"""GPU smoke test: quantize -> to-snn -> finetune (one short epoch) -> evaluate, on CUDA vs the CPU.

    python bench/gpu_smoke.py

LeNet-5 on the bundled digits, M-LIF S=3 T=1. Checks, with their tolerances:
  1. converted SNN logits on CUDA vs CPU: max |diff| <= 1e-3, same argmax on >= 99% of 256 images;
  2. one epoch (20 batches) of fine-tuning on each device: train loss within 5% (relative),
     validation top-1 within 3 points; the CUDA-trained SNN comes back on the CPU;
  3. evaluate() of both trained SNNs on the digits test split: SNN top-1 within 3 points;
  4. quantize with QAT (2 epochs x 10 batches) and to_snn (rate thresholds from calibration
     statistics, SWS --Ts auto) with device="cuda" vs "cpu": quantized top-1 within 2 points,
     rate thresholds within 1e-4 relative, the same auto silent periods.
Exits 0 with a message when no CUDA device exists; 1 if a check fails.
"""

from __future__ import annotations

import dataclasses
import sys

import torch

import snnconvert
from snnconvert.evaluate import EvaluateConfig, evaluate
from snnconvert.finetune import FinetuneConfig, finetune


def main() -> int:
    if not torch.cuda.is_available():
        print("gpu_smoke: no CUDA device on this machine; nothing to check (exit 0)")
        return 0
    failures = []

    def check(ok: bool, text: str) -> None:
        print(("PASS " if ok else "FAIL ") + text, flush=True)
        if not ok:
            failures.append(text)

    q = snnconvert.quantize("lenet5", data="digits", eval_limit=0)
    snn = snnconvert.to_snn(q, "mlif", S=3, T=1)
    x = torch.rand(256, *q.info.input_spec.example_shape(1)[1:], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        cpu_logits = snn(x)
        gpu_logits = snn.to("cuda")(x.cuda()).cpu()
    snn.cpu()
    diff = float((cpu_logits - gpu_logits).abs().max())
    agree = float((cpu_logits.argmax(1) == gpu_logits.argmax(1)).float().mean())
    check(diff <= 1e-3 and agree >= 0.99,
          f"converted logits: max |diff| {diff:.2e} (<= 1e-3), argmax agree {agree:.2%}")

    cfg = FinetuneConfig(epochs=1, lr=1e-3, batch_size=32, learn_threshold=True, learn_leak=True,
                         max_batches_per_epoch=20, val_limit=200, device="cpu")
    on_cpu = finetune(q, snn, cfg, data="digits")
    on_gpu = finetune(q, snn, dataclasses.replace(cfg, device="cuda"), data="digits")
    lc, lg = on_cpu.history[0]["train_loss"], on_gpu.history[0]["train_loss"]
    check(abs(lc - lg) <= 0.05 * abs(lc), f"train loss cpu {lc:.4f} vs cuda {lg:.4f} (within 5%)")
    vc, vg = on_cpu.history[0]["val_top1"], on_gpu.history[0]["val_top1"]
    check(abs(vc - vg) <= 0.03, f"validation top-1 cpu {vc:.2%} vs cuda {vg:.2%} (within 3 points)")
    devices = {p.device.type for p in on_gpu.snn.parameters()} | {b.device.type for b in on_gpu.snn.buffers()}
    check(devices == {"cpu"}, f"CUDA-trained SNN returned on {sorted(devices)}")
    print(f"training images/s: cpu {on_cpu.history[0]['images_per_s']:.1f}, "
          f"cuda {on_gpu.history[0]['images_per_s']:.1f}")

    tops = []
    for result in (on_cpu, on_gpu):
        report = evaluate(q, result.snn, EvaluateConfig(reports=("accuracy",)))
        tops.append(next(s.top1 for s in report.accuracy.scores if s.model == "SNN"))
    check(abs(tops[0] - tops[1]) <= 0.03,
          f"evaluate SNN top-1 cpu {tops[0]:.2%} vs cuda {tops[1]:.2%} (within 3 points)")
    from snnconvert.quantize import QuantizeConfig

    qat = {"qat_epochs": 2, "qat_batches_per_epoch": 10, "qat_lr": 1e-3}
    q_cpu = snnconvert.quantize("lenet5", data="digits", config=QuantizeConfig(**qat, device="cpu"))
    q_gpu = snnconvert.quantize("lenet5", data="digits", config=QuantizeConfig(**qat, device="cuda"))
    ac, ag = q_cpu.accuracy.quantized_top1, q_gpu.accuracy.quantized_top1
    check(abs(ac - ag) <= 0.02, f"QAT quantized top-1 cpu {ac:.2%} vs cuda {ag:.2%} (within 2 points)")
    rate_cpu = snnconvert.to_snn(q_cpu, "rate", T=32, device="cpu")
    rate_gpu = snnconvert.to_snn(q_cpu, "rate", T=32, device="cuda")
    worst = max(float(((a - b).abs() / a.abs().clamp(min=1e-12)).max())
                for (_, a), (_, b) in zip(rate_cpu.state_dict().items(), rate_gpu.state_dict().items(), strict=True)
                if a.is_floating_point() and a.numel())
    check(worst <= 1e-4, f"rate conversion state cpu vs cuda calibration: max relative diff {worst:.2e} (<= 1e-4)")
    auto_cpu = snnconvert.to_snn(q_cpu, "sws", Tc=8, Ts="auto", device="cpu").info["auto"]
    auto_gpu = snnconvert.to_snn(q_cpu, "sws", Tc=8, Ts="auto", device="cuda").info["auto"]
    check(auto_cpu["uniform_Ts"] == auto_gpu["uniform_Ts"],
          f"--Ts auto uniform Ts cpu {auto_cpu['uniform_Ts']} vs cuda {auto_gpu['uniform_Ts']}")
    print("gpu_smoke: " + ("all checks passed" if not failures else f"{len(failures)} check(s) failed"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
