"""The multibit coding's options (torch-free: the CLI checks them before torch loads)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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


def _int_or_list(value: Any, owner: object, field: str, low: int, high: int) -> int | list[int]:
    """An int or a non-empty list of ints in [low, high]; ``"2,4,4"`` / ``"[2, 4]"`` are lists."""
    if isinstance(value, str):
        parts = [p.strip() for p in value.strip().strip("[]").split(",") if p.strip()]
        try:
            value = [int(p) for p in parts]
        except ValueError:
            raise ConfigError(owner, field, value, "give an integer or a list N,N,...") from None
        value = value[0] if len(value) == 1 else value
    values = value if isinstance(value, list) else [value]
    ok = bool(values) and all(type(v) is int and low <= v <= high for v in values)
    if not ok:
        raise ConfigError(owner, field, value, f"give integers in {low}..{high} (one, or one per layer)")
    return value


FLOAT_BITS = 16  # bits counted per float weight, bias and analog value (paper 002 counts 16-bit floats)


@dataclass
class MultiBitConfig(CalibrationOptions):
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
            raise ConfigError(self, "percentile", self.percentile, "give a number in (0, 100]")
        for name, choices in (("thresholds", ("auto", "percentile", "quantized")),
                              ("weights", ("auto", "quantized", "float")),
                              ("squeeze", ("changes", "always")), ("dtype", tuple(DTYPE_NAMES))):
            if getattr(self, name) not in choices:
                raise ConfigError(self, name, getattr(self, name), f"choose {', '.join(choices)}")
        if not _is_number(self.tau) or not self.tau >= 1:
            raise ConfigError(self, "tau", self.tau, "the time constant must be >= 1 (1: no leak)")
        for name in ("per_channel", "encode_input", "signed_first"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(self, name, getattr(self, name), "give true or false")
        if not (type(self.float_bits) is int and 1 <= self.float_bits <= 64):
            raise ConfigError(self, "float_bits", self.float_bits, "give an integer in 1..64")
        self.check_calibration()
        if self.signed_first and not self.encode_input:
            raise SnnConvertError(
                "signed_first needs encode_input (the signed neuron is the input layer, eq 16)")

    def steps(self) -> int | list[int]:
        return _int_or_list(self.T, self, "T", 1, 4096)

    def spike_bits(self) -> int | list[int]:
        return _int_or_list(self.bits_spike, self, "bits_spike", 1, 16)


Config = MultiBitConfig


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


OPTIONS = CODING_OPTIONS.register("multibit", CodingOptions(
    name="multibit",
    summary="multi-bit spiking neurons (integer spikes, adaptive bit allocation paper)",
    config=MultiBitConfig,
    parsers={},
))


RENEWAL_MODES = ("none", "activations", "weights", "both")


def parse_bits(text: str, owner: object, field: str) -> tuple[float, float, float]:
    """``"W/S/T"`` as three positive numbers (else a ``ConfigError`` for ``owner.field``)."""
    parts = str(text).replace(",", "/").split("/")
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 3 or not all(v >= 1 for v in values):
        raise ConfigError(owner, field, text, "give W/S/T widths >= 1, e.g. 2/2/1")
    return values  # type: ignore[return-value]


@dataclass
class AdaptiveBitsConfig:
    """Options of adaptive bit allocation (paper 002; defaults from A.5.1)."""

    target_bits: str = option("2/2/1", help="Target average widths W/S/T of eq 22.", flag="--target-bits")
    init_bits: str = option("4/4/2", help="Initial widths W/S/T (A.5.1: 4/4/2).")
    bounds: str = option("6/6/3", help="Upper bounds B_w,bound / B_s,bound / T_bound (A.5.1: 6/6/3).")
    lambda_w: float = option(4e-2, help="lambda_1 of eq 22 (weight widths).")
    lambda_t: float = option(4e-2, help="lambda_2 of eq 22 (time steps).")
    lambda_s: float = option(1e-2, help="lambda_3 of eq 22 (spike widths).")
    learn_bits: bool = option(True, help="Learn the widths (false: uniform quantization at init_bits).")
    bits_optimizer: str = option("sgd", help="How the widths B^_w, B^_s, T^ and the step sizes (thresholds "
                                            "V_th^1, weight steps S_q) train: sgd (A.5.1: the gradient scale "
                                            "and eq 22's layer-size weighting act), or adam (with the weights; "
                                            "its per-parameter normalization removes both, and widths then "
                                            "reach their targets in a few steps).")
    bits_lr: float = option(0.1, help="Fixed lr of the widths and step sizes (A.5.1: 0.1 with sgd; the "
                                      "earlier adam default was 0.01).")
    bits_momentum: float = option(0.9, help="SGD momentum of the widths and step sizes (its velocity restarts "
                                            "at 0 when a run resumes).")
    target_ramp_steps: int = option(0, help="0: eq 22 pulls toward target_bits from the first step (the "
                                            "paper); N: the targets move linearly from init_bits to "
                                            "target_bits over the first N optimizer steps.")
    renewal: str = option("activations", help="Step-size renewal: none, activations, weights or both.")
    grid_iterations: int = option(100, help="K of Algorithm 2.")
    grid_power: float = option(2.0, help="pow of Algorithm 2.")
    rounding: str = option("round", help="Spike rounding: round (eq 15) or floor (eqs 3-5, table 4 baseline).")
    tau: float | None = option(None, help="Membrane time constant (None keeps the converted one; table 4: 2).")
    quantize_weights: bool = option(True, help="Quantize the synapse weights with learnable widths.")

    def validate(self) -> None:
        self.targets()
        self.inits()
        bounds = self.bound_values()
        for name, value in (("lambda_w", self.lambda_w), ("lambda_t", self.lambda_t), ("lambda_s", self.lambda_s)):
            if not (isinstance(value, (int, float)) and value >= 0):
                raise ConfigError(self, name, value, "give a number >= 0")
        if not (isinstance(self.bits_lr, (int, float)) and self.bits_lr > 0):
            raise ConfigError(self, "bits_lr", self.bits_lr, "give an lr > 0")
        if self.bits_optimizer not in BITS_OPTIMIZERS:
            raise ConfigError(self, "bits_optimizer", self.bits_optimizer, f"choose {' or '.join(BITS_OPTIMIZERS)}")
        if not (isinstance(self.bits_momentum, (int, float)) and 0.0 <= self.bits_momentum < 1.0):
            raise ConfigError(self, "bits_momentum", self.bits_momentum, "give a momentum in [0, 1)")
        if not (isinstance(self.target_ramp_steps, int) and self.target_ramp_steps >= 0):
            raise ConfigError(self, "target_ramp_steps", self.target_ramp_steps, "give a step count >= 0")
        if self.renewal not in RENEWAL_MODES:
            raise ConfigError(self, "renewal", self.renewal, f"choose {', '.join(RENEWAL_MODES)}")
        if self.rounding not in ROUNDINGS:
            raise ConfigError(self, "rounding", self.rounding, "choose round or floor")
        if not (isinstance(self.grid_iterations, int) and self.grid_iterations >= 1):
            raise ConfigError(self, "grid_iterations", self.grid_iterations, "give an integer >= 1")
        if self.tau is not None and not (isinstance(self.tau, (int, float)) and self.tau >= 1):
            raise ConfigError(self, "tau", self.tau, "give a number >= 1")
        for name, value, bound in zip(("W", "S", "T"), self.inits(), bounds, strict=True):
            if value > bound:
                raise ConfigError(self, "init_bits", self.init_bits, f"{name} = {value:g} exceeds its bound {bound}")

    def targets(self) -> tuple[float, float, float]:
        return parse_bits(self.target_bits, self, "target_bits")

    def targets_at(self, step: int) -> tuple[float, float, float]:
        """Eq 22's targets at optimizer step ``step`` (``target_ramp_steps``: a linear ramp from
        ``init_bits``; 0: the targets themselves)."""
        final = self.targets()
        if not self.target_ramp_steps:
            return final
        share = min(1.0, max(0, step) / self.target_ramp_steps)
        return tuple(a + share * (b - a) for a, b in zip(self.inits(), final, strict=True))  # type: ignore[return-value]

    def inits(self) -> tuple[float, float, float]:
        return parse_bits(self.init_bits, self, "init_bits")

    def bound_values(self) -> tuple[int, int, int]:
        values = parse_bits(self.bounds, self, "bounds")
        if not all(float(v).is_integer() for v in values):
            raise ConfigError(self, "bounds", self.bounds, "give integers W/S/T")
        return tuple(int(v) for v in values)  # type: ignore[return-value]


ROUNDINGS = ("round", "floor")
BITS_OPTIMIZERS = ("sgd", "adam")


ADAPTIVE_BITS = TRAINING_OPTIONS.register("adaptive_bits", MethodOptions(
    name="adaptive_bits",
    summary="learnable per-layer weight / spike widths and T with step-size renewal (paper 002)",
    config=AdaptiveBitsConfig,
))
