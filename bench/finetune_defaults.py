"""Fine-tuning with the defaults, as a new user runs it, beside the fair float reference.

    python bench/finetune_defaults.py [--models resnet20,resnet56,lenet5] [--limit 2000] [--device cpu]

For each model: quantize (8 bits; the shared pretrained checkpoint calibrated on cifar10/train-subset,
or the bundled LeNet-5 on digits), ``to-snn --coding mlif --S 3 --T 1`` with its default
calibration, then ``finetune`` with every default but ``epochs`` and ``max_batches_per_epoch``
(CIFAR: 4 epochs of 200 batches of 64 = 51,200 images from cifar10/train; digits: 5 full epochs).
The float ANN is fine-tuned on the same images with the same config (``snnconvert.finetune_ann``:
the "JPEG-adapted ANN", the fair reference for CIFAR's JPEG images). Test: ``--limit`` stratified
cifar10/test images (digits: its held-out evaluation images). Writes
bench/results/finetune_defaults[_<tag>].{json,md}.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

from common import SHARED, TEST, TRAIN, require_shared_data
from harness import BenchOptions, BenchResult, main

import snnconvert
from snnconvert.evaluate import EvaluateConfig, evaluate
from snnconvert.finetune import FinetuneConfig, finetune, finetune_ann
from snnconvert.quantize import QuantizeConfig

FULL_TRAIN = f"imagefolder:{SHARED / 'cifar10' / 'train'}"


@dataclass
class Options(BenchOptions):
    models: str = field(default="resnet20,resnet56,lenet5", metadata={"help": "comma-separated: resnet20, "
                                                                         "resnet56, lenet5"})
    coding: str = field(default="mlif", metadata={"help": "coding of the SNN"})
    S: int = field(default=3, metadata={"help": "M-LIF lanes"})
    T: int = field(default=1, metadata={"help": "time steps"})
    epochs: int = field(default=4, metadata={"help": "epochs (CIFAR)"})
    max_batches: int = field(default=200, metadata={"help": "batches of 64 per epoch (CIFAR)"})
    digits_epochs: int = field(default=5, metadata={"help": "epochs on digits (LeNet-5)"})
    limit: int = field(default=2000, metadata={"help": "stratified test images (CIFAR)"})
    calibrate: str = field(default="layerwise", metadata={"help": "to-snn calibration (the CLI's default: "
                                                                   "layerwise)"})
    distill: str = field(default="float", metadata={"help": "finetune distillation: float (default) or none"})
    time_budget_min: float | None = field(default=None, metadata={
        "help": "training wall-time guard per run (minutes); size --epochs to it"})
    learn_threshold: bool = field(default=False, metadata={"help": "finetune --learn-threshold (default off)"})
    learn_leak: bool = field(default=False, metadata={"help": "finetune --learn-leak (default off)"})
    ann_reference: bool = field(default=True, metadata={"help": "also fine-tune the float ANN (same budget)"})


def _top1(report: Any, model: str) -> float:
    return next(s.top1 for s in report.accuracy.scores if s.model == model)


def one_model(name: str, options: Options) -> dict[str, Any]:
    """Quantize, convert, fine-tune with the defaults, evaluate; the float reference beside it."""
    cifar = name.startswith("resnet")
    if cifar:
        q = snnconvert.quantize(name, weights=str(SHARED / f"{name}-cifar10.th"), data=TRAIN,
                                config=QuantizeConfig(bits=8, calib_limit=1000), eval_limit=0)
        train, test, limit = FULL_TRAIN, TEST, options.limit
        config = FinetuneConfig(epochs=options.epochs, max_batches_per_epoch=options.max_batches,
                                device=options.device, distill=options.distill,
                                learn_threshold=options.learn_threshold, learn_leak=options.learn_leak,
                                time_budget_s=60 * options.time_budget_min if options.time_budget_min else None)
    else:
        q = snnconvert.quantize(name, data="digits", eval_limit=0)
        train, test, limit = "digits", None, None
        config = FinetuneConfig(epochs=options.digits_epochs, device=options.device, distill=options.distill,
                                learn_threshold=options.learn_threshold, learn_leak=options.learn_leak)
    extra = {"S": options.S} if options.coding == "mlif" else {}
    start = time.perf_counter()
    # calibrate="layerwise" is the command line's default (`snnconvert to-snn`); the API's is "none"
    snn = snnconvert.to_snn(q, options.coding, T=options.T, calibrate=options.calibrate, **extra)
    convert_s = time.perf_counter() - start
    eval_cfg = EvaluateConfig(data=test, limit=limit, reports=("accuracy",), device=options.device)
    converted = evaluate(q, snn, eval_cfg)
    start = time.perf_counter()
    tuned = finetune(q, snn, config, data=train, show_progress=True)
    tune_s = time.perf_counter() - start
    after = evaluate(q, tuned.snn, eval_cfg)
    row: dict[str, Any] = {
        "model": name, "coding": options.coding, "T": options.T, **extra,
        "float_top1": _top1(converted, "float ANN"), "quantized_top1": _top1(converted, "quantized ANN"),
        "converted_top1": _top1(converted, "SNN"), "finetuned_top1": _top1(after, "SNN"),
        "test_images": converted.accuracy.images, "calibration": snn.info.get("calibration"),
        "calibration_proxy": snn.info.get("calibration_agreement"),
        "convert_seconds": convert_s, "finetune_wall_seconds": tune_s,
        "train_seconds": sum(h["seconds"] for h in tuned.history), "stopped": tuned.stopped,
        "train_images": sum(h["images"] for h in tuned.history),
        "train_images_per_s": sum(h["images"] for h in tuned.history) / max(sum(h["seconds"] for h in tuned.history),
                                                                           1e-9),
        "history": tuned.history, "notes": tuned.info.get("notes"), "config": config.as_dict(),
    }
    if options.ann_reference:
        start = time.perf_counter()
        reference = finetune_ann(q, config, data=train, show_progress=True)
        row["ann_finetune_wall_seconds"] = time.perf_counter() - start
        adapted = evaluate(dataclasses.replace(q, float_model=reference.model), None, eval_cfg)
        row["adapted_ann_top1"] = _top1(adapted, "float ANN")
        row["ann_history"] = reference.history
    print({k: v for k, v in row.items() if not k.endswith("history") and k != "config"}, flush=True)
    return row


def markdown(rows: list[dict[str, Any]], options: Options) -> str:
    lines = [f"Fine-tuning with the defaults ({options.coding}, T={options.T}"
             f"{', S=' + str(options.S) if options.coding == 'mlif' else ''}; to-snn calibration "
             f"{options.calibrate}, distillation {options.distill}"
             f"{', learnable thresholds' if options.learn_threshold else ''}"
             f"{', learnable leaks' if options.learn_leak else ''}"
             f"{f', time budget {options.time_budget_min:g} min' if options.time_budget_min else ''}); "
             f"CIFAR: {options.epochs} epochs x "
             f"{options.max_batches} batches of 64 from cifar10/train, {options.limit} stratified test images; "
             f"digits: {options.digits_epochs} epochs, its held-out evaluation images.", "",
             "| model | float ANN | JPEG-adapted ANN (same budget) | converted SNN | fine-tuned SNN | "
             "training images | train img/s | fine-tune wall |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        adapted = f"{100 * r['adapted_ann_top1']:.2f}%" if "adapted_ann_top1" in r else "-"
        lines.append(f"| {r['model']} | {100 * r['float_top1']:.2f}% | {adapted} | {100 * r['converted_top1']:.2f}% "
                     f"| {100 * r['finetuned_top1']:.2f}% | {r['train_images']:,} | {r['train_images_per_s']:.1f} | "
                     f"{r['finetune_wall_seconds'] / 60:.1f} min |")
    return "\n".join(lines) + "\n"


def run(options: Options) -> BenchResult:
    models = [m for m in options.models.split(",") if m]
    if any(m.startswith("resnet") for m in models):
        require_shared_data()
    rows = [one_model(m, options) for m in models]
    return BenchResult("finetune_defaults", {"rows": rows}, markdown(rows, options))


if __name__ == "__main__":
    main(Options, run, __doc__)
