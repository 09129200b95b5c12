"""NIR files run unedited by the tools that read NIR, against snnconvert's simulator (issue 28).

For each network the SNN is exported (``AvgPool2d`` for SpikingJelly, ``--nir-pool sum`` for
norse and sinabs, the only pooling each reads), loaded with the tool's own ``from_nir`` and run
on the same images for T steps in the tool's default float32 (snnconvert.export.nir_consumers);
the table gives whether it loads, the largest logit difference relative to the logit scale, top-1
agreement with the simulator and whether every layer's spike count is equal. sinabs is also run
with its layers set to the file's neuron (one spike a step, the file's reset, no lower bound).

Networks: the bundled LeNet-5 with average pooling, rate T=32 with the hard reset (``--reset
zero --no-half-init``); the same fine-tuned one epoch with learned leaks (``--learn-leak
--leak-max 1``); the pretrained CIFAR ResNet-20 the same way (../shared/data, skipped without
it); the rate coding's defaults (soft reset, theta/2 start), written with ``--nir-inexact``; and
the soft reset from 0 (``--no-half-init``) written with ``--nir-reset subtract`` (LeNet-5 and
ResNet-20), which SpikingJelly runs with ``v_reset = None`` and sinabs set to the file's neuron.
Calibration: ``layerwise`` on 512 images, the command line's default. It also measures what each
reset costs in accuracy. Writes bench/results/nir_consumers.{json,md}.

    python bench/nir_consumers.py [--images 200] [--accuracy-images 2000]
"""

from __future__ import annotations

import copy
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from common import CHECKPOINT, SHARED, TEST, TRAIN
from harness import BenchOptions, BenchResult, main
from torch import nn

from snnconvert.data import InputSpec
from snnconvert.data.digits import digits_arrays
from snnconvert.export.nir import export_nir
from snnconvert.export.nir_consumers import CONSUMERS, run_consumer, simulator_run
from snnconvert.ingest import load_model
from snnconvert.pipeline import quantize, to_snn
from snnconvert.quantize import QuantizeConfig

T = 32


@dataclass
class Options(BenchOptions):
    images: int = field(default=200, metadata={"help": "images each tool runs"})
    accuracy_images: int = field(default=2000, metadata={"help": "CIFAR-10 test images for the hard-reset cost"})


def _lenet():
    """The bundled LeNet-5 with average pooling, its float ANN trained 8 epochs on digits that way
    (lr 0.01, cosine; 99.07 % on the digits test split), then quantized."""
    from snnconvert.finetune import FinetuneConfig, finetune_ann

    model = copy.deepcopy(load_model("lenet5").module)
    model.pool1, model.pool2 = nn.AvgPool2d(2), nn.AvgPool2d(2)
    spec = InputSpec(1, (8, 8), None, None, None)
    q = quantize(model, data="digits", input_spec=spec, config=QuantizeConfig(calib_limit=256), eval_limit=0)
    trained = finetune_ann(q, FinetuneConfig(epochs=8, lr=0.01, schedule="cosine", val_limit=0), data="digits").model
    return quantize(trained, data="digits", input_spec=spec, config=QuantizeConfig(calib_limit=256), eval_limit=0)


def _cifar_images(count: int) -> torch.Tensor:
    from snnconvert.data import load_split, materialize

    spec = InputSpec(3, (32, 32), None, None, None)
    split = load_split(TEST, "eval", spec, seed=0, limit=count)
    images = materialize(split).dataset.images[:count]
    return images.float() / 255.0 if images.dtype == torch.uint8 else images.float()


def _compare(run, reference) -> dict[str, Any]:
    if run.logits.shape != reference.logits.shape:  # norse and sinabs run graphs with nirtorch.load
        return {"loads": False, "error": f"runs, but returns a {tuple(run.logits.shape)} tensor, not the output: "
                                         "nirtorch.load runs nodes depth-first, so a residual sum runs out of order "
                                         "(export with --nir-order depth-first)"}
    scale = float(np.abs(reference.logits).max())
    return {"loads": True, "max_logit_diff": float(np.abs(run.logits - reference.logits).max()) / scale,
            "agreement": float((run.logits.argmax(1) == reference.logits.argmax(1)).mean()),
            "spikes_equal": all(run.spike_counts.get(k) == v for k, v in reference.spike_counts.items()),
            "spikes": float(sum(run.spike_counts.values())),
            "reference_spikes": float(sum(reference.spike_counts.values()))}


def _rows(name: str, snn, shape: tuple[int, int, int], images: torch.Tensor, folder: Path,
          inexact: bool = False, reset: str = "hard") -> list[dict[str, Any]]:
    references = {dtype: simulator_run(snn, images, dtype) for dtype in (torch.float32, torch.float64)}
    files = {pool: export_nir(snn, folder / f"{name}-{pool}.nir", shape, pool=pool, inexact=inexact,
                              reset=reset).path for pool in ("avg", "sum")}
    rows = []
    runs = [(c, {}) for c in CONSUMERS] + [("sinabs", {"sinabs_as_nir": True})]
    runs += [(c, {"dtype": torch.float64}) for c in ("norse", "spikingjelly")]
    runs += [("sinabs", {"sinabs_as_nir": True, "dtype": torch.float64})]
    for consumer, extra in runs:
        label = consumer + (" (set to the file's neuron)" if extra.get("sinabs_as_nir") else "")
        label += ", float64 on both sides" if "dtype" in extra else ""
        path = files["avg" if consumer == "spikingjelly" else "sum"]
        start = time.perf_counter()
        try:
            reference = references[extra.get("dtype", torch.float32)]
            row = _compare(run_consumer(consumer, path, images, T, **extra), reference)
        except Exception as exc:  # noqa: BLE001 - a tool's own refusal is the measurement
            row = {"loads": False, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"}
        row.update(network=name, consumer=label, seconds=time.perf_counter() - start)
        print(f"{name:28s} {label:38s} {row.get('agreement', row.get('error'))}", flush=True)
        rows.append(row)
    return rows


def _accuracy(q, snn, data: str, limit: int | None) -> dict[str, float]:
    """Top-1 of the float ANN, the quantized ANN and the SNN (``limit`` stratified images; None: all)."""
    from snnconvert.evaluate import EvaluateConfig, evaluate

    report = evaluate(q, snn, EvaluateConfig(data=data, limit=limit, reports=("accuracy",)))
    return {s.model: s.top1 for s in report.accuracy.scores}


def run(options: Options) -> BenchResult:
    from snnconvert.finetune import FinetuneConfig, finetune

    torch.manual_seed(0)
    folder = Path(tempfile.mkdtemp(prefix="snnconvert-nir-bench-"))
    digits = digits_arrays("test")[0][:options.images].float()
    lenet = _lenet()
    calibration = {"calibrate": "layerwise", "calibrate_images": 512}  # the command line's default
    hard = to_snn(lenet, coding="rate", T=T, reset="zero", half_init=False, **calibration)
    default = to_snn(lenet, coding="rate", T=T, **calibration)
    tuned = finetune(lenet, hard, FinetuneConfig(epochs=1, lr=0.01, learn_leak=True, leak_max=1.0, val_limit=0),
                     data="digits").snn
    leaks = [float(v) for n in tuned.neurons().values() if n.leak is not None for v in n.leak.detach().reshape(-1)]
    rows = _rows("LeNet-5 avg-pool, rate T=32", hard, (1, 8, 8), digits, folder)
    rows += _rows("LeNet-5, learned LIF leaks", tuned, (1, 8, 8), digits, folder)
    rows += _rows("LeNet-5, rate defaults", default, (1, 8, 8), digits, folder, inexact=True)
    soft = to_snn(lenet, coding="rate", T=T, half_init=False, **calibration)
    rows += _rows("LeNet-5, --nir-reset subtract", soft, (1, 8, 8), digits, folder, reset="subtract")
    cost = {f"LeNet-5 avg-pool, digits test, {label}": _accuracy(lenet, snn, "digits", None)
            for label, snn in (("soft reset + theta/2", default), ("hard reset + 0", hard), ("soft reset + 0", soft))}
    if CHECKPOINT.is_file():
        resnet = quantize("resnet20", weights=str(CHECKPOINT), data=TRAIN, config=QuantizeConfig(calib_limit=512),
                          eval_limit=0)
        resnet_hard = to_snn(resnet, coding="rate", T=T, reset="zero", half_init=False, **calibration)
        rows += _rows("ResNet-20, rate T=32", resnet_hard, (3, 32, 32), _cifar_images(options.images), folder)
        resnet_soft = to_snn(resnet, coding="rate", T=T, half_init=False, **calibration)
        rows += _rows("ResNet-20, --nir-reset subtract", resnet_soft, (3, 32, 32), _cifar_images(options.images),
                      folder, reset="subtract")
        resnet_default = to_snn(resnet, coding="rate", T=T, **calibration)
        for label, snn in (("soft reset + theta/2", resnet_default), ("hard reset + 0", resnet_hard),
                           ("soft reset + 0", resnet_soft)):
            cost[f"ResNet-20, CIFAR-10 test ({options.accuracy_images}), {label}"] = _accuracy(
                resnet, snn, TEST, options.accuracy_images)
    shutil.rmtree(folder, ignore_errors=True)
    data = {"T": T, "images": options.images, "rows": rows, "learned_leaks": leaks, "accuracy": cost,
            "shared_data": str(SHARED)}
    return BenchResult("nir_consumers", data, _markdown(data, options))


def _markdown(data: dict[str, Any], options: Options) -> str:
    lines = ["# NIR files in the tools that read them", "",
             f"`python bench/nir_consumers.py`: each file (the default `--nir-order depth-first`) run unedited with "
             "the tool's own `from_nir` in float32 (last rows: float64, the simulator too) on "
             f"{data['images']} images for T = {data['T']} steps (the image as a constant input, the output averaged "
             "over the steps), against snnconvert's simulator. Logit difference: max |difference| / max |logit|.", "",
             "| network | tool | loads | max logit diff | top-1 agreement | spike counts equal |",
             "|---|---|---|---|---|---|"]
    for row in data["rows"]:
        if row["loads"]:
            lines.append(f"| {row['network']} | {row['consumer']} | yes | {row['max_logit_diff']:.2g} | "
                         f"{100 * row['agreement']:.1f} % | {'yes' if row['spikes_equal'] else 'no'} "
                         f"({row['spikes']:,.0f} vs {row['reference_spikes']:,.0f}) |")
        else:
            lines.append(f"| {row['network']} | {row['consumer']} | no: {row['error']} | | | |")
    leaks = data["learned_leaks"]
    lines += ["", f"Learned leaks after one epoch (`--learn-leak --leak-max 1`): {min(leaks):.4f} to "
              f"{max(leaks):.4f}.", "",
              "What each reset costs (top-1, rate T=32, layerwise calibration on 512 images, the command "
              "line's default):", "",
              "| network, data, neuron | float ANN | quantized ANN | SNN |", "|---|---|---|---|"]
    lines += [f"| {name} | {100 * v['float ANN']:.2f} % | {100 * v['quantized ANN']:.2f} % | {100 * v['SNN']:.2f} % |"
              for name, v in data["accuracy"].items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main(Options, run, __doc__)
