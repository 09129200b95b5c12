"""The coding table: every conversion method snnconvert offers, registered in one place."""

from __future__ import annotations

from snnconvert.codings import mlif, multibit, rate, sws
from snnconvert.codings.base import Coding, ConversionInputs
from snnconvert.errors import SnnConvertError

CODINGS: dict[str, Coding] = {
    "sws": Coding(
        name="sws",
        summary="stepwise weighted spikes with TSA neurons (exact from a quantized ANN)",
        config=sws.SWSConfig,
        convert=sws.convert,
        needs_quantized=True,
        needs_calibration=False,
        state_ops=sws.amplification_ops,
        sweep_keys=("Ts", "Tc", "beta"),
    ),
    "mlif": Coding(
        name="mlif",
        summary="one-hot multi-level LIF neurons (S binary-weighted lanes)",
        config=mlif.MLIFConfig,
        convert=mlif.convert,
        needs_quantized=False,
        needs_calibration=True,
        state_ops=mlif.membrane_updates,
        sweep_keys=("T", "S"),
        metrics=mlif.lane_metrics,
    ),
    "multibit": Coding(
        name="multibit",
        summary="multi-bit spiking neurons (integer spikes, adaptive bit allocation paper)",
        config=multibit.MultiBitConfig,
        convert=multibit.convert,
        needs_quantized=False,
        needs_calibration=True,
        state_ops=multibit.state_ops,
        sweep_keys=("T", "bits_spike"),
        metrics=multibit.metrics,
    ),
    "rate": Coding(
        name="rate",
        summary="classic rate coding with integrate-and-fire neurons (baseline)",
        config=rate.Config,
        convert=rate.convert,
        needs_quantized=False,
        needs_calibration=True,
        state_ops=rate.state_ops,
        sweep_keys=("T", "percentile"),
        metrics=rate.metrics,
    ),
}


def get_coding(name: str) -> Coding:
    if name not in CODINGS:
        raise SnnConvertError(f"unknown coding {name!r}: choose one of {', '.join(sorted(CODINGS))}")
    return CODINGS[name]


__all__ = ["CODINGS", "Coding", "ConversionInputs", "get_coding"]
