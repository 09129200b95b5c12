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
        config=mlif.Config,
        convert=mlif.convert,
    ),
    "multibit": Coding(
        name="multibit",
        summary="multi-bit spiking neurons (integer spikes, adaptive bit allocation paper)",
        config=multibit.Config,
        convert=multibit.convert,
    ),
    "rate": Coding(
        name="rate",
        summary="classic rate coding with integrate-and-fire neurons (baseline)",
        config=rate.Config,
        convert=rate.convert,
    ),
}


def get_coding(name: str) -> Coding:
    if name not in CODINGS:
        raise SnnConvertError(f"unknown coding {name!r}: choose one of {', '.join(sorted(CODINGS))}")
    return CODINGS[name]


__all__ = ["CODINGS", "Coding", "ConversionInputs", "get_coding"]
