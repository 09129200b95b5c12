"""The mlif coding's options (torch-free: the CLI checks them before torch loads)."""

from __future__ import annotations

from dataclasses import dataclass

from snnconvert.errors import ConfigError
from snnconvert.limits import check_time_steps
from snnconvert.options import CODING_OPTIONS, CalibrationOptions, CodingOptions, option

MAX_LANES = 16
ANCHORS = ("lowest", "highest")


@dataclass
class MLIFConfig(CalibrationOptions):
    """Options of the M-LIF coding: ``S`` lanes per neuron, ``T`` time steps, ``leak`` (beta of
    eq 6) and the activation ``percentile`` that sets each layer's threshold."""

    S: int = option(3, help="Spike lanes per neuron (binary-weighted levels 1, 2, ..., 2^(S-1)).")
    T: int = option(1, help="Time steps.")
    leak: float = option(1.0, help="Membrane leak beta of eq 6 in [0, 1] (1: integrate-and-fire).")
    percentile: float = option(90.0, help="Activation percentile that sets each layer's threshold.")
    anchor: str = option("lowest", help="lowest: the percentile is theta (paper); highest: it is 2^(S-1) theta.")

    def validate(self) -> None:
        def number(value: object) -> bool:
            return isinstance(value, (int, float)) and not isinstance(value, bool)

        if not (isinstance(self.S, int) and number(self.S) and 1 <= self.S <= MAX_LANES):
            raise ConfigError(self, "S", self.S, f"give an integer 1..{MAX_LANES} lanes")
        if not (isinstance(self.T, int) and number(self.T) and self.T >= 1):
            raise ConfigError(self, "T", self.T, "give an integer >= 1 time steps")
        check_time_steps(self.T, self, "T")
        if not (number(self.leak) and 0.0 <= self.leak <= 1.0):
            raise ConfigError(self, "leak", self.leak, "the leak beta must be in [0, 1]")
        if not (number(self.percentile) and 0.0 < self.percentile <= 100.0):
            raise ConfigError(self, "percentile", self.percentile, "give a value in (0, 100]")
        if self.anchor not in ANCHORS:
            raise ConfigError(self, "anchor", self.anchor, f"choose {' or '.join(ANCHORS)}")
        self.check_calibration()


OPTIONS = CODING_OPTIONS.register("mlif", CodingOptions(
    name="mlif",
    summary="one-hot multi-level LIF neurons (S binary-weighted lanes)",
    config=MLIFConfig,
    parsers={},
))
