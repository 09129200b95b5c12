"""A crafted artifact never runs code; a command never changes its input (issue 29, items 1-2).

torch.fx rebuilds a graph by generating Python source. Every string of a stored graph that fx
writes into that source unquoted (node names, input names, module paths, keyword keys) is an
injection point; each gets a crafted artifact whose checksums are recomputed, as anyone can, and
whose payload would create a marker file if it ran.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
from pathlib import Path

import pytest
import torch
from torch import fx, nn
from typer.testing import CliRunner

from snnconvert import serialize
from snnconvert.artifact import (
    FORMAT,
    Artifact,
    UncheckedArtifactError,
    _specs_digest,
    load_artifact,
    save_artifact,
    tensors_digest,
)
from snnconvert.cli.app import app
from snnconvert.errors import SnnConvertError

runner = CliRunner()


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return torch.flatten(self.fc(x), start_dim=1)


def _payload_of(tmp_path: Path) -> dict:
    torch.manual_seed(0)
    path = save_artifact(Artifact("quantized", {"model": {"name": "tiny"}}, {"float": fx.symbolic_trace(_Net())}),
                         tmp_path / "good.snnc")
    return torch.load(path, weights_only=True)


def _write(payload: dict, spec: dict, path: Path) -> Path:
    """``payload`` with model 'float' replaced by ``spec`` and both checksums recomputed."""
    payload = copy.copy(payload)
    payload["models"] = {"float": json.dumps(spec)}
    manifest = json.loads(payload["manifest"])
    manifest["tensors_sha256"] = tensors_digest(payload["tensors"])
    manifest["models_sha256"] = _specs_digest(payload["models"].items())
    payload["manifest"] = json.dumps(manifest)
    torch.save(payload, path)
    return path


def _code(marker: Path) -> str:
    return f"__import__('pathlib').Path({str(marker)!r}).touch()"


def _inject(spec: dict, point: str, marker: Path) -> dict:
    """A copy of the graph spec ``spec`` with a payload at injection ``point``."""
    spec = copy.deepcopy(spec)
    nodes = {n["op"] if n["op"] != "call_function" else "call_function": n for n in spec["graph"]}
    code = _code(marker)
    if point == "placeholder target":  # becomes a default value in `def forward(self, x=<code>)`
        nodes["placeholder"]["target"] = f"x={code}"
    elif point == "node name":
        nodes["call_module"]["name"] = f"fc_1 = {code}; fc"
    elif point == "module target":
        target = f'fc"); {code}; ("'
        spec["modules"] = {target: spec["modules"]["fc"]}
        nodes["call_module"]["target"] = target
    elif point == "keyword key":
        nodes["call_function"]["kwargs"] = {"dict": {f"start_dim=1, **{{}} if {code} else {{}}, end_dim": -1}}
    elif point == "module name only":
        spec["modules"] = {f"fc; {code}": spec["modules"]["fc"], **spec["modules"]}
    else:
        raise AssertionError(point)
    return spec


POINTS = ["placeholder target", "node name", "module target", "keyword key", "module name only"]


def test_an_argument_of_unknown_form_is_refused(tmp_path: Path) -> None:
    """A renamed tag (``{"nodx": "fc"}``) would reach forward() as a plain dict: refused at load."""
    payload = _payload_of(tmp_path)
    spec = json.loads(payload["models"]["float"])
    call = next(n for n in spec["graph"] if n["op"] == "call_function")
    call["args"]["tuple"][0] = {"nodx": call["args"]["tuple"][0]["node"]}
    with pytest.raises(SnnConvertError, match="argument of unknown form"):
        load_artifact(_write(payload, spec, tmp_path / "tag.snnc"))


@pytest.mark.parametrize("point", POINTS)
def test_a_crafted_graph_string_is_refused_and_never_runs(tmp_path: Path, point: str) -> None:
    payload = _payload_of(tmp_path)
    marker = tmp_path / "marker"
    spec = _inject(json.loads(payload["models"]["float"]), point, marker)
    path = _write(payload, spec, tmp_path / "crafted.snnc")
    with pytest.raises(SnnConvertError) as info:
        model = load_artifact(path).models["float"]
        model(torch.zeros(1, 4))  # were it loaded, a keyword payload would run here
    message = str(info.value)
    assert "\n" not in message and "crafted.snnc" in message, message
    assert "identifier" in message or "module path" in message or "does not store" in message, message
    assert not marker.exists()


def test_the_payload_runs_without_the_identifier_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The crafted placeholder above is a real attack: with the check switched off, loading the
    file alone runs its code. (This proves the refusal test can fail.)"""
    payload = _payload_of(tmp_path)
    marker = tmp_path / "marker"
    path = _write(payload, _inject(json.loads(payload["models"]["float"]), "placeholder target", marker),
                  tmp_path / "crafted.snnc")
    monkeypatch.setattr(serialize, "_identifier", lambda text, field: text)
    with contextlib.suppress(SnnConvertError):
        load_artifact(path)
    assert marker.exists()


def test_children_must_be_ones_the_class_declares(tmp_path: Path) -> None:
    payload = _payload_of(tmp_path)
    spec = {"type": "SpikingNetwork", "config": {"coding": "sws", "info": "{}"},
            "children": {"forward": {"type": "ReLU", "config": {}}}}
    path = _write(payload, spec, tmp_path / "child.snnc")
    with pytest.raises(SnnConvertError, match="part it does not have"):
        load_artifact(path)


def test_ordinary_graphs_still_round_trip(tmp_path: Path) -> None:
    from snnconvert.data import InputSpec
    from snnconvert.graph import prepare
    from snnconvert.models.cifar_resnet import cifar_resnet

    torch.manual_seed(0)
    model = prepare(cifar_resnet("resnet20").eval(), InputSpec(3, (32, 32), None, (0.5,) * 3, (0.25,) * 3))
    path = save_artifact(Artifact("quantized", {}, {"float": model}), tmp_path / "r.snnc")
    loaded = load_artifact(path).models["float"]
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(loaded(x), model(x))


# ---------------------------------------------------------------------------- unchecked (v1) files


def _v1(tmp_path: Path) -> Path:
    payload = _payload_of(tmp_path)
    payload["version"] = 1
    manifest = json.loads(payload["manifest"])
    del manifest["tensors_sha256"], manifest["models_sha256"]
    payload["manifest"] = json.dumps(manifest)
    path = tmp_path / "old.snnc"
    torch.save(payload, path)
    return path


def test_an_artifact_without_checksums_needs_an_explicit_flag(tmp_path: Path) -> None:
    path = _v1(tmp_path)
    with pytest.raises(UncheckedArtifactError) as info:
        load_artifact(path)
    assert "without checksums" in str(info.value) and "\n" not in str(info.value)
    assert isinstance(load_artifact(path, allow_unchecked=True).models["float"], fx.GraphModule)
    refused = runner.invoke(app, ["info", str(path)])
    assert refused.exit_code == 1 and "--allow-unchecked-artifacts" in refused.output
    allowed = runner.invoke(app, ["--allow-unchecked-artifacts", "info", str(path), "--json"])
    assert allowed.exit_code == 0, allowed.output
    assert json.loads(allowed.output)["model"]["name"] == "tiny"


def test_the_flag_does_not_admit_a_crafted_graph(tmp_path: Path) -> None:
    payload = _payload_of(tmp_path)
    payload["version"] = 1
    marker = tmp_path / "marker"
    payload["models"] = {"float": json.dumps(_inject(json.loads(payload["models"]["float"]), "placeholder target",
                                                     marker))}
    path = tmp_path / "old.snnc"
    torch.save(payload, path)
    with pytest.raises(SnnConvertError, match="identifier"):
        load_artifact(path, allow_unchecked=True)
    assert not marker.exists()


def test_the_format_tag_is_still_checked(tmp_path: Path) -> None:
    payload = _payload_of(tmp_path)
    assert payload["format"] == FORMAT


# ---------------------------------------------------------------------------- inputs stay unchanged


def _digest(path: Path) -> tuple[str, bool, str | None]:
    """Content hash, whether it is a symlink, and where it points."""
    return (hashlib.sha256(path.read_bytes()).hexdigest(), path.is_symlink(),
            os.readlink(path) if path.is_symlink() else None)


@pytest.fixture(scope="module")
def lenet_snn(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("lenet") / "run"
    for args in (["quantize", "lenet5", "--calib-limit", "64", "--eval-limit", "50", "--out", str(out)],
                 ["to-snn", "--input", str(out), "--coding", "sws", "--Tc", "8", "--Ts", "2", "--out", str(out)]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
    return next(out.glob("snn-*.snnc"))


def _commands(source: Path, tmp_path: Path) -> list[list[str]]:
    return [
        ["info", str(source)],
        ["evaluate", "--input", str(source), "--limit", "20", "--report", "accuracy", "--plots", str(tmp_path / "p")],
        ["evaluate", "--input", str(source), "--limit", "20", "--report", "accuracy",
         "--out", str(tmp_path / "e.json")],
        ["export", "--input", str(source), "--format", "onnx", "--out", str(tmp_path / "m.onnx")],
    ]


@pytest.mark.parametrize("as_link", [False, True])
def test_commands_leave_their_input_byte_identical(tmp_path: Path, lenet_snn: Path, as_link: bool) -> None:
    source = tmp_path / "in" / lenet_snn.name
    source.parent.mkdir()
    if as_link:
        source.symlink_to(lenet_snn)
    else:
        source.write_bytes(lenet_snn.read_bytes())
    before, target_before = _digest(source), _digest(lenet_snn)
    for args in _commands(source, tmp_path):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, (args, result.output)
        assert _digest(source) == before, args
        assert _digest(lenet_snn) == target_before, args
    assert json.loads((tmp_path / "e.json").read_text())["artifact"] == str(source)


def test_evaluate_refuses_to_write_over_its_input(tmp_path: Path, lenet_snn: Path) -> None:
    source = tmp_path / lenet_snn.name
    source.write_bytes(lenet_snn.read_bytes())
    before = _digest(source)
    result = runner.invoke(app, ["evaluate", "--input", str(source), "--limit", "10", "--report", "accuracy",
                                 "--out", str(source)])
    assert result.exit_code == 1 and "never overwrite their input" in result.output, result.output
    assert _digest(source) == before


def test_info_lists_evaluations_from_the_files_beside_the_artifact(tmp_path: Path, lenet_snn: Path) -> None:
    source = tmp_path / lenet_snn.name
    source.write_bytes(lenet_snn.read_bytes())
    result = runner.invoke(app, ["evaluate", "--input", str(source), "--limit", "12", "--report", "accuracy",
                                 "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    saved = Path(data["saved"])
    timing = data["timing"]  # issue 27: the ratio a user can trust, with the threads it ran on
    assert timing["threads"] == torch.get_num_threads() and timing["device"] == "cpu" and timing["images"] == 12
    assert timing["snn_over_quantized"] == pytest.approx(timing["snn_seconds"] / timing["quantized_seconds"])
    assert timing["dtype"] == "float32" and timing["snn_dtype"] == "float64"  # SWS keeps its exact simulation
    (tmp_path / f"evaluation-{source.stem}-garbage.json").write_text("{not json")  # skipped, not fatal
    manifest = json.loads(runner.invoke(app, ["info", str(source), "--json"]).output)
    assert [e["report"] for e in manifest["evaluations"]] == [saved.name]
    assert manifest["evaluations"][0]["images"] == 12


def test_evaluations_recorded_inside_older_artifacts_are_listed_once(tmp_path: Path) -> None:
    """Earlier releases appended a record to the manifest and wrote the JSON beside the artifact."""
    torch.manual_seed(0)
    record = {"report": "evaluation-old-20260101-000000-000000.json", "created": "2026-01-01T00:00:00+00:00",
              "data": "digits test", "images": 20, "top1": {"SNN": 0.5}, "reports": ["accuracy"]}
    path = save_artifact(Artifact("quantized", {"evaluations": [record]}, {"float": fx.symbolic_trace(_Net())}),
                         tmp_path / "old.snnc")
    (tmp_path / record["report"]).write_text(json.dumps(  # the old JSON: no "created" of its own
        {"artifact": str(path), "accuracy": {"data": "digits test", "images": 20,
                                             "scores": [{"model": "SNN", "top1": 0.5, "top5": None}]}}))
    result = runner.invoke(app, ["info", str(path), "--json"])
    assert result.exit_code == 0, result.output
    assert [e["report"] for e in json.loads(result.output)["evaluations"]] == [record["report"]]
