"""The SWS coding's options (torch-free: the CLI checks them before torch loads)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from snnconvert.errors import ConfigError, SnnConvertError
from snnconvert.limits import MAX_RANGE_BITS, check_time_steps
from snnconvert.options import CODING_OPTIONS, CodingOptions, opt, option


@dataclass
class SWSConfig:
    """Options of the SWS coding. ``Ts`` is one silent period for all TSA layers, a list with
    one per neuron layer (graph order, as listed in ``snn.info["neuron_layers"]``), or
    ``"auto"``."""

    Tc: int | None = option(None, help="Coding steps: the digits of every activation. Default: the fewest "
                                       "that hold the n-bit range, n for beta 2, ceil(n log 2 / log 3) for beta 3.")
    Ts: int | list[int] | str = option(
        2, help="Silent period: N for every TSA layer, a per-layer list N,N,... or auto (searched on "
                "calibration data).")
    beta: float = option(2.0, help="Amplification factor of the stepwise weights (beta > 1; 3: balanced-ternary "
                                   "digits, 8 bits in 6 steps).")
    auto_agreement: float = option(0.995, help="--Ts auto: agreement with the quantized ANN to keep.")
    auto_limit: int = option(2000, help="--Ts auto: calibration images it evaluates on (a seeded stratified "
                                        "sample of the quantize step's calibration pool).")
    auto_seed: int = option(0, help="--Ts auto: seed of that sample.")
    auto_holdout: float = option(0.2, help="--Ts auto: share of those images kept out of the search, on which the "
                                           "chosen setting's agreement is then measured (an estimate for unseen "
                                           "images, printed beside the search's own).")
    auto_rounds: int = option(2, help="--Ts auto: how many times it may search again with half the disagreements "
                                      "allowed when the chosen setting misses the target on the held-out images.")
    auto_max: int | None = option(None, help="--Ts auto: largest silent period it considers (default Tc).")
    auto_budget_s: float | None = option(None, help="--Ts auto: seconds for the per-layer search after the "
                                                    "uniform one (none: until no single layer can drop a step); "
                                                    "it keeps the last setting that met the target.")
    residual_tolerance: float | None = option(
        None, help="With an integer or list --Ts: give each TSA layer extra silent steps (up to --auto-max) until "
                   "at most this share of its neurons round differently from exact on --auto-limit calibration "
                   "images (0: none of them). Off by default.")
    lowered_threshold: bool = option(True, help="TSA threshold theta beta^Ts / 2 (the paper, section 3.2); "
                                                "false: theta beta^Ts, the not-lowered ablation of its fig 5b "
                                                "(no longer exact).")

    def validate(self) -> None:
        if self.Tc is not None and (isinstance(self.Tc, bool) or not isinstance(self.Tc, int)):
            raise ConfigError(self, "Tc", self.Tc, "give an integer number of steps")
        if self.Tc is not None and self.Tc < 1:
            raise ConfigError(self, "Tc", self.Tc, "the coding needs at least 1 step")
        if not (isinstance(self.beta, (int, float)) and not isinstance(self.beta, bool) and math.isfinite(self.beta)):
            raise ConfigError(self, "beta", self.beta, "give a finite number > 1")
        if self.beta <= 1:
            raise ConfigError(self, "beta", self.beta, "the amplification must be > 1")
        if isinstance(self.Ts, str) and self.Ts != "auto":
            raise ConfigError(self, "Ts", self.Ts, "give an integer, a list or 'auto'")
        values = [self.Ts] if isinstance(self.Ts, int) else self.Ts if isinstance(self.Ts, list) else []
        if any(not isinstance(v, int) or v < 0 for v in values):
            raise ConfigError(self, "Ts", self.Ts, "silent periods are integers >= 0")
        if self.residual_tolerance is not None and not (
                isinstance(self.residual_tolerance, (int, float)) and 0 <= self.residual_tolerance <= 1):
            raise ConfigError(self, "residual_tolerance", self.residual_tolerance, "give a "
                                  "share in [0, 1]")
        if self.residual_tolerance is not None and self.Ts == "auto":
            raise ConfigError(self, "residual_tolerance", self.residual_tolerance,
                              f"it raises a given {opt(SWSConfig, 'Ts')}; with Ts auto leave it out")
        if not isinstance(self.lowered_threshold, bool):
            raise ConfigError(self, "lowered_threshold", self.lowered_threshold, "give true or false")
        if not self.lowered_threshold and (self.Ts == "auto" or self.residual_tolerance is not None):
            raise ConfigError(self, "lowered_threshold", self.lowered_threshold,
                              f"the not-lowered threshold is an ablation that is never exact; give "
                              f"{opt(SWSConfig, 'Ts')} as numbers, without {opt(SWSConfig, 'residual_tolerance')}")
        if not 0 < self.auto_agreement <= 1:
            raise ConfigError(self, "auto_agreement", self.auto_agreement, "the agreement target must be in (0, 1]")
        if not (isinstance(self.auto_holdout, (int, float)) and not isinstance(self.auto_holdout, bool)
                and 0 <= self.auto_holdout <= 0.5):
            raise ConfigError(self, "auto_holdout", self.auto_holdout, "give a share in [0, 0.5]")
        if isinstance(self.auto_rounds, bool) or not isinstance(self.auto_rounds, int) or self.auto_rounds < 0:
            raise ConfigError(self, "auto_rounds", self.auto_rounds, "give a number of rounds >= 0")
        if isinstance(self.auto_limit, bool) or not isinstance(self.auto_limit, int) or self.auto_limit < 1:
            raise ConfigError(self, "auto_limit", self.auto_limit, "give a number of images >= 1")
        if self.auto_budget_s is not None and not (isinstance(self.auto_budget_s, (int, float))
                                                   and math.isfinite(self.auto_budget_s) and self.auto_budget_s > 0):
            raise ConfigError(self, "auto_budget_s", self.auto_budget_s, "give seconds > 0")
        self._check_range(values)

    def _check_range(self, silent: list[int]) -> None:
        """Tc and Ts bounded: beta^(Tc + Ts) must stay within float range (limits.MAX_RANGE_BITS bits)."""
        if self.Tc is not None:
            check_time_steps(self.Tc, self, "Tc")
        for value in silent:
            check_time_steps(value, self, "Ts", minimum=0)
        if self.auto_max is not None:
            check_time_steps(self.auto_max, self, "auto_max", minimum=0)
        steps = (self.Tc or 0) + max(silent, default=0)
        if steps * math.log2(self.beta) > MAX_RANGE_BITS:
            raise SnnConvertError(f"{opt(SWSConfig, 'Tc')} {self.Tc} with {opt(SWSConfig, 'Ts')} "
                                  f"{max(silent, default=0)} and {opt(SWSConfig, 'beta')} {self.beta:g} "
                                  f"spans beta^{steps}, more than 2^{MAX_RANGE_BITS}: floating point cannot "
                                  "simulate it; use fewer steps")

    def codable_max(self, Tc: int | None = None) -> float:
        """Largest value Tc digits in {-1, 0, 1} with weights beta^(Tc-k) reach: (beta^Tc - 1) / (beta - 1)."""
        steps = self.Tc if Tc is None else Tc
        if steps is None:
            raise SnnConvertError(f"Tc is not resolved yet: convert with a quantized model (or give "
                                  f"{opt(SWSConfig, 'Tc')})")
        return sum(self.beta ** (steps - k) for k in range(1, steps + 1))

    def resolved(self, quantized: Any) -> SWSConfig:
        """This config with ``Tc`` set for the quantized fx graph ``quantized``: as given, or the
        fewest steps whose codable range holds every quantizer's 0..qmax (n bits: n steps for
        beta 2, ceil(n log 2 / log 3) for beta 3)."""
        if self.Tc is not None:
            return self
        from snnconvert.quantize.modules import ActQuant  # (torch: only when a graph is there)

        qmax = max((m.qmax for m in quantized.modules() if isinstance(m, ActQuant)), default=255)
        steps = 1
        while self.codable_max(steps) < qmax:
            steps += 1
        return dataclasses.replace(self, Tc=steps)


def parse_ts(text: str) -> int | list[int] | str:
    """``--Ts`` text: ``auto``, an integer, or a comma list with one per neuron layer."""
    if text.strip() == "auto":
        return "auto"
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise ConfigError(SWSConfig, "Ts", text, "give an integer, a comma list or 'auto'") from None
    return values[0] if len(values) == 1 else values


OPTIONS = CODING_OPTIONS.register("sws", CodingOptions(
    name="sws",
    summary="stepwise weighted spikes with TSA neurons (exact from a quantized ANN)",
    config=SWSConfig,
    parsers={"Ts": parse_ts},
))
