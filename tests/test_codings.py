"""Every coding through the same API: conversion on the CIFAR ResNets, save/load, evaluate, sweeps."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

import snnconvert
from snnconvert.codings import ConversionInputs, codings
from snnconvert.errors import SnnConvertError
from snnconvert.evaluate import EvaluateConfig
from snnconvert.quantize import QuantizeConfig

SMALL = {"sws": {"Tc": 8, "Ts": 1}, "rate": {"T": 8}, "mlif": {"S": 3, "T": 2}, "multibit": {"bits_spike": 4, "T": 2}}


@pytest.fixture(scope="module")
def lenet() -> snnconvert.QuantizedModel:
    return snnconvert.quantize("lenet5", data="digits", config=QuantizeConfig(bits=8, calib_limit=128), eval_limit=0)


@pytest.fixture(scope="module")
def resnets() -> dict[str, snnconvert.QuantizedModel]:
    # random weights, calibrated on digits resized to the model's input (any data spec works)
    out = {}
    for name in ("resnet20", "resnet32", "resnet44", "resnet56", "resnet110"):
        out[name] = snnconvert.quantize(name, weights="random", data="digits",
                                        config=QuantizeConfig(bits=8, calib_limit=16, batch_size=16), eval_limit=0)
    return out


@pytest.mark.parametrize("name", sorted(codings()))
def test_every_coding_declares_what_it_does(lenet, name: str) -> None:
    """What a coding declares matches what it does: defaults validate, sweep keys and CLI
    options are config fields, and it needs calibration exactly when converting without it fails."""
    coding = codings()[name]
    config = coding.config()
    config.validate()
    fields = {f.name for f in dataclasses.fields(coding.config)}
    assert set(coding.sweep_keys) <= fields and {f.name for f in coding.options()} <= fields
    inputs = ConversionInputs(lenet.float_model, lenet.model, lenet.info.input_spec, None)
    if coding.needs_calibration(config):
        with pytest.raises(SnnConvertError, match="calibration"):
            coding.convert(inputs, config)
    else:
        assert coding.convert(inputs, config).info["latency"] >= 1
    before = dataclasses.asdict(config)
    snnconvert.to_snn(lenet, name, config)
    assert dataclasses.asdict(config) == before  # conversion never changes the caller's config


@pytest.mark.parametrize("coding", list(SMALL))
@pytest.mark.parametrize("name", ["resnet20", "resnet32", "resnet44", "resnet56", "resnet110"])
def test_every_coding_converts_the_cifar_resnets(resnets, coding: str, name: str) -> None:
    q = resnets[name]
    snn = snnconvert.to_snn(q, coding, **SMALL[coding])
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        logits = snn(x)
    assert logits.shape == (2, 10) and torch.isfinite(logits).all()
    info = snn.info
    assert info["coding"] == coding and info["latency"] >= 1 and info["frames"] >= 1 and info["latency_terms"]


@pytest.mark.parametrize("coding", list(SMALL))
def test_save_load_evaluate_every_coding(lenet, coding: str, tmp_path: Path) -> None:
    snn = snnconvert.to_snn(lenet, coding, **SMALL[coding])
    path = snnconvert.save(tmp_path / f"{coding}.snnc", lenet, snn)
    q2, snn2 = snnconvert.load(path)
    x = torch.rand(4, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(snn2(x), snn(x))
    report = snnconvert.evaluate(q2, snn2, EvaluateConfig(limit=60))
    assert report.coding == coding and report.accuracy.images == 60
    assert {s.model for s in report.accuracy.scores} == {"float ANN", "quantized ANN", "SNN"}
    assert report.ops is not None and report.ops.ann_macs > 0 and report.ops.delta > 0
    assert report.rates and all(r.rate >= 0 for r in report.rates)
    assert report.timing.snn_seconds > 0


def test_sweep_reuses_one_conversion_input(lenet) -> None:
    snn = snnconvert.to_snn(lenet, "rate", T=4)
    report = snnconvert.evaluate(lenet, snn, EvaluateConfig(limit=60, reports=("accuracy",), sweep={"T": [4, 16]}))
    rows = {r.setting["T"]: r for r in report.sweep}
    assert set(rows) == {4, 16} and rows[4].latency == 4 and rows[16].latency == 16
    assert rows[16].agreement_float >= rows[4].agreement_float - 0.05  # longer windows do not get worse


def test_ts_auto_keeps_the_networks_dtype(lenet) -> None:
    """--Ts auto searches in float32 on a copy: the network it returns stays float64 (SWS's
    conversion precision), and the quantized model it compared against is not cast."""
    before = {name: t.dtype for name, t in lenet.model.state_dict().items()}
    snn = snnconvert.to_snn(lenet, "sws", Tc=8, Ts="auto", auto_limit=48)
    assert snn.compute_dtype() == torch.float64
    assert {p.dtype for p in snn.parameters()} == {torch.float64}
    assert {name: t.dtype for name, t in lenet.model.state_dict().items()} == before
    auto = snn.info["auto"]
    assert auto["images"] == 38 and auto["holdout"]["images"] == 10  # 48 with the default 0.2 held out
    assert 8 <= snn.info["T_inf"] <= 8 + 8 * len(snn.info["Ts"])
