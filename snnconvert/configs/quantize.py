"""``QuantizeConfig``: how to quantize (torch-free: ``quantize``'s flags are generated from it)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from snnconvert.errors import ConfigError
from snnconvert.manifest_check import CLIP_METHODS
from snnconvert.options import option


@dataclass
class QuantizeConfig:
    """How to quantize: bit widths, calibration and optional quantization-aware training."""

    VERSION: ClassVar[int] = 2
    RENAMED: ClassVar[dict[int, dict[str, str]]] = {1: {"method": "clip_method"}}  # v1 -> v2

    bits: int = option(8, help="Activation bits (8, 6, 4, ...).")
    weight_bits: int | None = option(None, help="Weight bits (none: --bits).")
    clip_method: str = option("percentile", aliases=("--method",),
                              help="Clip range of the activation quantizers: max, percentile or mse (--method: the "
                                   "older name of this flag).")
    percentile: float = option(99.99, help="Percentile for --clip-method percentile.")
    per_channel: bool = option(False, help="Per-channel activation ranges.")
    calib_limit: int | None = option(1024, help="Calibration images (stratified sample; none: all).")
    qat_epochs: int = option(0, help="Quantization-aware fine-tuning epochs.")
    qat_batches_per_epoch: int | None = option(None, flag="--qat-batches",
                                               help="Batches per QAT epoch (none: a full pass over the training "
                                                    "split).")
    qat_lr: float = option(1e-4, help="QAT learning rate (SGD).")
    qat_momentum: float = option(0.9, help="QAT SGD momentum.")
    batch_size: int = option(64, help="Calibration and QAT batch size.")
    seed: int = option(0, help="Seed of the calibration sample and QAT.")
    device: str = option("auto", help="Calibration and QAT device: auto (CUDA when available), cpu, cuda or cuda:N.")

    def validate(self) -> None:
        """One-line :class:`SnnConvertError` naming the option (as its flag) on the first bad value:
        integers in range, finite numbers, seeds in [0, 2^64), a percentile in [50, 100] (below the
        median a clip range cuts most of every layer's activations: never a calibration)."""
        from snnconvert.manifest_check import MAX_BATCH, MAX_COUNT, MAX_EPOCHS, MAX_SEED, MIN_PERCENTILE

        def integer(name: str, low: int, high: int, hint: str = "") -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ConfigError(self, name, value, f"use an integer {low}..{high}{hint}")

        def number(name: str, ok: Callable[[float], bool], expected: str) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or not ok(value):
                raise ConfigError(self, name, value, f"give {expected}")

        integer("bits", 2, 16, " (typically 8, 6 or 4)")
        if self.weight_bits is not None:
            integer("weight_bits", 2, 16)
        if self.clip_method not in CLIP_METHODS:
            raise ConfigError(self, "clip_method", self.clip_method, "use "
                                  f"{', '.join(CLIP_METHODS)}")
        number("percentile", lambda v: MIN_PERCENTILE <= v <= 100,
               f"a percentile in [{MIN_PERCENTILE:g}, 100] (99.99 clips the top 0.01 % of activations)")
        if not isinstance(self.per_channel, bool):
            raise ConfigError(self, "per_channel", self.per_channel, "give true or false")
        integer("qat_epochs", 0, MAX_EPOCHS)
        if self.calib_limit is not None:
            integer("calib_limit", 1, MAX_COUNT)
        if self.qat_batches_per_epoch is not None:
            integer("qat_batches_per_epoch", 1, MAX_COUNT)
        number("qat_lr", lambda v: v > 0, "a positive finite learning rate")
        number("qat_momentum", lambda v: 0 <= v < 1, "a momentum in [0, 1)")
        integer("batch_size", 1, MAX_BATCH)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < MAX_SEED:
            raise ConfigError(self, "seed", self.seed, "give an integer in [0, 2^64)")
        if not isinstance(self.device, str):
            raise ConfigError(self, "device", self.device, "give auto, cpu, cuda or "
                                  "cuda:N")
        from snnconvert.device import resolve_device  # (torch: only when a run checks its config)

        resolve_device(self.device)

    @property
    def w_bits(self) -> int:
        return self.weight_bits or self.bits
