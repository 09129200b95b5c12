"""One set of limits, checked at write time (issue 28, item 5): whatever the reader refuses, the
writer refuses first, and real networks fit."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
import torchvision
from helpers import randomize_batchnorm
from torch import nn

from snnconvert.artifact import Artifact, load_artifact, save_artifact
from snnconvert.errors import SnnConvertError
from snnconvert.limits import MAX_CONFIG_STR, MAX_MANIFEST_ITEMS
from snnconvert.simulate.network import SpikingNetwork


def _network(info: dict) -> SpikingNetwork:
    net = SpikingNetwork("rate", info)
    net.encoder, net.body, net.decoder = nn.Identity(), nn.Identity(), nn.Identity()
    return net


def test_a_config_string_beyond_the_reader_limit_is_refused_at_save(tmp_path: Path) -> None:
    path = tmp_path / "big.snnc"
    with pytest.raises(SnnConvertError) as info:
        save_artifact(Artifact("snn", {}, {"snn": _network({"notes": "x" * (MAX_CONFIG_STR + 1)})}), path)
    message = str(info.value)
    assert message.startswith("cannot save") and "string of" in message and "\n" not in message, message
    assert list(tmp_path.iterdir()) == []  # nothing written, nothing left


def test_a_manifest_beyond_the_reader_limit_is_refused_at_save(tmp_path: Path) -> None:
    path = tmp_path / "notes.snnc"
    with pytest.raises(SnnConvertError, match="cannot save .*'notes' is a list of"):
        save_artifact(Artifact("quantized", {"notes": ["n"] * (MAX_MANIFEST_ITEMS + 1)}, {"f": nn.Linear(2, 2)}),
                      path)
    assert list(tmp_path.iterdir()) == []


def test_a_long_but_legal_config_string_round_trips(tmp_path: Path) -> None:
    """70,104 characters of info JSON (densenet121's SNN via ONNX) was refused by the old 65,536 limit."""
    info = {"layers": [f"features_denseblock_{i:04d}_conv" for i in range(2_500)]}
    assert len(json.dumps(info)) > 70_104
    loaded = load_artifact(save_artifact(Artifact("snn", {}, {"snn": _network(info)}), tmp_path / "ok.snnc"))
    assert loaded.models["snn"].info == info


@pytest.mark.slow
@pytest.mark.parametrize("route", ["torchvision", "onnx"])
def test_densenet121_converts_saves_and_reopens(tmp_path: Path, route: str) -> None:
    from snnconvert.data import InputSpec
    from snnconvert.ingest.types import LoadedModel
    from snnconvert.pipeline import load, quantize, save, to_snn
    from snnconvert.quantize import QuantizeConfig

    torch.manual_seed(0)
    model = randomize_batchnorm(torchvision.models.densenet121(num_classes=10)).eval()
    spec = InputSpec(3, (32, 32), None, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    if route == "onnx":
        source = tmp_path / "densenet121.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, torch.zeros(1, 3, 32, 32), str(source), dynamo=False, opset_version=17)
        subject: str | LoadedModel = str(source)
    else:
        subject = LoadedModel(module=model, name="densenet121", source="torchvision:densenet121/random",
                              input_spec=spec, num_classes=10)
    from test_onnx_dynamo import _image_folder

    data = f"imagefolder:{_image_folder(tmp_path / 'images', per_class=2)}"
    q = quantize(subject, data=data, config=QuantizeConfig(calib_limit=8), eval_limit=0)
    snn = to_snn(q, "sws", Tc=8, Ts=2)
    path = save(tmp_path / "densenet.snnc", q, snn)
    q2, snn2 = load(path)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(q2.model(x), q.model(x))
    assert json.dumps(snn2.info, sort_keys=True) == json.dumps(snn.info, sort_keys=True)
