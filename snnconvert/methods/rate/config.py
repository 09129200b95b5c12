"""The rate coding's options (torch-free: the CLI checks them before torch loads)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from snnconvert.errors import ConfigError
from snnconvert.limits import check_time_steps
from snnconvert.options import CODING_OPTIONS, DTYPE_NAMES, CalibrationOptions, CodingOptions, option


@dataclass
class RateConfig(CalibrationOptions):
    """Options of the rate coding.

    ``percentile``: ``"max"`` (100th) or a number in (0, 100], e.g. 99.9 or 99.99;
    ``per_channel``: one threshold per channel instead of per layer; ``half_init``: start every
    membrane at theta/2; ``reset``: ``subtract`` (soft reset, the paper's) or ``zero`` (hard
    reset: the IF neuron of NIR and of the tools that read it); ``dtype``: simulation precision
    (float32 suffices for rate coding).
    """

    T: int = option(64, help="Time steps.")
    percentile: float | str = option(99.99, help="Activation percentile that sets each threshold, or max.")
    per_channel: bool = option(False, help="One threshold per channel instead of per layer.")
    half_init: bool = option(True, help="Start every membrane at theta/2 (round to nearest instead of down).")
    reset: str = option("subtract", help="Reset after a spike: subtract (soft, keeps the charge above threshold) "
                                         "or zero (hard; what NIR's IF and norse/SpikingJelly simulate).")
    dtype: str = option("float32", help="Simulation precision: float32 or float64.")

    def validate(self) -> None:
        if isinstance(self.T, bool) or not isinstance(self.T, int) or self.T < 1:
            raise ConfigError(self, "T", self.T, "rate coding needs an integer T >= 1")
        check_time_steps(self.T, self, "T")
        self.percentile_value()
        if not isinstance(self.per_channel, bool):
            raise ConfigError(self, "per_channel", self.per_channel, "give true or false")
        if not isinstance(self.half_init, bool):
            raise ConfigError(self, "half_init", self.half_init, "give true or false")
        if self.reset not in RESETS:
            raise ConfigError(self, "reset", self.reset, f"choose {' or '.join(RESETS)}")
        if self.dtype not in DTYPE_NAMES:
            raise ConfigError(self, "dtype", self.dtype, "choose float32 or float64")
        self.check_calibration()

    def percentile_value(self) -> float:
        """The percentile as a number (``"max"`` -> 100.0); raises on anything else."""
        p = self.percentile
        if isinstance(p, str):
            if p.strip().lower() == "max":
                return 100.0
            try:
                p = float(p)
            except ValueError:
                p = math.nan
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 < p <= 100:
            raise ConfigError(self, "percentile", self.percentile, "give 'max' or a number in (0, 100]")
        return float(p)


OPTIONS = CODING_OPTIONS.register("rate", CodingOptions(
    name="rate",
    summary="classic rate coding with integrate-and-fire neurons (baseline)",
    config=RateConfig,
    parsers={},
))


RESETS = ("subtract", "zero")
"""Reset modes of an IF neuron: by subtraction of the threshold (soft) or to 0 (hard)."""

LEAK_ORDERS = ("mlif", "dtss")
"""Leak/reset orders of :func:`if_dynamics_autograd`: the M-LIF paper's (reset not leaked, fire
at ``>=``) and the DTSS paper's eqs 1-2 (reset, then leak; fire at ``>``)."""
