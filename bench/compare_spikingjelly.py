"""snnconvert vs SpikingJelly 2.0.0 ann2snn, side by side on ResNet-20 / CIFAR-10 (../shared/data).

    python bench/compare_spikingjelly.py [--n 2000] [--n-rate 1000] [--quick]    (make bench-peers)
    python bench/compare_spikingjelly.py --engine-table [--quick]    (per-image-step table only)

One process, one machine, the same decoded images for both tools:

* conversion coverage: SpikingJelly's ``Converter(RateCodingRecipe(...))`` on the model exactly as
  snnconvert ingests it, then on an equivalent rewrite it accepts (bench/sj_models.py), for
  ResNet-20 and a torchvision ResNet-18 (random weights, 10 classes, 64x64);
* accuracy vs latency: SpikingJelly rate coding (modes ``max`` and ``99.9%``) and snnconvert rate
  coding (percentiles 99.9 and 99.99) at T = 8..256, each from one T = 256 run (both are causal:
  the output after T' steps of a T-step run is that of a T'-step run; checked on a small batch);
  snnconvert SWS (Tc = 8, Ts = 0..3 and auto) and M-LIF (S = 3, T = 1..8, no fine-tuning);
* wall time per setting: separate timed runs at every T on a stratified timing subset, same batch
  size and thread count for both tools, best of ``--repeats``; timing waits for a quiet machine;
* speed at iso-accuracy (within 1 point of the float ANN) and the simulators' per-image-step cost.

Calibration: the 1,000 train-subset images snnconvert's quantize step uses (the same batches,
normalized, for SpikingJelly). Evaluation: ``--n`` stratified test images; the rate-coded runs of
both tools (the expensive part: T = 256 steps per image) use a stratified ``--n-rate`` subset of
them, and every accuracy is compared with the float ANN on the same images.

Writes bench/results/compare_spikingjelly.{md,json,png}.

``--engine-table`` measures only the simulators' cost per image-step for rate coding, at every T of
``--engine-T`` (default 8..256) on ResNet-20 (CIFAR-10 weights) and ResNet-18 (random weights,
64x64): snnconvert in time chunks of ``--chunk-mb`` (the default engine) and with all T frames
folded at once, SpikingJelly multi-step and single-step, each timed separately at every T on the
same images, batch and threads (best of ``--repeats``). Writes
bench/results/compare_spikingjelly_engine{,_quick}.{md,json}.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from common import CHECKPOINT, RESULTS, TEST, TRAIN, machine, require_shared_data, start_process, write_json
from machine_load import CpuWindow, external_load, loadavg, wait_for_quiet
from sj_models import (
    SJ_MODES,
    Conversion,
    prefix_means,
    rewrite_for_spikingjelly,
    sj_convert,
    sj_outputs,
    sj_single_step_cumulative,
    snnc_outputs,
    top1,
)
from torch import Tensor, nn

import snnconvert
from snnconvert.atomic import write_atomically
from snnconvert.codings import get_coding
from snnconvert.codings.base import ConversionInputs
from snnconvert.codings.common import activation_percentiles
from snnconvert.data import InputSpec, load_split, materialize
from snnconvert.data.sampling import stratified_sample
from snnconvert.evaluate import in_dtype
from snnconvert.ingest import LoadedModel, load_model
from snnconvert.methods.mlif.coding import MLIFConfig
from snnconvert.methods.rate import coding as rate
from snnconvert.pipeline import QuantizedModel, conversion_inputs
from snnconvert.quantize import QuantizeConfig
from snnconvert.reports.plots import accuracy_latency_plot
from snnconvert.simulate.chunks import steps_per_chunk
from snnconvert.simulate.memory import CHUNK_BYTES as DEFAULT_CHUNK_BYTES

T_GRID = (8, 16, 32, 64, 128, 256)
SWS_TS: tuple[int | str, ...] = (0, 1, 2, 3, "auto")
RATE_PERCENTILES = (99.9, 99.99)
MLIF_S = 3
MLIF_T = (1, 2, 4, 8)
MLIF_SERIES = (("lowest", 90.0), ("highest", 99.9))  # (anchor, percentile): the paper's recipe; top-lane anchor
ISO_POINTS = 1.0
SWS_POINTS = 0.5
OUT_NAME = "compare_spikingjelly"


@dataclass
class Options:
    """Command-line options after --quick is applied."""

    n: int
    n_rate: int
    timing_images: int
    batch: int
    repeats: int
    threads: int
    max_external_load: float
    max_wait: float
    resnet18: bool
    r18_images: int
    r18_batch: int
    r18_T: tuple[int, ...]
    quick: bool
    engine_table: bool = False
    engine_T: tuple[int, ...] = T_GRID
    chunk_bytes: int = DEFAULT_CHUNK_BYTES
    calib_limit: int = 1000


@dataclass
class Row:
    """One line of the accuracy vs latency table."""

    tool: str
    series: str
    setting: str
    latency: int
    top1: float  # on the common (rate) image set
    delta: float  # points vs the float ANN on the same images
    top1_all: float | None = None  # on all --n images (codings cheap enough to run on all)
    seconds_per_image: float | None = None  # timing subset, batch --batch, best of --repeats
    run_seconds: float | None = None  # wall time of the accuracy run (see run_images)
    run_images: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Images:
    """The evaluation images (decoded once) and the subsets the expensive runs use."""

    raw: Tensor  # (n, C, H, W) pixels in [0, 1]: snnconvert's input
    normalized: Tensor  # the same, normalized: SpikingJelly's (and the ingested model's) input
    labels: Tensor
    common: Tensor  # positions of the --n-rate subset
    timing: Tensor  # positions (into raw) of the timing subset
    description: str


class Log:
    """Timestamped progress lines."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def __call__(self, message: str) -> None:
        print(f"[{time.perf_counter() - self.start:7.0f}s] {message}", flush=True)


def parse_args(argv: list[str] | None = None) -> Options:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=2000, help="stratified test images (float ANN, SWS, M-LIF)")
    p.add_argument("--n-rate", type=int, default=1000,
                   help="stratified subset of them for the T=256 rate-coded runs of both tools")
    p.add_argument("--timing-images", type=int, default=32, help="images per timed run")
    p.add_argument("--batch", type=int, default=32, help="images per batch in every SNN run, both tools")
    p.add_argument("--repeats", type=int, default=2, help="timed runs per setting (the fastest is kept)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads, both tools")
    p.add_argument("--max-external-load", type=float, default=0.3,
                   help="time only while other processes use at most this many cores")
    p.add_argument("--max-wait", type=float, default=1800, help="seconds to wait for a quiet machine")
    p.add_argument("--skip-resnet18", action="store_true")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 100 images (20 rate-coded, 4 timed), 1 repeat, no waiting")
    p.add_argument("--engine-table", action="store_true",
                   help="only the per-image-step cost of rate coding at every --engine-T, both models")
    p.add_argument("--engine-T", default=",".join(str(t) for t in T_GRID), help="time steps of --engine-table")
    p.add_argument("--chunk-mb", type=float, default=DEFAULT_CHUNK_BYTES / 2**20,
                   help="snnconvert's time chunks: MiB of the largest folded activation per chunk")
    p.add_argument("--r18-images", type=int, default=16, help="--engine-table: timed ResNet-18 images")
    p.add_argument("--r18-batch", type=int, default=8, help="--engine-table: ResNet-18 batch")
    a = p.parse_args(argv)
    if a.engine_table:
        grid = tuple(int(t) for t in a.engine_T.split(","))
        if a.quick:
            return Options(n=0, n_rate=0, timing_images=2, batch=2, repeats=1, threads=a.threads,
                           max_external_load=float("inf"), max_wait=0, resnet18=not a.skip_resnet18,
                           r18_images=1, r18_batch=1, r18_T=grid[:2], quick=True, engine_table=True,
                           engine_T=grid[:2], chunk_bytes=int(a.chunk_mb * 2**20), calib_limit=64)
        return Options(n=0, n_rate=0, timing_images=a.timing_images, batch=a.batch, repeats=max(1, a.repeats),
                       threads=a.threads, max_external_load=a.max_external_load, max_wait=a.max_wait,
                       resnet18=not a.skip_resnet18, r18_images=a.r18_images, r18_batch=a.r18_batch, r18_T=grid,
                       quick=False, engine_table=True, engine_T=grid, chunk_bytes=int(a.chunk_mb * 2**20))
    if a.quick:
        return Options(n=min(a.n, 100), n_rate=min(a.n_rate, 20), timing_images=4, batch=10, repeats=1,
                       threads=a.threads, max_external_load=a.max_external_load, max_wait=0,
                       resnet18=not a.skip_resnet18, r18_images=2, r18_batch=2, r18_T=(8,), quick=True)
    return Options(n=a.n, n_rate=min(a.n_rate, a.n), timing_images=a.timing_images, batch=a.batch,
                   repeats=max(1, a.repeats), threads=a.threads, max_external_load=a.max_external_load,
                   max_wait=a.max_wait, resnet18=not a.skip_resnet18, r18_images=16, r18_batch=8, r18_T=(8, 32),
                   quick=False)


# ---------------------------------------------------------------------------- data


def normalize(images: Tensor, spec: InputSpec) -> Tensor:
    """The ingested model's input: (x - mean) / std per channel."""
    mean = torch.tensor(spec.mean, dtype=images.dtype).view(1, -1, 1, 1)
    std = torch.tensor(spec.std, dtype=images.dtype).view(1, -1, 1, 1)
    return (images - mean) / std


def decode(data: str, role: str, spec: InputSpec, limit: int, **kwargs: Any) -> tuple[Tensor, Tensor, str]:
    split = materialize(load_split(data, role, spec, limit=limit, **kwargs))
    images = torch.stack([split.dataset[i][0] for i in range(len(split))]).float()
    labels = torch.tensor([int(split.dataset[i][1]) for i in range(len(split))])
    return images, labels, split.description


def eval_images(spec: InputSpec, opts: Options) -> Images:
    raw, labels, description = decode(TEST, "eval", spec, opts.n, seed=0)
    common = torch.from_numpy(stratified_sample(labels.numpy(), opts.n_rate, seed=1))
    timing = common[torch.from_numpy(stratified_sample(labels[common].numpy(), opts.timing_images, seed=2))]
    return Images(raw, normalize(raw, spec), labels, common, timing, description)


def calibration_batches(inputs: ConversionInputs) -> list[tuple[Tensor, Tensor]]:
    return [(x.float(), y) for x, y in inputs.calibration]


# ---------------------------------------------------------------------------- timing


MAX_ATTEMPTS = 4


@dataclass
class Timer:
    """Timed measurements that are redone when other processes took CPU while they ran.

    Each measurement is the fastest of ``repeats`` runs; the CPU other processes used during it is
    recorded (``records``). Above ``max_external_load`` cores the measurement waits for a quiet
    machine and is repeated, up to MAX_ATTEMPTS times (then kept, flagged by its load)."""

    opts: Options
    log: Log
    records: list[dict[str, Any]] = field(default_factory=list)

    def seconds(self, label: str, fn) -> float:
        """Wall seconds of ``fn()``."""

        def timed() -> dict[str, float]:
            start = time.perf_counter()
            fn()
            return {"": time.perf_counter() - start}

        return self.many(label, timed)[""]

    def many(self, label: str, fn) -> dict[Any, float]:
        """``fn()`` returns several wall times (e.g. cumulative per step count); each is the
        fastest over the repeats."""
        for attempt in range(1, MAX_ATTEMPTS + 1):
            with CpuWindow(label) as window:
                best: dict[Any, float] = {}
                for _ in range(self.opts.repeats):
                    for key, value in fn().items():
                        best[key] = min(best.get(key, float("inf")), value)
            ext = window.external_cores
            if ext is None or ext <= self.opts.max_external_load or attempt == MAX_ATTEMPTS:
                self.records.append({"label": label, "external_cores": None if ext is None else round(ext, 3),
                                     "attempts": attempt, "loadavg": window.loadavg_end,
                                     "seconds": {str(k): v for k, v in best.items()}})
                return best
            self.log(f"  {label}: other processes used {ext:.2f} cores meanwhile; re-measuring when quiet")
            wait_for_quiet(self.opts.max_external_load, self.opts.max_wait, log=self.log)
        raise AssertionError("unreachable")

    def summary(self) -> dict[str, Any]:
        loads = [r["external_cores"] for r in self.records if r["external_cores"] is not None]
        return {"measurements": len(self.records), "max_external_cores": max(loads, default=None),
                "mean_external_cores": sum(loads) / len(loads) if loads else None,
                "remeasured": sum(r["attempts"] > 1 for r in self.records),
                "over_threshold": sum(x > self.opts.max_external_load for x in loads)}


@torch.no_grad()
def run_batched(model: nn.Module, images: Tensor, batch: int) -> Tensor:
    return torch.cat([model(images[i:i + batch]).float() for i in range(0, len(images), batch)])


def quiet_gate(opts: Options, log: Log, label: str) -> dict[str, Any]:
    log(f"{label}: checking machine load (other processes <= {opts.max_external_load} cores) ...")
    seen = wait_for_quiet(opts.max_external_load, opts.max_wait, log=log)
    state = "quiet" if seen["quiet"] else "NOT quiet (timed anyway)"
    log(f"  {state}: other processes {seen['external_cores']} cores, load average {seen['loadavg']}")
    return seen


# ---------------------------------------------------------------------------- conversion coverage


def snnc_coverage(model: str, variant: str, action, what: str) -> dict[str, Any]:
    start = time.perf_counter()
    try:
        result = action()
    except Exception as exc:  # the failure itself is the measurement
        return {"tool": "snnconvert", "model": model, "variant": variant, "mode": what, "ok": False,
                "error": f"{type(exc).__name__}: {exc}", "seconds": time.perf_counter() - start, "result": None}
    return {"tool": "snnconvert", "model": model, "variant": variant, "mode": what, "ok": True, "error": None,
            "seconds": time.perf_counter() - start, "result": result}


def quantize_coverage(model: str, loaded, calib_limit: int) -> tuple[dict[str, Any], QuantizedModel | None]:
    """snnconvert's coverage row for ingest + prepare + 8-bit quantize, and the quantized model."""
    holder: dict[str, QuantizedModel] = {}

    def quantize() -> str:
        holder["q"] = snnconvert.quantize(loaded, data=TRAIN, config=QuantizeConfig(bits=8, calib_limit=calib_limit),
                                          eval_limit=0)
        return "prepared + 8-bit quantized graph"

    return snnc_coverage(model, "as ingested", quantize, "prepare + quantize"), holder.get("q")


def sj_row(c: Conversion) -> dict[str, Any]:
    return {"tool": "SpikingJelly", **c.as_dict()}


@torch.no_grad()
def logits_diff(a: nn.Module, xa: Tensor, b: nn.Module, xb: Tensor, batch: int = 250) -> dict[str, float]:
    la, lb = run_batched(a, xa, batch), run_batched(b, xb, batch)
    return {"max_abs_diff": float((la - lb).abs().max()), "argmax_agreement": float((la.argmax(1) == lb.argmax(1))
                                                                                       .double().mean()),
            "images": len(xa)}


# ---------------------------------------------------------------------------- ResNet-20


@dataclass
class Resnet20:
    """Everything the ResNet-20 sections share."""

    loaded: LoadedModel
    q: QuantizedModel
    inputs: ConversionInputs
    images: Images
    float_logits: Tensor  # the ingested float model on normalized images
    rewritten: nn.Module
    sj: dict[str, nn.Module]  # mode -> converted SNN (rewritten model)
    coverage: list[dict[str, Any]]
    checks: dict[str, Any]


def prepare_resnet20(opts: Options, log: Log) -> Resnet20:
    log("ResNet-20: ingest + quantize to 8 bits (snnconvert; calibration 1,000 train-subset images) ...")
    loaded = load_model("resnet20", str(CHECKPOINT))
    row, q = quantize_coverage("resnet20", loaded, 1000)
    coverage = [row]
    if q is None:
        raise RuntimeError(f"snnconvert could not quantize ResNet-20: {row['error']}")
    inputs = conversion_inputs(q, need_calibration=True)
    spec = loaded.input_spec
    log(f"  decoding {opts.n} test images ...")
    images = eval_images(spec, opts)
    calib = calibration_batches(inputs)
    sj_calib = [(normalize(x, spec), y) for x, y in calib]
    log(f"  calibration: {sum(len(x) for x, _ in calib)} images in {len(calib)} batches (both tools)")

    checks: dict[str, Any] = {}
    float_logits = run_batched(loaded.module, images.normalized, 250)
    checks["snnconvert_prepared_vs_ingested"] = logits_diff(q.float_model, images.raw, loaded.module,
                                                           images.normalized)
    rewritten = rewrite_for_spikingjelly(loaded.module, images.normalized[:2])
    checks["rewrite_vs_ingested"] = logits_diff(rewritten, images.normalized, loaded.module, images.normalized)
    log(f"  float logits: snnconvert prepared graph (raw pixels) vs ingested model (normalized): max |diff| "
        f"{checks['snnconvert_prepared_vs_ingested']['max_abs_diff']:.2e}; SpikingJelly rewrite vs ingested: "
        f"{checks['rewrite_vs_ingested']['max_abs_diff']:.2e}")

    log("  SpikingJelly on the model as ingested ...")
    as_is = sj_convert(loaded.module, sj_calib, "max", name="resnet20", variant="as ingested")
    coverage.append(sj_row(as_is))
    log(f"    {'converts' if as_is.ok else 'fails: ' + str(as_is.error)}")
    sj: dict[str, nn.Module] = {}
    for mode in SJ_MODES:
        log(f"  SpikingJelly on the rewritten model, mode {mode} ...")
        conv = sj_convert(rewritten, sj_calib, mode, name="resnet20", variant="rewritten")
        coverage.append(sj_row(conv))
        if not conv.ok:
            raise SystemExit(f"SpikingJelly could not convert the rewritten ResNet-20: {conv.error}")
        sj[mode] = conv.snn
        log(f"    converted in {conv.seconds:.1f} s")
    return Resnet20(loaded, q, inputs, images, float_logits, rewritten, sj, coverage, checks)


Nets = dict[tuple[str, str], nn.Module]


def accuracy_runs(r: Resnet20, opts: Options, log: Log) -> tuple[list[Row], dict[str, Any], Nets]:
    """Every setting's accuracy (rate-coded: from one T = 256 run per tool/mode); also returns the SWS
    and M-LIF networks by (series, setting) for the timing runs."""
    im, q = r.images, r.q
    common = im.common
    labels_c = im.labels[common]
    float_c = top1(r.float_logits[common], labels_c)
    rows: list[Row] = []
    nets: Nets = {}
    extra: dict[str, Any] = {"float_top1_all": top1(r.float_logits, im.labels), "float_top1_common": float_c}
    T_max = max(T_GRID)

    def add_rate(tool: str, series: str, cum: Tensor, seconds: float, info: dict[str, Any]) -> None:
        for T in T_GRID:
            acc = top1(cum[T - 1], labels_c)
            rows.append(Row(tool, series, f"T={T}", T, acc, 100 * (acc - float_c), None, None, seconds, len(common),
                            dict(info)))

    # SpikingJelly rate coding
    sj_cum: dict[str, Tensor] = {}
    for mode, snn in r.sj.items():
        log(f"SpikingJelly rate {mode}: T={T_max} on {len(common)} images (multi-step, batch {opts.batch}) ...")
        with CpuWindow(f"accuracy SJ {mode}") as w:
            outs = sj_outputs(snn, im.normalized[common], T_max, opts.batch, multi_step=True)
        sj_cum[mode] = prefix_means(outs)
        add_rate("SpikingJelly", f"rate {mode}", sj_cum[mode], w.wall_seconds, {"window": w.as_dict()})
        log(f"  {w.wall_seconds:.0f} s; top-1 at T=8..256: " + ", ".join(
            f"{100 * top1(sj_cum[mode][T - 1], labels_c):.1f}" for T in T_GRID))

    # snnconvert rate coding: thresholds calibrated once, network built at T = 256
    log("snnconvert rate: activation percentiles on the calibration images ...")
    start = time.perf_counter()
    stats = activation_percentiles(q.float_model, r.inputs.calibration, RATE_PERCENTILES)
    extra["rate_calibration_seconds"] = time.perf_counter() - start
    thetas = {p: rate.thresholds_from(q.float_model, stats, rate.Config(T=T_max, percentile=p))
              for p in RATE_PERCENTILES}
    snnc_cum: dict[float, Tensor] = {}
    for p, theta in thetas.items():
        net = rate.build(q.float_model, theta, rate.Config(T=T_max, percentile=p))
        log(f"snnconvert rate p{p:g}: T={T_max} on {len(common)} images (batch {opts.batch}) ...")
        with CpuWindow(f"accuracy snnconvert rate p{p:g}") as w:
            outs = snnc_outputs(net, im.raw[common], opts.batch)
        snnc_cum[p] = prefix_means(outs)
        add_rate("snnconvert", f"rate p{p:g}", snnc_cum[p], w.wall_seconds, {"window": w.as_dict()})
        log(f"  {w.wall_seconds:.0f} s; top-1 at T=8..256: " + ", ".join(
            f"{100 * top1(snnc_cum[p][T - 1], labels_c):.1f}" for T in T_GRID))
    extra["causality"] = causality_checks(r, thetas, sj_cum, snnc_cum, opts, log)
    extra["paired"] = paired_counts(sj_cum, snnc_cum, labels_c)

    # SWS
    for ts in SWS_TS:
        log(f"snnconvert SWS Tc=8 Ts={ts}: convert + run on {len(im.raw)} images ...")
        start = time.perf_counter()
        auto = {"auto_limit": 100} if ts == "auto" and opts.quick else {}
        snn = snnconvert.to_snn(q, "sws", Tc=8, Ts=ts, **auto)
        convert_s = time.perf_counter() - start
        snn32 = in_dtype(snn, torch.float32)
        with CpuWindow(f"accuracy SWS Ts={ts}") as w:
            logits = run_batched(snn32, im.raw, 100)
        acc_c = top1(logits[common], labels_c)
        info = {"T_inf": snn.info["T_inf"], "Ts": snn.info["Ts"], "convert_seconds": convert_s,
                "window": w.as_dict(), "delta_all": 100 * (top1(logits, im.labels) - extra["float_top1_all"]),
                "agreement_with_float_all": float((logits.argmax(1) == r.float_logits.argmax(1)).double().mean())}
        rows.append(Row("snnconvert", "SWS Tc=8 (8-bit)", f"Ts={ts}", int(snn.info["latency"]), acc_c,
                        100 * (acc_c - float_c), top1(logits, im.labels), None, w.wall_seconds, len(im.raw), info))
        nets[(rows[-1].series, rows[-1].setting)] = snn32
        log(f"  T_inf {snn.info['T_inf']}, top-1 {100 * top1(logits, im.labels):.2f}% (all), "
            f"{100 * acc_c:.2f}% (common); {w.wall_seconds:.0f} s")

    # M-LIF (no fine-tuning)
    mlif = get_coding("mlif")
    for anchor, percentile in MLIF_SERIES:
        for T in MLIF_T:
            cfg = MLIFConfig(S=MLIF_S, T=T, anchor=anchor, percentile=percentile)
            snn = mlif.convert(r.inputs, cfg)
            with CpuWindow(f"accuracy M-LIF {anchor} T={T}") as w:
                logits = run_batched(snn, im.raw, 100)
            acc_c = top1(logits[common], labels_c)
            rows.append(Row("snnconvert", f"M-LIF S={MLIF_S} {anchor} p{percentile:g}", f"T={T}", T, acc_c,
                            100 * (acc_c - float_c), top1(logits, im.labels), None, w.wall_seconds, len(im.raw),
                            {"window": w.as_dict(),
                             "delta_all": 100 * (top1(logits, im.labels) - extra["float_top1_all"])}))
            nets[(rows[-1].series, rows[-1].setting)] = snn
            log(f"M-LIF S={MLIF_S} {anchor} p{percentile:g} T={T}: top-1 {100 * top1(logits, im.labels):.2f}% (all)")
    extra["thetas"] = {f"p{p:g}": {k: float(v.max()) for k, v in th.items()} for p, th in thetas.items()}
    extra["sj_thresholds"] = {mode: sj_thresholds(snn) for mode, snn in r.sj.items()}
    return rows, extra, nets


def sj_thresholds(snn: nn.Module) -> dict[str, float]:
    """The calibrated scale (threshold in real units) of every SpikingJelly IF layer."""
    from spikingjelly.activation_based.ann2snn.modules import VoltageScaler

    return {name.removesuffix(".scaler1"): float(m.scale) for name, m in snn.named_modules()
            if isinstance(m, VoltageScaler) and name.endswith("scaler1")}


def causality_checks(r: Resnet20, thetas: dict[float, dict[str, Tensor]], sj_cum: dict[str, Tensor],
                     snnc_cum: dict[float, Tensor], opts: Options, log: Log) -> dict[str, Any]:
    """Prefix of the T = 256 run vs a separate T' run on the first images of the common set."""
    k = min(16, len(r.images.common))
    pos = r.images.common[:k]
    out: dict[str, Any] = {"images": k}
    p = RATE_PERCENTILES[0]
    for T in (8, 32):
        net = (snnconvert.to_snn(r.q, "rate", T=T, percentile=p) if T == 8  # the public API, once
               else rate.build(r.q.float_model, thetas[p], rate.Config(T=T, percentile=p)))
        separate = run_batched(net, r.images.raw[pos], opts.batch)
        prefix = snnc_cum[p][T - 1, :k]
        out[f"snnconvert p{p:g} T={T}"] = {"max_abs_diff": float((separate - prefix).abs().max()),
                                           "argmax_agreement": float((separate.argmax(1) == prefix.argmax(1))
                                                                     .double().mean())}
        mode = SJ_MODES[-1]
        steps = sj_outputs(r.sj[mode], r.images.normalized[pos], T, opts.batch, multi_step=False)
        separate = steps.mean(0)
        prefix = sj_cum[mode][T - 1, :k]
        out[f"SpikingJelly {mode} T={T} (single-step run)"] = {
            "max_abs_diff": float((separate - prefix).abs().max()),
            "argmax_agreement": float((separate.argmax(1) == prefix.argmax(1)).double().mean())}
    log("  causality (prefix of the T=256 run vs a separate run): " + "; ".join(
        f"{k2}: max |diff| {v['max_abs_diff']:.1e}" for k2, v in out.items() if isinstance(v, dict)))
    return out


def paired_counts(sj_cum: dict[str, Tensor], snnc_cum: dict[float, Tensor], labels: Tensor) -> dict[str, Any]:
    """Per T: images only snnconvert's best rate setting gets right, and only SpikingJelly's best."""
    table = {}
    for T in T_GRID:
        sj_best = max(sj_cum, key=lambda m: top1(sj_cum[m][T - 1], labels))
        sn_best = max(snnc_cum, key=lambda p: top1(snnc_cum[p][T - 1], labels))
        a = sj_cum[sj_best][T - 1].argmax(1) == labels
        b = snnc_cum[sn_best][T - 1].argmax(1) == labels
        table[T] = {"sj_mode": sj_best, "snnc_percentile": sn_best, "only_snnconvert": int((b & ~a).sum()),
                    "only_spikingjelly": int((a & ~b).sum())}
    return table


# ---------------------------------------------------------------------------- timing


def timing_runs(r: Resnet20, rows: list[Row], nets: Nets, opts: Options, log: Log) -> dict[str, Any]:
    """Separate timed runs at every setting on the timing subset (batch --batch, best of --repeats)."""
    im, q = r.images, r.q
    raw, norm = im.raw[im.timing], im.normalized[im.timing]
    n_img = len(raw)
    B, reps = opts.batch, opts.repeats
    out: dict[str, Any] = {"images": n_img, "batch": B, "repeats": reps, "gate": quiet_gate(opts, log, "timing")}
    timer = Timer(opts, log)
    per_image: dict[tuple[str, str], float] = {}
    engine: dict[str, dict[int, float]] = {"snnconvert rate": {}, "SpikingJelly multi-step": {},
                                           "SpikingJelly single-step": {}}
    stats = activation_percentiles(q.float_model, r.inputs.calibration, RATE_PERCENTILES)
    with CpuWindow("timing ResNet-20") as window:
        # warm-up: both engines once at the smallest T
        for p in RATE_PERCENTILES[:1]:
            cfg = rate.Config(T=T_GRID[0], percentile=p)
            run_batched(rate.build(q.float_model, rate.thresholds_from(q.float_model, stats, cfg), cfg), raw, B)
        for snn in r.sj.values():
            sj_outputs(snn, norm, T_GRID[0], B)
        per_image[("float ANN", "")] = timer.seconds("float ANN", lambda: run_batched(r.loaded.module, norm, B)) / n_img
        for T in T_GRID:
            for p in RATE_PERCENTILES:
                cfg = rate.Config(T=T, percentile=p)
                net = rate.build(q.float_model, rate.thresholds_from(q.float_model, stats, cfg), cfg)
                s = timer.seconds(f"snnconvert rate p{p:g} T={T}", lambda net=net: run_batched(net, raw, B))
                per_image[(f"rate p{p:g}", f"T={T}")] = s / n_img
                if p == RATE_PERCENTILES[0]:
                    engine["snnconvert rate"][T] = s / (n_img * T)
            for mode, snn in r.sj.items():
                s = timer.seconds(f"SpikingJelly {mode} multi-step T={T}",
                                  lambda snn=snn, T=T: sj_outputs(snn, norm, T, B, multi_step=True))
                per_image[(f"rate {mode}", f"T={T}")] = s / n_img
                if mode == SJ_MODES[-1]:
                    engine["SpikingJelly multi-step"][T] = s / (n_img * T)
            log(f"  T={T}: s/image snnconvert rate {per_image[(f'rate p{RATE_PERCENTILES[0]:g}', f'T={T}')]:.3f}, "
                f"SpikingJelly multi-step {per_image[(f'rate {SJ_MODES[-1]}', f'T={T}')]:.3f}")
        cumulative = timer.many(f"SpikingJelly {SJ_MODES[-1]} single-step cumulative",
                                lambda: sj_single_step_cumulative(r.sj[SJ_MODES[-1]], norm, max(T_GRID), B, T_GRID))
        engine["SpikingJelly single-step"] = {T: cumulative[T] / (n_img * T) for T in T_GRID}
        log("  SpikingJelly single-step (cumulative within one T=256 run): " + ", ".join(
            f"T={T} {cumulative[T] / n_img:.3f} s/image" for T in T_GRID))
        for key, snn in nets.items():
            per_image[key] = timer.seconds(" ".join(key), lambda snn=snn: run_batched(snn, raw, B)) / n_img
    for row in rows:
        row.seconds_per_image = per_image.get((row.series, row.setting))
    out["window"] = window.as_dict()
    out["measurements"] = timer.records
    out["load"] = timer.summary()
    out["float_ann_seconds_per_image"] = per_image[("float ANN", "")]
    out["engine_seconds_per_image_step"] = {k: {str(T): v for T, v in d.items()} for k, d in engine.items()}
    log(f"  timing done: other processes used {window.external_cores} cores on average; {out['load']}")
    return out


# ---------------------------------------------------------------------------- ResNet-18


def resnet18_section(opts: Options, log: Log) -> dict[str, Any]:
    """Conversion coverage and per-image-step simulation cost on a random-weight torchvision ResNet-18."""
    log("ResNet-18 (torchvision, random weights, 10 classes, 64x64) ...")
    torch.manual_seed(0)
    loaded = load_model("resnet18", "random", num_classes=10, input_size=(64, 64))
    spec = loaded.input_spec
    raw, _labels, description = decode(TEST, "eval", spec, opts.r18_images, seed=0)
    calib_raw, _, _ = decode(TRAIN, "calib", spec, 64, seed=0)
    norm = normalize(raw, spec)
    sj_calib = [(normalize(calib_raw[i:i + 32], spec), None) for i in range(0, len(calib_raw), 32)]
    result: dict[str, Any] = {"images": len(raw), "data": description, "calibration_images": len(calib_raw)}
    row, q = quantize_coverage("resnet18", loaded, 64)
    coverage = [row]
    if q is not None:
        coverage.append(snnc_coverage("resnet18", "as ingested",
                                      lambda: snnconvert.to_snn(q, "sws", Tc=8, Ts=2).info["latency"], "sws"))
        result["snnconvert_prepared_vs_ingested"] = logits_diff(q.float_model, raw, loaded.module, norm)
    rewritten = rewrite_for_spikingjelly(loaded.module, norm[:2])
    result["rewrite_vs_ingested"] = logits_diff(rewritten, norm, loaded.module, norm)
    as_is = sj_convert(loaded.module, sj_calib, "max", name="resnet18", variant="as ingested")
    coverage.append(sj_row(as_is))
    conv = sj_convert(rewritten, sj_calib, "max", name="resnet18", variant="rewritten")
    coverage.append(sj_row(conv))
    log(f"  SpikingJelly as ingested: {'converts' if as_is.ok else 'fails: ' + str(as_is.error)}; "
        f"rewritten: {'converts' if conv.ok else 'fails: ' + str(conv.error)}")
    result["coverage"] = coverage
    if q is None or not (conv.ok or as_is.ok):
        return result
    sj_snn = conv.snn if conv.ok else as_is.snn
    stats = activation_percentiles(q.float_model, conversion_inputs(q, need_calibration=True).calibration,
                                   (RATE_PERCENTILES[0],))
    result["gate"] = quiet_gate(opts, log, "ResNet-18 timing")
    B = opts.r18_batch
    timer = Timer(opts, log)
    engine: dict[str, dict[str, float]] = {"snnconvert rate": {}, "SpikingJelly multi-step": {},
                                           "SpikingJelly single-step": {}}
    with CpuWindow("timing ResNet-18") as window:
        for T in opts.r18_T:
            cfg = rate.Config(T=T, percentile=RATE_PERCENTILES[0])
            net = rate.build(q.float_model, rate.thresholds_from(q.float_model, stats, cfg), cfg)
            run_batched(net, raw[:B], B)  # warm-up
            sj_outputs(sj_snn, norm[:B], T, B)
            steps = len(raw) * T
            engine["snnconvert rate"][str(T)] = timer.seconds(
                f"ResNet-18 snnconvert rate T={T}", lambda net=net: run_batched(net, raw, B)) / steps
            engine["SpikingJelly multi-step"][str(T)] = timer.seconds(
                f"ResNet-18 SpikingJelly multi-step T={T}",
                lambda T=T: sj_outputs(sj_snn, norm, T, B, multi_step=True)) / steps
            engine["SpikingJelly single-step"][str(T)] = timer.seconds(
                f"ResNet-18 SpikingJelly single-step T={T}",
                lambda T=T: sj_outputs(sj_snn, norm, T, B, multi_step=False)) / steps
            log(f"  T={T}: ms per image-step snnconvert {1e3 * engine['snnconvert rate'][str(T)]:.2f}, SJ multi-step "
                f"{1e3 * engine['SpikingJelly multi-step'][str(T)]:.2f}, SJ single-step "
                f"{1e3 * engine['SpikingJelly single-step'][str(T)]:.2f}")
    result["measurements"] = timer.records
    result["load"] = timer.summary()
    result["engine_seconds_per_image_step"] = engine
    result["batch"] = B
    result["window"] = window.as_dict()
    return result


# ---------------------------------------------------------------------------- engine table (--engine-table)


ENGINES = ("snnconvert rate (time chunks)", "snnconvert rate (all T folded)", "SpikingJelly multi-step",
           "SpikingJelly single-step")


def engine_model(model: str, opts: Options, log: Log) -> dict[str, Any]:
    """Per-image-step cost of rate coding on one model at every T of ``opts.engine_T`` (see --engine-table)."""
    if model == "resnet20":
        loaded = load_model("resnet20", str(CHECKPOINT))
        images, batch, calib_limit = opts.timing_images, opts.batch, opts.calib_limit
    else:
        torch.manual_seed(0)
        loaded = load_model("resnet18", "random", num_classes=10, input_size=(64, 64))
        images, batch, calib_limit = opts.r18_images, opts.r18_batch, min(opts.calib_limit, 256)
    spec = loaded.input_spec
    log(f"{model}: quantize (calibration {calib_limit} train-subset images), decode {images} test images ...")
    q = snnconvert.quantize(loaded, data=TRAIN, config=QuantizeConfig(bits=8, calib_limit=calib_limit), eval_limit=0)
    inputs = conversion_inputs(q, need_calibration=True)
    calib = calibration_batches(inputs)
    raw, labels, description = decode(TEST, "eval", spec, images, seed=0)
    norm = normalize(raw, spec)
    rewritten = rewrite_for_spikingjelly(loaded.module, norm[:2])
    mode = SJ_MODES[-1]
    conv = sj_convert(rewritten, [(normalize(x, spec), y) for x, y in calib], mode, name=model, variant="rewritten")
    if not conv.ok:
        raise SystemExit(f"SpikingJelly could not convert the rewritten {model}: {conv.error}")
    sj_snn = conv.snn
    p = RATE_PERCENTILES[0]
    stats = activation_percentiles(q.float_model, inputs.calibration, (p,))
    result: dict[str, Any] = {"images": len(raw), "batch": batch, "data": description, "percentile": p,
                              "spikingjelly_mode": mode, "calibration_images": sum(len(x) for x, _ in calib),
                              "gate": quiet_gate(opts, log, f"{model} timing")}
    timer = Timer(opts, log)
    engine: dict[str, dict[str, float]] = {name: {} for name in ENGINES}
    chunks: dict[str, Any] = {}
    checks: dict[str, Any] = {}
    measured: dict[tuple, int] = {}
    fewest_frames: dict[tuple, int] = {}
    with CpuWindow(f"engine {model}") as window:
        for k, T in enumerate(opts.engine_T):
            cfg = rate.Config(T=T, percentile=p)
            net = rate.build(q.float_model, rate.thresholds_from(q.float_model, stats, cfg), cfg)
            net.time_chunk_bytes = opts.chunk_bytes
            net.chunk_elements.update(measured)  # the largest activation, measured at the warm-up
            net.chunk_min_frames.update(fewest_frames)
            outs: dict[str, Tensor] = {}

            def snnc(chunk_bytes: int | None, key: str, net=net, outs=outs) -> None:
                net.time_chunk_bytes = chunk_bytes
                outs[key] = run_batched(net, raw, batch)

            if k == 0:  # warm-up: every engine once at the smallest T
                snnc(opts.chunk_bytes, "warm")
                measured.update(net.chunk_elements)
                fewest_frames.update(net.chunk_min_frames)
                snnc(0, "warm")
                sj_outputs(sj_snn, norm[:batch], T, batch, multi_step=True)
                sj_outputs(sj_snn, norm[:batch], T, batch, multi_step=False)
            steps = len(raw) * T
            engine[ENGINES[0]][str(T)] = timer.seconds(f"{model} snnconvert chunks T={T}",
                                                       lambda: snnc(opts.chunk_bytes, "chunks")) / steps
            engine[ENGINES[1]][str(T)] = timer.seconds(f"{model} snnconvert all-T T={T}",
                                                       lambda: snnc(0, "folded")) / steps
            engine[ENGINES[2]][str(T)] = timer.seconds(
                f"{model} SpikingJelly multi-step T={T}",
                lambda T=T: sj_outputs(sj_snn, norm, T, batch, multi_step=True)) / steps
            engine[ENGINES[3]][str(T)] = timer.seconds(
                f"{model} SpikingJelly single-step T={T}",
                lambda T=T: sj_outputs(sj_snn, norm, T, batch, multi_step=False)) / steps
            net.time_chunk_bytes = opts.chunk_bytes
            elements = next(iter(net.chunk_elements.values()), None)
            fewest = next(iter(net.chunk_min_frames.values()), 1)
            chunks[str(T)] = None if elements is None else steps_per_chunk(T, batch, elements, 4, opts.chunk_bytes,
                                                                            fewest)
            diff = (outs["chunks"] - outs["folded"]).abs().max()
            checks[str(T)] = {"max_abs_diff_chunks_vs_folded": float(diff),
                              "argmax_agreement": float((outs["chunks"].argmax(1) == outs["folded"].argmax(1))
                                                        .double().mean())}
            log(f"  T={T}: ms per image-step " + ", ".join(f"{name} {1e3 * engine[name][str(T)]:.3f}"
                                                           for name in ENGINES)
                + f"; {chunks[str(T)]} steps per chunk; chunks vs folded max |diff| {float(diff):.1e}")
    result.update(engine_seconds_per_image_step=engine, steps_per_chunk=chunks, chunk_bytes=opts.chunk_bytes,
                  largest_activation_elements=next(iter(net.chunk_elements.values()), None),
                  min_chunk_frames=next(iter(net.chunk_min_frames.values()), None),
                  chunks_vs_folded=checks, measurements=timer.records, load=timer.summary(),
                  window=window.as_dict())
    return result


def engine_markdown(results: dict[str, Any], opts: Options) -> str:
    m = results["machine"]
    lines = [
        "# Simulator cost per image-step, rate coding: snnconvert vs SpikingJelly "
        f"{results['spikingjelly']}", "",
        f"Command: `{results['command']}`  ",
        f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} with {m['torch_threads']} threads (both tools). "
        f"Load average at start {results['loadavg_start']}, at end {results['loadavg_end']}.  ",
        f"Each entry: wall time of a separate run at that T on the same images (batch fixed per model, best of "
        f"{opts.repeats}), divided by images x T; re-measured when other processes used more than "
        f"{opts.max_external_load} cores. snnconvert time chunks: {opts.chunk_bytes / 2**20:g} MiB of the largest "
        "folded activation per chunk; all-T folded: the same network with chunking off. SpikingJelly: rate-coding "
        f"recipe, mode {SJ_MODES[-1]}, multi-step and single-step mode.", "",
        "ms per image per time step:", "",
        "| model | T | snnconvert (chunks) | steps per chunk | snnconvert (all T folded) | SJ multi-step | "
        "SJ single-step | chunks / SJ multi | chunks / SJ single | max load (cores) |",
        "|---|---|---|---|---|---|---|---|---|---|"]
    worst = 0.0
    for model, r in results["models"].items():
        e = r["engine_seconds_per_image_step"]
        loads = {rec["label"]: rec["external_cores"] for rec in r["measurements"]}
        for T in e[ENGINES[0]]:
            a, f, b, c = (e[name][T] for name in ENGINES)
            worst = max(worst, a / b, a / c)
            load = max((v for k, v in loads.items() if k.endswith(f"T={T}") and v is not None), default=None)
            lines.append(f"| {model} ({r['images']} images, batch {r['batch']}) | {T} | {1e3 * a:.3f} | "
                         f"{r['steps_per_chunk'][T]} | {1e3 * f:.3f} | {1e3 * b:.3f} | {1e3 * c:.3f} | {a / b:.2f} | "
                         f"{a / c:.2f} | {_cores(load)} |")
    lines += ["", f"Worst ratio snnconvert (chunks) / SpikingJelly: {worst:.2f} "
              f"({'at most as costly at every T' if worst <= 1 else 'slower somewhere'}).", "",
              "Chunks vs all-T folded (same network, same images): " + "; ".join(
                  f"{model} T={T} max |diff| {c['max_abs_diff_chunks_vs_folded']:.1e}, argmax agreement "
                  f"{pct(c['argmax_agreement'])}" for model, r in results["models"].items()
                  for T, c in r["chunks_vs_folded"].items()) + "."]
    results["worst_ratio"] = worst
    return "\n".join(lines) + "\n"


def engine_table(opts: Options, results: dict[str, Any], log: Log) -> None:
    """--engine-table: the per-image-step table on ResNet-20 (and ResNet-18), written to
    bench/results/compare_spikingjelly_engine{,_quick}.{md,json}."""
    models = ["resnet20"] + (["resnet18"] if opts.resnet18 else [])
    results["models"] = {model: engine_model(model, opts, log) for model in models}
    results.update(loadavg_end=loadavg(), external_cores_end=external_load())
    text = engine_markdown(results, opts)
    results["seconds_total"] = time.perf_counter() - log.start
    name = f"{OUT_NAME}_engine{'_quick' if opts.quick else ''}"
    path = write_json(f"{name}.json", results)
    md = write_atomically(RESULTS / f"{name}.md", lambda handle: handle.write(text.encode()))
    print("\n" + text)
    print(f"wrote {md}, {path} in {results['seconds_total'] / 60:.1f} min")


# ---------------------------------------------------------------------------- summaries


def first_within(rows: list[Row], points: float) -> Row | None:
    ok = [r for r in rows if r.delta >= -points]
    return min(ok, key=lambda r: (r.latency, r.seconds_per_image or 0.0)) if ok else None


def series_of(rows: list[Row]) -> dict[str, list[Row]]:
    out: dict[str, list[Row]] = {}
    for r in rows:
        out.setdefault(f"{r.tool}: {r.series}", []).append(r)
    return out


def iso_accuracy(rows: list[Row], n: int) -> dict[str, Any]:
    """Per series: the first setting within ISO_POINTS of the float ANN, its latency and wall time."""
    table = {}
    for name, items in series_of(rows).items():
        hit = first_within(items, ISO_POINTS)
        table[name] = None if hit is None else {
            "setting": hit.setting, "latency": hit.latency, "top1": hit.top1, "delta": hit.delta,
            "seconds_per_image": hit.seconds_per_image,
            "seconds_for_n": None if hit.seconds_per_image is None else hit.seconds_per_image * n}

    def best(tool: str) -> tuple[str, dict[str, Any]] | None:
        hits = [(k, v) for k, v in table.items() if k.startswith(tool) and v and v["seconds_per_image"] is not None]
        return min(hits, key=lambda kv: kv[1]["seconds_per_image"]) if hits else None

    sj, sn = best("SpikingJelly"), best("snnconvert")
    ratio = None
    if sj and sn:
        ratio = sj[1]["seconds_per_image"] / sn[1]["seconds_per_image"]
    return {"points": ISO_POINTS, "n": n, "series": table, "fastest_spikingjelly": sj, "fastest_snnconvert": sn,
            "time_ratio_spikingjelly_over_snnconvert": ratio}


def goals(rows: list[Row], timing: dict[str, Any], r18: dict[str, Any] | None) -> dict[str, Any]:
    sj_rows = [r for r in rows if r.tool == "SpikingJelly"]
    sws_rows = [r for r in rows if r.series.startswith("SWS")]
    rate_rows = [r for r in rows if r.tool == "snnconvert" and r.series.startswith("rate")]
    # goal 1
    sws_hit = first_within(sws_rows, SWS_POINTS)
    sws_all_ok = sws_hit is not None and sws_hit.extra.get("delta_all", sws_hit.delta) >= -SWS_POINTS
    sj_hits = [h for h in (first_within(v, ISO_POINTS) for v in series_of(sj_rows).values()) if h]
    sj_T = min((h.latency for h in sj_hits), default=None)
    if sws_hit is None:
        g1 = {"met": False, "why": f"no SWS setting is within {SWS_POINTS} points of the float ANN"}
    else:
        bound = sj_T if sj_T is not None else max(T_GRID)
        ratio = bound / sws_hit.latency
        met = ratio >= 5 and sws_all_ok
        why = (f"SWS {sws_hit.setting} reaches {sws_hit.delta:+.2f} points (common images; "
               f"{sws_hit.extra.get('delta_all', float('nan')):+.2f} on all) at T_inf = {sws_hit.latency}; "
               + (f"SpikingJelly's best mode first gets within {ISO_POINTS} point at T = {sj_T}"
                  if sj_T is not None else f"SpikingJelly does not get within {ISO_POINTS} point within "
                                           f"{max(T_GRID)} steps (so the true ratio is larger)")
               + f": {'>' if sj_T is None else ''}{ratio:.1f}x fewer steps (need >= 5x)")
        g1 = {"met": met, "why": why, "sws_latency": sws_hit.latency, "sws_setting": sws_hit.setting,
              "spikingjelly_latency": sj_T, "step_ratio": ratio}
    # goal 2: best snnconvert rate percentile vs best SpikingJelly mode at every T
    per_T = {}
    for T in T_GRID:
        sj_best = max((r for r in sj_rows if r.latency == T), key=lambda r: r.top1)
        sn_best = max((r for r in rate_rows if r.latency == T), key=lambda r: r.top1)
        per_T[str(T)] = {"snnconvert": sn_best.series, "snnconvert_top1": sn_best.top1,
                         "spikingjelly": sj_best.series, "spikingjelly_top1": sj_best.top1,
                         "difference_points": 100 * (sn_best.top1 - sj_best.top1)}
    behind = {T: v for T, v in per_T.items() if v["difference_points"] < 0}
    g2 = {"met": not behind, "per_T": per_T,
          "why": "at least as accurate at every T" if not behind else
          "behind at T = " + ", ".join(f"{T} ({v['difference_points']:+.2f} points)" for T, v in behind.items())}
    same_pct = {}
    for T in T_GRID:
        ours = next(r for r in rate_rows if r.latency == T and r.series == "rate p99.9")
        theirs = next(r for r in sj_rows if r.latency == T and r.series == "rate 99.9%")
        same_pct[str(T)] = 100 * (ours.top1 - theirs.top1)
    g2["same_percentile_99.9_difference_points"] = same_pct
    # goal 3
    eng = timing["engine_seconds_per_image_step"]
    ratios = {}
    for T in T_GRID:
        ours = eng["snnconvert rate"][str(T)]
        ratios[str(T)] = {"vs_multi_step": ours / eng["SpikingJelly multi-step"][str(T)],
                          "vs_single_step": ours / eng["SpikingJelly single-step"][str(T)]}
    r18_ratios = {}
    if r18 and "engine_seconds_per_image_step" in r18:
        e = r18["engine_seconds_per_image_step"]
        for T in e["snnconvert rate"]:
            r18_ratios[T] = {"vs_multi_step": e["snnconvert rate"][T] / e["SpikingJelly multi-step"][T],
                             "vs_single_step": e["snnconvert rate"][T] / e["SpikingJelly single-step"][T]}
    worst = max(x for d in (*ratios.values(), *r18_ratios.values()) for x in d.values())
    slower = [f"ResNet-20 T={T}" for T, v in ratios.items() if max(v.values()) > 1] + \
             [f"ResNet-18 T={T}" for T, v in r18_ratios.items() if max(v.values()) > 1]
    why = (f"snnconvert is at most as costly per image-step at every measured T (worst ratio {worst:.2f})"
           if worst <= 1.0 else f"snnconvert is slower at {', '.join(slower)} (worst {worst:.2f}x)")
    g3 = {"met": worst <= 1.0, "resnet20_ratio_snnconvert_over_spikingjelly": ratios,
          "resnet18_ratio_snnconvert_over_spikingjelly": r18_ratios, "worst_ratio": worst, "why": why}
    return {"sws_within_0.5_at_fifth_of_sj_steps": g1, "rate_at_least_as_accurate_at_every_T": g2,
            "rate_per_image_step_cost_le_spikingjelly": g3}


# ---------------------------------------------------------------------------- output


def _cores(x: float | None) -> str:
    return "?" if x is None else f"{x:.2f}"


def pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def fmt_s(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def markdown(results: dict[str, Any], rows: list[Row], opts: Options) -> str:
    acc = results["accuracy"]
    tm = results["timing"]
    n, n_rate = opts.n, opts.n_rate
    lines = [
        "# snnconvert vs SpikingJelly 2.0.0 ann2snn: ResNet-20 / CIFAR-10",
        "",
        f"Command: `{results['command']}`  ",
        f"Machine: {results['machine']['cpu']}, {results['machine']['cores']} cores, torch "
        f"{results['machine']['torch']} with {results['machine']['torch_threads']} threads (both tools), "
        f"spikingjelly {results['spikingjelly']}.  ",
        f"Load average at start {results['loadavg_start']}, at end {results['loadavg_end']}. Timing: each "
        f"measurement is redone when other processes used more than {opts.max_external_load} cores during it; "
        f"over the {tm['load']['measurements']} kept ResNet-20 measurements other processes used at most "
        f"{_cores(tm['load']['max_external_cores'])} cores (mean {_cores(tm['load']['mean_external_cores'])}; "
        f"{tm['load']['remeasured']} re-measured, {tm['load']['over_threshold']} kept above the limit).  ",
        f"Images: {results['images']['description']}; float ANN top-1 {pct(acc['float_top1_all'])} on all {n}, "
        f"{pct(acc['float_top1_common'])} on the {n_rate}-image stratified subset every row is scored on "
        "(\"common\"). Deltas are points vs the float ANN on the same images.",
        "",
        "## Accuracy vs latency",
        "",
        "Rate-coded rows (both tools) come from one T = 256 run per tool/mode on the common images "
        "(the output after T steps of that run equals a T-step run; checked below). "
        f"`s/image` is the wall time of a separate run at that setting on {tm['images']} timing images "
        f"(batch {tm['batch']}, best of {tm['repeats']}, same threads); `time for n={n}` = s/image x {n}. "
        "SpikingJelly runs in multi-step mode (its faster mode here; single-step below).",
        "",
        f"| tool | coding | setting | latency (steps) | top-1 (common {n_rate}) | delta vs float | "
        f"top-1 (all {n}) | s/image | time for n={n} (s) |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| float ANN | - | - | - | {pct(acc['float_top1_common'])} | 0.00 | {pct(acc['float_top1_all'])} | "
        f"{fmt_s(tm['float_ann_seconds_per_image'], 4)} | {fmt_s(tm['float_ann_seconds_per_image'] * n, 1)} |",
    ]
    for r in rows:
        total = None if r.seconds_per_image is None else r.seconds_per_image * n
        lines.append(f"| {r.tool} | {r.series} | {r.setting} | {r.latency} | {pct(r.top1)} | {r.delta:+.2f} | "
                     f"{pct(r.top1_all)} | {fmt_s(r.seconds_per_image)} | {fmt_s(total, 1)} |")
    iso = results["iso_accuracy"]
    lines += ["", f"## Speed at iso-accuracy (first setting within {ISO_POINTS:g} point of the float ANN)", "",
              f"| series | setting | latency | delta | s/image | time for n={n} (s) |", "|---|---|---|---|---|---|"]
    for name, hit in iso["series"].items():
        if hit is None:
            lines.append(f"| {name} | not reached within {max(T_GRID)} steps | - | - | - | - |")
        else:
            lines.append(f"| {name} | {hit['setting']} | {hit['latency']} | {hit['delta']:+.2f} | "
                         f"{fmt_s(hit['seconds_per_image'])} | {fmt_s(hit['seconds_for_n'], 1)} |")
    if iso["time_ratio_spikingjelly_over_snnconvert"] is not None:
        lines.append("")
        lines.append(f"Fastest to within {ISO_POINTS:g} point: SpikingJelly `{iso['fastest_spikingjelly'][0]}` vs "
                     f"snnconvert `{iso['fastest_snnconvert'][0]}`: SpikingJelly needs "
                     f"{iso['time_ratio_spikingjelly_over_snnconvert']:.1f}x the wall time.")
    elif iso["fastest_snnconvert"] is not None:
        lines.append("")
        lines.append(f"SpikingJelly does not get within {ISO_POINTS:g} point within {max(T_GRID)} steps in either "
                     f"mode; snnconvert's fastest: `{iso['fastest_snnconvert'][0]}`.")
    eng = tm["engine_seconds_per_image_step"]
    lines += ["", "## Simulator cost per image-step (rate coding in both tools, same images, batch, threads)", "",
              "ms per image per time step; SpikingJelly single-step = cumulative time within one T = 256 run.", "",
              "| model | T | snnconvert | SpikingJelly multi-step | SpikingJelly single-step | "
              "snnconvert / SJ multi | snnconvert / SJ single |", "|---|---|---|---|---|---|---|"]

    def eng_rows(model: str, e: dict[str, dict[str, float]]) -> None:
        for T in e["snnconvert rate"]:
            a, b, c = (e[k][str(T)] for k in ("snnconvert rate", "SpikingJelly multi-step",
                                              "SpikingJelly single-step"))
            lines.append(f"| {model} | {T} | {1e3 * a:.2f} | {1e3 * b:.2f} | {1e3 * c:.2f} | {a / b:.2f} | "
                         f"{a / c:.2f} |")

    eng_rows(f"ResNet-20 ({tm['images']} images, batch {tm['batch']})", eng)
    r18 = results.get("resnet18")
    if r18 and "engine_seconds_per_image_step" in r18:
        eng_rows(f"ResNet-18 64x64 ({r18['images']} images, batch {r18['batch']})",
                 r18["engine_seconds_per_image_step"])
    lines += ["", "## Conversion coverage", "", "| tool | model | variant | mode | converts | seconds | error |",
              "|---|---|---|---|---|---|---|"]
    for c in results["coverage"]:
        err = (c["error"] or "").replace("|", "\\|")
        lines.append(f"| {c['tool']} | {c['model']} | {c['variant']} | {c['mode']} | {'yes' if c['ok'] else 'no'} | "
                     f"{c['seconds']:.1f} | {err} |")
    ch = results["checks"]
    lines += ["", "Equivalence of what the tools see (float logits, same images):", ""]
    for name, d in [("ResNet-20 rewrite for SpikingJelly vs ingested model", ch["rewrite_vs_ingested"]),
                    ("ResNet-20 snnconvert prepared graph (raw pixels) vs ingested model (normalized)",
                     ch["snnconvert_prepared_vs_ingested"])] + (
            [("ResNet-18 rewrite vs ingested", r18["rewrite_vs_ingested"])] if r18 else []) + (
            [("ResNet-18 snnconvert prepared vs ingested", r18["snnconvert_prepared_vs_ingested"])]
            if r18 and "snnconvert_prepared_vs_ingested" in r18 else []):
        lines.append(f"- {name}: max |diff| {d['max_abs_diff']:.2e}, argmax agreement {pct(d['argmax_agreement'])} "
                     f"({d['images']} images)")
    lines += ["", "Causality (prefix of the T = 256 run vs a separate T-step run, "
              f"{acc['causality']['images']} images):", ""]
    for name, d in acc["causality"].items():
        if isinstance(d, dict):
            lines.append(f"- {name}: max |diff| {d['max_abs_diff']:.2e}, argmax agreement {pct(d['argmax_agreement'])}")
    sws = [r for r in rows if r.series.startswith("SWS")]
    lines += ["", "## Notes", "",
              f"- snnconvert rate thresholds: one activation-percentile pass over the calibration images "
              f"({acc['rate_calibration_seconds']:.1f} s), then one network per T (`rate.build`).",
              "- SWS conversion seconds: " + ", ".join(f"{r.setting} {r.extra['convert_seconds']:.1f}" for r in sws)
              + " (Ts=auto includes its silent-period search on calibration images).",
              f"- Rate-coded accuracy runs (T = 256, {n_rate} images, batch {opts.batch}): " + ", ".join(
                  f"{r.tool} {r.series} {r.run_seconds:.0f} s" for r in rows
                  if r.series.startswith("rate") and r.setting == f"T={max(T_GRID)}") + "."]
    lines += ["", "## Goals", ""]
    for name, g in results["goals"].items():
        lines.append(f"- **{name}**: {'met' if g['met'] else 'NOT met'}: {g['why']}")
    return "\n".join(lines) + "\n"


def plot(rows: list[Row], float_common: float, path: Path, n_rate: int) -> Path:
    series: dict[str, list[tuple[float, float, str]]] = {}
    for name, items in series_of(rows).items():
        label = name.replace("snnconvert: ", "snnconvert ").replace("SpikingJelly: ", "SpikingJelly ")
        series[label] = [(r.latency, r.top1, r.setting if r.series.startswith("SWS") else "") for r in items]
    return accuracy_latency_plot(series, {"float ANN": float_common}, path, log_x=True,
                                 title=f"ResNet-20 / CIFAR-10 ({n_rate} test images): snnconvert vs SpikingJelly")


def spikingjelly_version() -> str:
    from importlib.metadata import version

    return version("spikingjelly")


def main(argv: list[str] | None = None) -> None:
    opts = parse_args(argv)
    require_shared_data()
    try:
        import spikingjelly.activation_based.ann2snn  # noqa: F401
    except ImportError:
        sys.exit("spikingjelly is not installed: pip install -e '.[bench]' (or make bench-peers)")
    torch.set_num_threads(opts.threads)
    torch.manual_seed(0)
    log = Log()
    results: dict[str, Any] = {
        "command": " ".join(["python", "bench/compare_spikingjelly.py", *(sys.argv[1:] if argv is None else argv)]),
        "machine": machine(), "spikingjelly": spikingjelly_version(), "options": asdict(opts),
        "loadavg_start": loadavg(), "external_cores_start": external_load(),
    }
    log(f"machine {results['machine']}; load average {results['loadavg_start']}, other processes "
        f"{results['external_cores_start']} cores")
    if opts.engine_table:
        engine_table(opts, results, log)
        return
    r = prepare_resnet20(opts, log)
    results["images"] = {"n": opts.n, "n_rate": opts.n_rate, "description": r.images.description,
                         "timing_images": len(r.images.timing)}
    rows, acc, nets = accuracy_runs(r, opts, log)
    timing = timing_runs(r, rows, nets, opts, log)
    r18 = resnet18_section(opts, log) if opts.resnet18 else None
    results["coverage"] = [{k: v for k, v in c.items() if k != "result"} for c in r.coverage + (
        r18["coverage"] if r18 else [])]
    if r18:
        r18.pop("coverage")
    results.update(checks=r.checks, accuracy=acc, timing=timing, resnet18=r18, rows=[asdict(x) for x in rows],
                   iso_accuracy=iso_accuracy(rows, opts.n), goals=goals(rows, timing, r18),
                   loadavg_end=loadavg(), external_cores_end=external_load())
    results["seconds_total"] = time.perf_counter() - log.start
    path = write_json(f"{OUT_NAME}.json", results)
    text = markdown(results, rows, opts)
    md = RESULTS / f"{OUT_NAME}.md"
    md.write_text(text)
    png = plot(rows, acc["float_top1_common"], RESULTS / f"{OUT_NAME}.png", opts.n_rate)
    print("\n" + text)
    print(f"wrote {md}, {path}, {png} in {results['seconds_total'] / 60:.1f} min")


if __name__ == "__main__":
    start_process()
    main()
