"""The spquant coding's options (torch-free: the CLI checks them before torch loads)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from snnconvert.errors import ConfigError, SnnConvertError
from snnconvert.options import (
    CODING_OPTIONS,
    DTYPE_NAMES,
    TRAINING_OPTIONS,
    CalibrationOptions,
    CodingOptions,
    MethodOptions,
    option,
)

PRECISIONS = ("none", "ternary", "binary")
"""Membrane precisions besides ``"<k>bit"`` (k = 2..16)."""


GATE_RULES = ("eq23", "keep-skip")
"""Channel gate rules: the paper's softmax over channels, or our per-channel keep/skip softmax."""

SPATIAL_SCORING = ("step", "first")
"""When eqs 21-22 score positions: at every step (the paper's Imp_t), or once on the first step."""


def membrane_range(precision: str) -> tuple[int, int] | None:
    """Integer levels ``(lo, hi)`` of a membrane precision; None for ``"none"`` (full precision)."""
    p = str(precision).strip().lower()
    if p == "none":
        return None
    if p == "ternary":
        return (-1, 1)
    if p == "binary":
        return (0, 1)
    if p.endswith("bit") and p[:-3].isdigit() and 2 <= int(p[:-3]) <= 16:
        k = int(p[:-3])
        return (-(2 ** (k - 1)), 2 ** (k - 1) - 1)
    raise SnnConvertError(f"membrane precision {precision!r} is not possible: choose none, ternary, binary or "
                          "<k>bit with k in 2..16 (e.g. 4bit)")


POT_BITS = (2, 4, 8)


E_ADD_PJ = 0.16
E_MUL_PJ = 0.34
"""Add / multiply energies (pJ) of eq 31. Section 5.6 adopts "7nm energy for add and multiplication
from Table 2 of BitNet" without printing the numbers or the precision row. BitNet's 7 nm rows are
INT8 0.007 / 0.07, FP16 0.16 / 0.34, FP32 0.38 / 1.31 pJ (add / mul). The paper's table 10 fixes the
row: E_add / E_mul = (e_add / e_mul) (1 + T (1 - S_p) / k^2) does not depend on the network's
channels or S_c; for ResNet-19 / CIFAR-10 (T = 4, S_p = 0.35, k = 3: factor 1.29) its 0.58 / 1.04 uJ
give e_add / e_mul = 0.43, near FP16's 0.47 (INT8: 0.10, FP32: 0.29), and 1.04 uJ / 0.34 pJ = 3.1 M
multiplies is 24 % of ResNet-19's dense sum of C W H k^2 (13.1 M), in line with its 5.1x FLOPs cut
(INT8 would need 14.9 M, more than dense). So the defaults are BitNet's 7 nm FP16 energies."""


@dataclass
class SpQuantConfig(CalibrationOptions):
    """Options of the SpQuant-SNN coding (defaults: the paper's CIFAR SpQuant-SNN setting)."""

    T: int = option(2, help="Time steps (the paper's CIFAR-10 setting: 2).")
    percentile: float = option(99.7, help="Activation percentile that sets each layer's threshold (converted "
                                     "T=2 ResNet-20 with rounding, 100 test images: 90 -> 10 %, 99 -> 24 %, 99.7 "
                                     "-> 32 %, 99.9 -> 23 %; float ANN 83 %).")
    tau: float = option(0.5, help="Membrane time constant tau of eqs 1 and 10.")
    rounding: bool = option(True, help="T=2 only: feed each neuron a y + b (neurons.spquant.rounding_map) so the "
                                       "converted layer rounds instead of floors (plain conversion: ResNet-20 at "
                                       "chance); fine-tuning starts from there. False: the paper's neuron as is.")
    reset: str = option("hard", help="hard (eq 1: the membrane is zeroed after a spike) or soft (subtract).")
    precision: str = option("ternary", help="Membrane precision: none (32-bit), ternary, binary or <k>bit.")
    smoothness: float = option(4.0, help="Smoothness T of the stacked gradient surrogate Q* (eq 11).")
    weight_bits: int | None = option(4, help="Power-of-two weight bits: 2, 4, 8 or none (float weights).")
    spatial: float = option(0.35, help="Share of positions pruned per layer by membrane importance (eqs 21-22).")
    spatial_scoring: str = option("step", help="When eqs 21-22 score the positions: step (Imp_t at every step, "
                                               "the paper; the conv computes every position) or first (once, on "
                                               "the first step, so the conv skips the pruned positions later; "
                                               "ours, the earlier default).")
    gate: bool = option(True, help="Channel masking from the membrane prior (eq 23).")
    gate_threshold: float = option(0.47, help="Threshold of the channel mask (eq 23): with gate_rule eq23 in units "
                                              "of the uniform share 1/C (keep U_sf >= 0.47 / C), with keep-skip "
                                              "the keep probability.")
    gate_rule: str = option("eq23", help="eq23: softmax over the channels, U_cm = [U_sf >= theta] (the paper); "
                                         "keep-skip: a keep/skip softmax per channel, open at the start (ours, "
                                         "the earlier default).")
    clip: float | None = option(None, help="Negative clipping bound c of the membrane (section 4.1), or none.")
    e_add_pj: float = option(E_ADD_PJ, help="Energy of one add (pJ) in eq 31: BitNet table 2 at 7 nm, FP16 0.16 "
                                            "(reproduces the paper's table 10); INT8 0.007, FP32 0.38.")
    e_mul_pj: float = option(E_MUL_PJ, help="Energy of one multiply (pJ) in eq 31: BitNet table 2 at 7 nm, FP16 "
                                            "0.34 (reproduces the paper's table 10); INT8 0.07, FP32 1.31.")
    dtype: str = option("float32", help="Simulation precision: float32 or float64.")

    def validate(self) -> None:
        def number(v: object) -> bool:
            return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

        if not (isinstance(self.T, int) and not isinstance(self.T, bool) and self.T >= 1):
            raise ConfigError(self, "T", self.T, "give an integer >= 1")
        if not (number(self.percentile) and 0 < self.percentile <= 100):
            raise ConfigError(self, "percentile", self.percentile, "give a value in (0, 100]")
        if not (number(self.tau) and 0 < self.tau <= 1):
            raise ConfigError(self, "tau", self.tau, "give a value in (0, 1]")
        if self.reset not in ("hard", "soft"):
            raise ConfigError(self, "reset", self.reset, "choose hard or soft")
        membrane_range(self.precision)
        if not (number(self.smoothness) and self.smoothness > 0):
            raise ConfigError(self, "smoothness", self.smoothness, "give a positive number")
        if self.weight_bits is not None and self.weight_bits not in POT_BITS:
            raise ConfigError(self, "weight_bits", self.weight_bits, "choose 2, 4, 8 or none")
        if not (number(self.spatial) and 0 <= self.spatial < 1):
            raise ConfigError(self, "spatial", self.spatial, "give a share in [0, 1)")
        if not isinstance(self.rounding, bool):
            raise ConfigError(self, "rounding", self.rounding, "give true or false")
        if not isinstance(self.gate, bool):
            raise ConfigError(self, "gate", self.gate, "give true or false")
        if not (number(self.gate_threshold) and 0 < self.gate_threshold < 1):
            raise ConfigError(self, "gate_threshold", self.gate_threshold, "give a value in (0, 1)")
        if self.spatial_scoring not in SPATIAL_SCORING:
            raise ConfigError(self, "spatial_scoring", self.spatial_scoring, f"choose {' or '.join(SPATIAL_SCORING)}")
        if self.gate_rule not in GATE_RULES:
            raise ConfigError(self, "gate_rule", self.gate_rule, f"choose {' or '.join(GATE_RULES)}")
        if self.clip is not None and not (number(self.clip) and self.clip < 0):
            raise ConfigError(self, "clip", self.clip, "give a negative bound or none")
        for name in ("e_add_pj", "e_mul_pj"):
            if not (number(getattr(self, name)) and getattr(self, name) >= 0):
                raise SnnConvertError(f"--{name.replace('_', '-')} is not possible: give an energy >= 0 (pJ)")
        if self.dtype not in DTYPE_NAMES:
            raise ConfigError(self, "dtype", self.dtype, "choose float32 or float64")
        self.check_calibration()


def _parse_bits(text: str) -> int | None:
    t = text.strip().lower()
    if t in ("none", "null", "float", "32"):
        return None
    try:
        return int(t)
    except ValueError:
        raise ConfigError(SpQuantConfig, "weight_bits", text, "choose 2, 4, 8 or none") from None


OPTIONS = CODING_OPTIONS.register("spquant", CodingOptions(
    name="spquant",
    summary="SpQuant-SNN: LIF with ternary integer membrane, power-of-two weights, membrane-aware pruning",
    config=SpQuantConfig,
    parsers={"weight_bits": _parse_bits},
))


@dataclass
class SpQuantMethodConfig:
    """Options of the ``spquant`` training method."""

    learn_threshold: bool = option(True, help="Learnable layer thresholds with the separate gradient path.")
    weight_bits: int | None = option(None, help="Switch synapses to 2/4/8-bit PoT weights before training.")
    channel_sparsity: float = option(0.8, help="Target share of masked channels of the gated layers.")
    mask_weight: float = option(0.0, help="Weight of the channel-sparsity loss toward channel_sparsity (0: none, "
                                          "the paper, whose gates learn from the task loss alone; ours, the "
                                          "earlier default 1, drove the gates to 88 % masked and the network to "
                                          "chance in the ResNet-20 bench).")
    gate_lr: float = option(1e-2, help="Learning rate of the channel gates.")
    scale_lr: float = option(1e-3, help="Learning rate of the PoT log2 scales.")

    def validate(self) -> None:
        if self.weight_bits is not None and self.weight_bits not in POT_BITS:
            raise SnnConvertError(f"spquant weight_bits {self.weight_bits!r} is not possible: choose 2, 4, 8 or none")
        if not (0 <= self.channel_sparsity < 1):
            raise SnnConvertError(f"spquant channel_sparsity {self.channel_sparsity!r} is not possible: give [0, 1)")
        for name in ("mask_weight", "gate_lr", "scale_lr"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise SnnConvertError(f"spquant {name} {value!r} is not possible: give a number >= 0")


TRAINING = TRAINING_OPTIONS.register("spquant", MethodOptions(
    name="spquant",
    summary="SpQuant-SNN training: SGP thresholds, PoT weights with learnable scale, channel-mask sparsity",
    config=SpQuantMethodConfig,
))
