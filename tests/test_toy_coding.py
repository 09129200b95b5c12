"""Adding a coding is one file: this one declares a toy coding and drives it through the CLI.

The toy "analog" coding replaces every activation by a one-step analog neuron (ReLU times a
gain), so with gain 1 its SNN computes the float ANN exactly. Nothing else in snnconvert is
told about it: its flags, recipe keys, report, serialization and sweep come from the
declaration below.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers import cli_ok
from torch import Tensor
from typer.testing import CliRunner

from snnconvert.cli.app import app
from snnconvert.codings import Coding, CodingReport, ConversionInputs, ReportTable, option, register_coding
from snnconvert.codings.common import insert_neurons, replace_synapses
from snnconvert.codings.gains import fold_gains
from snnconvert.codings.registry import unregister_coding
from snnconvert.errors import SnnConvertError
from snnconvert.graph.ops import Kind, kind_of
from snnconvert.graph.passes import recompile_graph
from snnconvert.neurons.base import SpikingNeuron
from snnconvert.registry import MODULE_CLASSES
from snnconvert.simulate.network import SpikingNetwork
from snnconvert.simulate.synapse import WeightedSumDecoder

runner = CliRunner()


@dataclass
class AnalogConfig:
    gain: float = option(1.0, help="Output gain of every analog neuron.")
    note: str = option("plain", help="A free-text label kept in the network's info.")

    def validate(self) -> None:
        if not isinstance(self.gain, (int, float)) or not self.gain > 0:
            raise SnnConvertError(f"--gain {self.gain!r} is not possible: give a positive number")


class AnalogNeuron(SpikingNeuron):
    """ReLU times ``gain`` on one frame."""

    serial_params = ("gain",)

    def __init__(self, gain: float = 1.0) -> None:
        super().__init__(1, 1)
        self.gain = float(gain)

    def dynamics(self, inputs: Tensor) -> Tensor:
        return torch.relu(inputs) * self.gain


def convert(inputs: ConversionInputs, cfg: AnalogConfig) -> SpikingNetwork:
    gm = copy.deepcopy(inputs.float_model)
    replace_synapses(gm, torch.ones(1, dtype=torch.float64))
    plan = {n.name: (AnalogNeuron(cfg.gain), 1.0) for n in gm.graph.nodes if kind_of(gm, n) is Kind.ACTIVATION}
    layers = insert_neurons(gm, plan)
    recompile_graph(gm)
    fold_gains(gm)
    snn = SpikingNetwork("analog")
    snn.body, snn.decoder = gm.float(), WeightedSumDecoder(1)
    snn.info = {"coding": "analog", "frames": 1, "latency": 1, "latency_terms": "one analog step",
                "neuron_layers": layers, "note": cfg.note}
    return snn


def layer_count(snn: SpikingNetwork) -> dict[str, Any]:
    return {"layers": len(snn.neurons())}


def layer_tables(data: dict[str, Any]) -> list[ReportTable]:
    return [ReportTable("analog neurons", ("what", "count"), [("layers", str(data["layers"]))])]


ANALOG = Coding(name="analog", summary="toy: analog ReLU neurons, one step", config=AnalogConfig, convert=convert,
                summary_rows=lambda info: [("note", info["note"])], sweep_keys=("gain",),
                reports=(CodingReport("layers", "how many analog neuron layers", layer_count, layer_tables),))


@pytest.fixture(scope="module")
def registered() -> Iterator[Coding]:
    register_coding(ANALOG)
    MODULE_CLASSES.register("AnalogNeuron", AnalogNeuron)  # what @serializable does at import
    yield ANALOG
    unregister_coding("analog")
    MODULE_CLASSES.unregister("AnalogNeuron")


def test_a_coding_declared_in_one_file_runs_through_the_cli(registered: Coding, tmp_path: Path) -> None:
    assert "--gain" in cli_ok(["to-snn", "--help"])  # its flag, generated from the config field
    assert "analog" in cli_ok(["codings"])
    cli_ok(["quantize", "lenet5", "--data", "digits", "--calib-limit", "64", "--eval-limit", "0",
            "--out", str(tmp_path)])
    converted = json.loads(cli_ok(["to-snn", "--input", str(tmp_path), "--coding", "analog", "--gain", "1",
                                "--note", "hello", "--json"]))
    assert converted["info"]["note"] == "hello" and converted["info"]["config"] == {"gain": 1.0, "note": "hello"}
    report = json.loads(cli_ok(["evaluate", "--input", str(tmp_path), "--limit", "50", "--report", "accuracy,layers",
                             "--sweep", "gain=1,2", "--json"]))
    scores = {s["model"]: s["top1"] for s in report["accuracy"]["scores"]}
    assert scores["SNN"] == scores["float ANN"]  # gain 1: the float ANN exactly (from a saved artifact)
    assert report["accuracy"]["agreement_snn_float"] == 1.0
    assert report["coding_reports"] == {"layers": {"layers": 4}}  # LeNet-5's four ReLUs
    assert [row["setting"] for row in report["sweep"]] == [{"gain": 1.0}, {"gain": 2.0}]
    tables = cli_ok(["evaluate", "--input", str(tmp_path), "--limit", "20", "--report", "latency,layers"])
    assert "analog neurons" in tables and "one analog step" in tables and "hello" in tables


def test_its_options_are_checked_like_any_coding(registered: Coding, tmp_path: Path) -> None:
    cli_ok(["quantize", "lenet5", "--data", "digits", "--calib-limit", "64", "--eval-limit", "0",
            "--out", str(tmp_path)])
    result = runner.invoke(app, ["to-snn", "--input", str(tmp_path), "--coding", "analog", "--gain", "-1"])
    assert result.exit_code == 1 and "--gain -1" in result.output and "Traceback" not in result.output
    result = runner.invoke(app, ["to-snn", "--input", str(tmp_path), "--coding", "analog", "--Tc", "8"])
    assert result.exit_code == 1 and "--Tc is not an option of coding analog" in result.output
