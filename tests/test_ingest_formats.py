"""Ingest formats are a registry: a new kind of model spec loads through quantize like the built-in ones."""

from __future__ import annotations

import pytest
from torch import nn

import snnconvert
from snnconvert.data import InputSpec
from snnconvert.ingest import INGEST_FORMATS, IngestFormat, LoadedModel, load_model
from snnconvert.ingest.formats import format_for


def _tiny(spec: str, weights: str | None = None, *, num_classes: int | None = None,
          input_size: tuple[int, int] | None = None) -> LoadedModel:
    module = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, num_classes or 10)).eval()
    return LoadedModel(module=module, name=spec.partition(":")[2], source=f"toy {spec}",
                       input_spec=InputSpec(1, (8, 8), None, (0.0,), (1.0,)), num_classes=num_classes or 10,
                       default_data="digits", notes=[])


@pytest.fixture()
def toy_format():
    INGEST_FORMATS.register("toyzoo", IngestFormat("toyzoo:NAME", lambda s: s.startswith("toyzoo:"), _tiny,
                                                   priority=5))
    yield
    INGEST_FORMATS.unregister("toyzoo")


def test_the_built_in_formats_claim_their_specs() -> None:
    assert format_for("model.ONNX")[0] == "onnx" and format_for("lenet5")[0] == "zoo"
    assert format_for("resnet18")[0] == "zoo"


def test_a_registered_format_loads_through_quantize(toy_format) -> None:
    assert format_for("toyzoo:mlp")[0] == "toyzoo"
    loaded = load_model("toyzoo:mlp", num_classes=10)
    assert loaded.name == "mlp" and loaded.source == "toy toyzoo:mlp"
    q = snnconvert.quantize("toyzoo:mlp", eval_limit=0)  # default data of the loaded model: digits
    assert q.info.source == "toy toyzoo:mlp" and q.info.name == "mlp"


def test_without_the_plugin_the_spec_is_a_model_name() -> None:
    from snnconvert.errors import SnnConvertError

    with pytest.raises(SnnConvertError, match="toyzoo"):
        load_model("toyzoo:mlp")
