"""``EvaluateConfig``: what ``evaluate`` measures and how (torch-free: its flags are generated from it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from snnconvert.configs.nir import NirInputOptions
from snnconvert.errors import ConfigError, SnnConvertError
from snnconvert.limits import shorten
from snnconvert.options import DTYPE_NAMES, option
from snnconvert.reports.names import REPORTS


def parse_reports(text: str) -> tuple[str, ...]:
    """``--report`` text: a comma list of report names, or ``all``."""
    reports = tuple(r.strip() for r in text.split(",") if r.strip())
    if not reports:
        raise SnnConvertError(f"--report {shorten(text, 60)!r} names no report; give all or a comma list of "
                              f"{', '.join(REPORTS)}")
    return reports


@dataclass
class EvaluateConfig(NirInputOptions):
    """Options of :func:`snnconvert.evaluate.evaluate`."""

    data: str | None = option(None, help="Evaluation data (none: the held-out part of the calibration data).")
    limit: int | None = option(None, help="Evaluate on a stratified sample of N images (none: all).")
    seed: int = option(0, help="Seed of the stratified sample.")
    batch_size: int = option(100, help="Images per batch.")
    reports: tuple[str, ...] = option(("all",), flag="--report", parse=parse_reports,
                                      help=f"Comma list of {', '.join(REPORTS)}, a coding's own report (e.g. "
                                           "residual for sws; see `snnconvert codings`), an analysis, or all.")
    dtype: str = option("float32", help="Precision of the ANN runs and of the SNN unless its coding keeps its own "
                                        "(SWS: exact, float64 membranes with exact spike sums): float32 or float64.")
    snn_dtype: str = option("auto", help="Precision of the SNN: auto (its coding's own, else --dtype), float32 or "
                                         "float64. SWS in float32 runs about 1.6x faster and is not exact (its sums "
                                         "and membranes round).")
    e_mac_pj: float = option(4.6, flag="--e-mac", help="Energy per MAC in pJ.")
    e_ac_pj: float = option(0.9, flag="--e-ac", help="Energy per accumulate in pJ.")
    sweep: dict[str, list[Any]] = option(default_factory=dict, cli=False,  # the command line: --sweep KEY=V1,V2
                                         help="Settings to re-convert and evaluate: option -> values.")
    device: str = option("auto", help="auto (CUDA when available), cpu, cuda or cuda:N; results are the same.")
    allow_class_mismatch: bool = option(False, help="Score data whose class folders differ from the model's "
                                                    "classes (with a note; otherwise an error).")

    def validate(self) -> None:
        from snnconvert.device import resolve_device  # (torch: a run checks its config)
        from snnconvert.manifest_check import check_options
        from snnconvert.reports.analyses import report_names

        names = report_names()
        unknown = [r for r in self.reports if r not in names and r != "all"]
        if unknown:
            raise SnnConvertError(f"unknown report(s) {', '.join(unknown)}: choose from {', '.join(names)}, all")
        if self.dtype not in DTYPE_NAMES:
            raise ConfigError(self, "dtype", self.dtype, "use float32 or float64")
        if self.snn_dtype != "auto" and self.snn_dtype not in DTYPE_NAMES:
            raise ConfigError(self, "snn_dtype", self.snn_dtype, "use auto, float32 or float64")
        check_options(self, {"limit": "count", "batch_size": "batch", "seed": "seed", "e_mac_pj": "energy",
                             "e_ac_pj": "energy"})
        if not isinstance(self.allow_class_mismatch, bool):
            raise ConfigError(self, "allow_class_mismatch", self.allow_class_mismatch, ""
                                  "give true or false")
        self.check_nir_options()
        resolve_device(self.device)

    def wants(self, name: str) -> bool:
        """Whether report ``name`` was asked for (``all`` asks for every one)."""
        return "all" in self.reports or name in self.reports
