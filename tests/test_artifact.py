"""Artifacts: round trip, atomic writes, refusal of code payloads and of newer formats."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from torch import nn

from snnconvert import artifact as artifact_module
from snnconvert.artifact import FORMAT_VERSION, Artifact, load_artifact, new_manifest, save_artifact
from snnconvert.data import InputSpec
from snnconvert.errors import SnnConvertError
from snnconvert.graph import prepare


def _graph() -> torch.fx.GraphModule:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(4 * 4 * 4, 5)).eval()
    return prepare(model, InputSpec(3, (8, 8), None, (0.5, 0.5, 0.5), (0.2, 0.2, 0.2)))


def test_round_trip_keeps_structure_values_and_manifest(tmp_path: Path) -> None:
    gm = _graph()
    manifest = new_manifest("quantized", model={"name": "tiny"}, metrics={"top1": 0.5})
    path = save_artifact(Artifact("quantized", manifest, {"float": gm}, {"ints": torch.arange(5)}), tmp_path / "a.snnc")
    loaded = load_artifact(path)
    assert loaded.kind == "quantized" and loaded.manifest["metrics"] == {"top1": 0.5}
    assert loaded.manifest["versions"]["torch"] == torch.__version__
    assert torch.equal(loaded.extra_tensors["ints"], torch.arange(5))
    x = torch.rand(2, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(loaded.models["float"](x), gm(x))


def test_interrupted_write_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "b.snnc"
    target.write_bytes(b"previous")

    def failing_save(obj, handle, *args, **kwargs) -> None:
        handle.write(b"partial data")
        raise RuntimeError("disk full")

    monkeypatch.setattr(artifact_module.torch, "save", failing_save)
    with pytest.raises(RuntimeError):
        save_artifact(Artifact("quantized", {}, {"float": _graph()}), target)
    assert target.read_bytes() == b"previous"  # the old file is untouched
    assert os.listdir(tmp_path) == ["b.snnc"]  # and no temporary file remains


class Payload:
    def __reduce__(self):
        return (os.system, (f"touch {self.sentinel}",))


def test_pickled_code_is_refused_and_never_runs(tmp_path: Path) -> None:
    sentinel = tmp_path / "pwned"
    payload = Payload()
    Payload.sentinel = sentinel
    path = tmp_path / "evil.snnc"
    torch.save({"format": "snnconvert-artifact", "version": 1, "manifest": "{}", "models": {}, "tensors": {},
                "x": payload}, path)
    with pytest.raises(SnnConvertError) as err:
        load_artifact(path)
    assert "never unpickles code" in str(err.value)
    assert not sentinel.exists()


def test_newer_format_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.snnc"
    torch.save({"format": "snnconvert-artifact", "version": FORMAT_VERSION + 1, "manifest": "{}", "models": {},
                "tensors": {}}, path)
    with pytest.raises(SnnConvertError, match="newer than this snnconvert"):
        load_artifact(path)


def test_corrupt_and_missing_files(tmp_path: Path) -> None:
    good = save_artifact(Artifact("quantized", {}, {"float": _graph()}), tmp_path / "g.snnc")
    broken = tmp_path / "broken.snnc"
    broken.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(SnnConvertError, match="corrupt or truncated"):
        load_artifact(broken)
    with pytest.raises(SnnConvertError, match="not found"):
        load_artifact(tmp_path / "nope.snnc")


def test_unknown_module_types_are_rejected_on_save(tmp_path: Path) -> None:
    class Custom(nn.Module):
        def forward(self, x):
            return x

    with pytest.raises(SnnConvertError, match="Custom"):
        save_artifact(Artifact("quantized", {}, {"m": Custom()}), tmp_path / "c.snnc")
    assert not (tmp_path / "c.snnc").exists()


def _renamed_encoder_payload(tmp_path: Path, version: int) -> Path:
    """An SNN artifact whose encoder is stored under its v1 name, MLIFInputEncoder."""
    import json

    from snnconvert.simulate.encoders import RepeatEncoder
    from snnconvert.simulate.network import SpikingNetwork

    snn = SpikingNetwork("mlif", {"T": 2})
    snn.encoder, snn.body, snn.decoder = RepeatEncoder(2), _graph(), nn.Identity()
    path = save_artifact(Artifact("snn", new_manifest("snn"), {"snn": snn}), tmp_path / "enc.snnc")
    payload = torch.load(path, weights_only=True)
    text = payload["models"]["snn"]
    assert text.count('"RepeatEncoder"') == 1
    payload["models"]["snn"] = text.replace('"RepeatEncoder"', '"MLIFInputEncoder"')
    payload["version"] = version
    if version == 1:  # v1 files had no checksums
        manifest = json.loads(payload["manifest"])
        del manifest["tensors_sha256"], manifest["models_sha256"]
        payload["manifest"] = json.dumps(manifest)
    torch.save(payload, path)
    return path


def test_a_v1_structure_is_migrated_on_read(tmp_path: Path) -> None:
    from snnconvert.simulate.encoders import RepeatEncoder

    loaded = load_artifact(_renamed_encoder_payload(tmp_path, 1), allow_unchecked=True).models["snn"]
    assert type(loaded.encoder) is RepeatEncoder and loaded.encoder(torch.ones(1, 2)).shape == (2, 2)


def test_a_v2_file_gets_no_v1_migration(tmp_path: Path) -> None:
    # the v2 checksum covers the structure, so the renamed text is first refused as damaged;
    # the migration table is what maps the old name, and it starts at v1 only
    with pytest.raises(SnnConvertError, match="checksum"):
        load_artifact(_renamed_encoder_payload(tmp_path, 2))
    assert artifact_module.migrate_spec({"type": "MLIFInputEncoder"}, 2) == {"type": "MLIFInputEncoder"}
    assert artifact_module.migrate_spec({"type": "X", "children": {"e": {"type": "MLIFInputEncoder"}}}, 1) == \
        {"type": "X", "children": {"e": {"type": "RepeatEncoder"}}}
