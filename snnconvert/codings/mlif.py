"""Placeholder: being implemented (see issue 4)."""

from __future__ import annotations

from dataclasses import dataclass

from snnconvert.codings.base import ConversionInputs
from snnconvert.errors import SnnConvertError
from snnconvert.simulate.network import SpikingNetwork


@dataclass
class Config:
    def validate(self) -> None:
        pass


def convert(inputs: ConversionInputs, cfg: Config) -> SpikingNetwork:
    raise SnnConvertError("the mlif coding is not available yet")
