"""``evaluate --sweep KEY=V1,V2,...``: re-convert and evaluate every setting of a coding's options."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import Tensor

from snnconvert.codings import get_coding, parse_option
from snnconvert.configs.evaluate import EvaluateConfig
from snnconvert.core import QuantizedModel, conversion_inputs
from snnconvert.device import resolve_device
from snnconvert.distributed import DistContext
from snnconvert.errors import SnnConvertError
from snnconvert.evaluate.report import SweepRow
from snnconvert.evaluate.run import (
    _agreement,
    _combine_ranks,
    _run_snn,
    _topk,
    in_dtype,
    ops_report,
    overall_spike_rate,
    simulation_batch,
    snn_dtype,
)
from snnconvert.simulate.network import SpikingNetwork
from snnconvert.stages import convert_with


def sweep_grid(coding_name: str, sweep: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of the swept values (text read by each option's type)."""
    coding = get_coding(coding_name)
    for key in sweep:
        if key not in coding.sweep_keys:
            raise SnnConvertError(
                f"--sweep {key}: coding {coding_name} sweeps only {', '.join(coding.sweep_keys) or 'nothing'}"
            )
    grid: list[dict[str, Any]] = [{}]
    for key, values in sweep.items():
        parsed = [parse_option(coding, key, v) if isinstance(v, str) else v for v in values]
        grid = [{**g, key: v} for g in grid for v in parsed]
    return grid


def run_sweep(quantized: QuantizedModel, snn: SpikingNetwork, images: Tensor, labels: Tensor,
              quant_logits: Tensor, float_logits: Tensor, config: EvaluateConfig,
              show_progress: bool, activation_elements: int, *, ctx: DistContext | None = None,
              device: torch.device | None = None) -> list[SweepRow]:
    """Re-convert with each swept setting (through the pipeline's one conversion path) and
    evaluate on the same, already decoded images, reusing the quantized ANN's logits. Several
    keys form a grid; the calibration data is loaded once when any setting needs it."""
    coding = get_coding(snn.coding)
    base = coding.config(**snn.info.get("config", {}))
    grid = sweep_grid(snn.coding, config.sweep)
    configs = [dataclasses.replace(base, **setting) for setting in grid]
    for cfg in configs:
        cfg.validate()
    inputs = conversion_inputs(quantized, need_calibration=any(coding.needs_calibration(c) for c in configs),
                               show_progress=show_progress)
    rows = []
    ctx = ctx or DistContext()
    device = device if device is not None else resolve_device(config.device)
    mine = images[list(ctx.shard(len(images)))] if ctx.enabled else images
    for setting, cfg in zip(grid, configs, strict=True):
        variant = convert_with(inputs, coding.name, cfg)
        variant = in_dtype(variant, snn_dtype(variant, config), device)
        cap, _ = simulation_batch(quantized, variant, config, device, show_progress=show_progress)
        logits, seconds, loads = _run_snn(variant, mine, config, show_progress, activation_elements,
                                          label=", ".join(f"{k}={v}" for k, v in setting.items()), device=device,
                                          max_batch=cap)
        logits, loads = _combine_ranks(ctx, variant, logits, loads, len(images), device)
        ops = ops_report(variant, loads, config.e_mac_pj, config.e_ac_pj)
        figures = coding.metrics(variant) if coding.metrics is not None else {}
        rows.append(SweepRow(setting, _topk(logits, labels, 1), _agreement(logits, quant_logits),
                             _agreement(logits, float_logits), int(variant.info.get("latency", 0)),
                             overall_spike_rate(variant), ops.opf, ops.delta, seconds,
                             {k: v for k, v in figures.items() if not isinstance(v, (list, dict))}))
    return rows
