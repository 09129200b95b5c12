"""The multibit coding's options (torch-free: the CLI checks them before torch loads)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from snnconvert.errors import SnnConvertError
from snnconvert.options import CODING_OPTIONS, DTYPE_NAMES, CodingOptions, option


def _int_or_list(value: Any, flag: str, low: int, high: int) -> int | list[int]:
    """An int or a non-empty list of ints in [low, high]; ``"2,4,4"`` / ``"[2, 4]"`` are lists."""
    if isinstance(value, str):
        parts = [p.strip() for p in value.strip().strip("[]").split(",") if p.strip()]
        try:
            value = [int(p) for p in parts]
        except ValueError:
            raise SnnConvertError(f"{flag} {value!r} is not possible: give an integer or a list N,N,...") \
                from None
        value = value[0] if len(value) == 1 else value
    values = value if isinstance(value, list) else [value]
    ok = bool(values) and all(type(v) is int and low <= v <= high for v in values)
    if not ok:
        raise SnnConvertError(
            f"{flag} {value!r} is not possible: give integers in {low}..{high} (one, or one per layer)")
    return value


FLOAT_BITS = 16  # bits counted per float weight, bias and analog value (paper 002 counts 16-bit floats)


@dataclass
class MultiBitConfig:
    """Options of the multi-bit coding (see the module docstring).

    ``T`` and ``bits_spike`` are one value for all neuron layers or a list with one per neuron
    layer in graph order, the input encoder first (names in ``neuron_layers`` after conversion).
    ``thresholds``: auto | percentile | quantized; ``weights``: auto | quantized | float;
    ``squeeze``: changes | always; ``dtype``: float32 | float64 simulation.
    """

    T: int | list[int] | str = option(2, help="Time steps: one for all layers or a list N,N,... (encoder first).")
    bits_spike: int | list[int] | str = option(4, help="Spike bits B_s: one for all layers or a per-layer list.")
    percentile: float = option(99.99, help="Activation percentile for thresholds=percentile.")
    thresholds: str = option("auto", help="Threshold source: auto, percentile or quantized (the ANN's scales).")
    weights: str = option("auto", help="Synapse weights: auto, quantized or float.")
    per_channel: bool = option(False, help="Per-channel thresholds.")
    tau: float = option(1.0, help="Membrane time constant tau >= 1 (1: no leak).")
    encode_input: bool = option(True, help="Multi-bit input neurons turn the image into spikes.")
    signed_first: bool = option(False, help="Signed input neurons on the centred image (eq 16).")
    squeeze: str = option("changes", help="Temporal squeeze (eq 13): where T changes, or always.")
    dtype: str = option("float32", help="Simulation precision: float32 or float64.")
    float_bits: int = option(FLOAT_BITS, help="Bits counted per float weight, bias and analog input in the bit "
                                              "budget, S-ACE and model size (paper 002 counts 16).")

    def validate(self) -> None:
        self.steps()
        self.spike_bits()
        if not _is_number(self.percentile) or not 0 < self.percentile <= 100:
            raise SnnConvertError(
                f"--percentile {self.percentile!r} is not possible: give a number in (0, 100]")
        for name, choices in (("thresholds", ("auto", "percentile", "quantized")),
                              ("weights", ("auto", "quantized", "float")),
                              ("squeeze", ("changes", "always")), ("dtype", tuple(DTYPE_NAMES))):
            if getattr(self, name) not in choices:
                raise SnnConvertError(
                    f"{name} {getattr(self, name)!r} is not possible: choose {', '.join(choices)}")
        if not _is_number(self.tau) or not self.tau >= 1:
            raise SnnConvertError(
                f"tau {self.tau!r} is not possible: the time constant must be >= 1 (1: no leak)")
        for name in ("per_channel", "encode_input", "signed_first"):
            if not isinstance(getattr(self, name), bool):
                raise SnnConvertError(f"{name} {getattr(self, name)!r} is not possible: give true or false")
        if not (type(self.float_bits) is int and 1 <= self.float_bits <= 64):
            raise SnnConvertError(f"float_bits {self.float_bits!r} is not possible: give an integer in 1..64")
        if self.signed_first and not self.encode_input:
            raise SnnConvertError(
                "signed_first needs encode_input (the signed neuron is the input layer, eq 16)")

    def steps(self) -> int | list[int]:
        return _int_or_list(self.T, "--T", 1, 4096)

    def spike_bits(self) -> int | list[int]:
        return _int_or_list(self.bits_spike, "--bits-spike", 1, 16)


Config = MultiBitConfig


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


OPTIONS = CODING_OPTIONS.register("multibit", CodingOptions(
    name="multibit",
    summary="multi-bit spiking neurons (integer spikes, adaptive bit allocation paper)",
    config=MultiBitConfig,
    parsers={},
))
