"""Crafted artifacts (issue 29, classes 1 and 3): a marker-file payload in every string of a graph
spec, of the model and tensor names and of a real manifest, checksums recomputed as anyone can;
plus files that would exhaust memory or block a reader. Nothing may run, hang or crash."""

from __future__ import annotations

import json
import os
import zipfile
import zlib
from pathlib import Path

import pytest
import torch
from fuzzing import ARTIFACTS, LARGE, PAYLOADS, attempt, cli, workdir
from torch import fx, nn
from walk import label, replaced, strings

from snnconvert.artifact import Artifact, _specs_digest, load_artifact, save_artifact, tensors_digest


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return torch.flatten(self.fc(x), start_dim=1)


def _tiny_payload() -> dict:
    with workdir() as folder:
        torch.manual_seed(0)
        path = save_artifact(Artifact("quantized", {"model": {"name": "tiny", "notes": ["a"]}},
                                      {"float": fx.symbolic_trace(_Net())}), folder / "t.snnc")
        return torch.load(path, weights_only=True)


TINY = _tiny_payload()
SPEC = json.loads(TINY["models"]["float"])
MANIFEST = json.loads(TINY["manifest"])
CHECKSUMS = frozenset({"tensors_sha256", "models_sha256"})


def write_payload(payload: dict, path: Path, *, models: dict | None = None, manifest: dict | None = None,
                  tensors: dict | None = None) -> Path:
    """``payload`` with parts replaced and both checksums recomputed."""
    payload = dict(payload)
    if models is not None:
        payload["models"] = {k: v if isinstance(v, str) else json.dumps(v) for k, v in models.items()}
    if tensors is not None:
        payload["tensors"] = tensors
    manifest = dict(json.loads(payload["manifest"]) if manifest is None else manifest)
    manifest["tensors_sha256"] = tensors_digest(payload["tensors"])
    manifest["models_sha256"] = _specs_digest(payload["models"].items())
    payload["manifest"] = json.dumps(manifest)
    torch.save(payload, path)
    return path


def _load_and_run(path: Path) -> None:
    artifact = load_artifact(path)
    for model in artifact.models.values():
        model(torch.zeros(1, 4))  # a payload in a keyword or default would run here


SPEC_CASES = [pytest.param(where, n, id=f"{label(where)}-p{n}")
              for where in strings(SPEC) for n in range(len(PAYLOADS))]


@pytest.mark.parametrize("where,n", SPEC_CASES)
def test_payload_in_every_graph_spec_string(where, n: int) -> None:
    with workdir() as folder:
        path = write_payload(TINY, folder / "c.snnc", models={"float": replaced(SPEC, where, PAYLOADS[n])})
        attempt(lambda: _load_and_run(path), folder, keep=("c.snnc",), category=ARTIFACTS, inputs=[path])


@pytest.mark.parametrize("n", range(len(PAYLOADS)))
@pytest.mark.parametrize("part", ["model name", "tensor name"])
def test_payload_in_model_and_tensor_names(part: str, n: int) -> None:
    with workdir() as folder:
        if part == "model name":
            models, tensors = {PAYLOADS[n]: SPEC}, {k.replace("float/", PAYLOADS[n] + "/"): v
                                                    for k, v in TINY["tensors"].items()}
        else:
            models, tensors = {"float": SPEC}, {**TINY["tensors"], f"extra/{PAYLOADS[n]}": torch.zeros(1)}
        path = write_payload(TINY, folder / "c.snnc", models=models, tensors=tensors)
        attempt(lambda: _load_and_run(path), folder, keep=("c.snnc",), category=ARTIFACTS, inputs=[path])


@pytest.fixture(scope="module")
def real(lenet: dict[str, Path]) -> dict:
    payload = torch.load(lenet["quantized"], weights_only=True)
    return {"payload": payload, "manifest": json.loads(payload["manifest"])}


MANIFEST_SLOTS = 240  # a quantized lenet5 manifest holds ~220 strings; slots beyond them are skipped


@pytest.mark.parametrize("slot", range(MANIFEST_SLOTS))
def test_payload_in_every_manifest_string_shown_by_info(real: dict, slot: int) -> None:
    wheres = sorted(strings(real["manifest"], skip=CHECKSUMS), key=label)
    if slot >= len(wheres):
        pytest.skip("fewer manifest strings")
    where = wheres[slot]
    numbers = range(len(PAYLOADS)) if LARGE else [slot % len(PAYLOADS)]
    for n in numbers:
        with workdir() as folder:
            path = write_payload(real["payload"], folder / "q.snnc",
                                 manifest=replaced(real["manifest"], where, PAYLOADS[n]))
            os.chdir(folder)
            try:
                attempt(lambda: cli(["info", "q.snnc"]), folder, keep=("q.snnc",), category=ARTIFACTS,
                        inputs=[path])
            finally:
                os.chdir("/")


@pytest.mark.parametrize("field", ["model/name", "model/source", "model/class_names/0", "model/default_data",
                                   "quantize/method", "calibration/spec", "kind"])
def test_payload_in_manifest_fields_read_by_to_snn(real: dict, field: str) -> None:
    path_of = tuple(int(p) if p.isdigit() else p for p in field.split("/"))
    for n in ([0, 1, 3, 6] if not LARGE else range(len(PAYLOADS))):
        with workdir() as folder:
            path = write_payload(real["payload"], folder / "q.snnc",
                                 manifest=replaced(real["manifest"], (path_of, "value"), PAYLOADS[n]))
            os.chdir(folder)
            try:
                attempt(lambda: cli(["to-snn", "--input", "q.snnc", "--coding", "rate", "--set", "T=2",
                                     "--out", "out"]),
                        folder, keep=("q.snnc",), category=ARTIFACTS, inputs=[path])
            finally:
                os.chdir("/")


# ------------------------------------------------------------------------ files that exhaust or block


def zip_bomb(path: Path, member_bytes: int = (2 << 30) + (256 << 20)) -> Path:
    """A valid-looking torch zip whose one tensor storage inflates to ``member_bytes`` zeros."""
    with workdir() as folder:
        torch.save({"format": "snnconvert-artifact", "version": 2, "manifest": "{}", "models": {},
                    "tensors": {"extra/x": torch.zeros(4)}}, folder / "p.pt")
        with zipfile.ZipFile(folder / "p.pt") as source, \
                zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
            for info in source.infolist():
                if "/data/" not in info.filename or info.filename.endswith("serialization_id"):
                    archive.writestr(info.filename, source.read(info.filename))
                    continue
                with archive.open(info.filename, "w", force_zip64=True) as handle:
                    block = bytes(1 << 24)
                    for _ in range(member_bytes // len(block)):
                        handle.write(block)
    return path


def _huge_notes(folder: Path, count: int = 2_000_000) -> Path:
    manifest = dict(MANIFEST, model={"name": "tiny", "notes": ["n" * 10] * count})
    return write_payload(TINY, folder / "c.snnc", manifest=manifest)


def _deep_manifest(folder: Path) -> Path:
    """A manifest nested 100,000 levels deep (JSON parsers recurse)."""
    payload = dict(TINY)
    digests = (f'{{"kind": "quantized", "tensors_sha256": "{tensors_digest(payload["tensors"])}", '
               f'"models_sha256": "{_specs_digest(payload["models"].items())}", "deep": ')
    payload["manifest"] = digests + '{"a": ' * 100_000 + "1" + "}" * 100_000 + "}"
    torch.save(payload, folder / "c.snnc")
    return folder / "c.snnc"


def _v1_unchecked(folder: Path) -> Path:
    payload = dict(TINY, version=1)
    payload["manifest"] = json.dumps({"kind": "quantized"})
    torch.save(payload, folder / "c.snnc")
    return folder / "c.snnc"


def _sparse(folder: Path) -> Path:
    path = folder / "c.snnc"
    with open(path, "wb") as handle:
        handle.truncate(4 << 30)
    return path


def _fifo(folder: Path) -> Path:
    os.mkfifo(folder / "c.snnc")
    return folder / "c.snnc"


def _link(target: str):
    def make(folder: Path) -> Path:
        (folder / "c.snnc").symlink_to(target)
        return folder / "c.snnc"
    return make


def _self_link(folder: Path) -> Path:
    (folder / "c.snnc").symlink_to(folder / "c.snnc")
    return folder / "c.snnc"


def _bomb(folder: Path) -> Path:
    return zip_bomb(folder / "c.snnc")


def _long_name(folder: Path) -> Path:
    path = folder / ("n" * 250 + ".snnc")
    torch.save(TINY, path)
    return path


def _stored_nan_energy(folder: Path) -> Path:
    manifest = dict(MANIFEST, energy={"e_mac": float("nan"), "e_ac": float("inf")})
    return write_payload(TINY, folder / "c.snnc", manifest=manifest)


HOSTILE = {"zip bomb": _bomb, "huge notes list": _huge_notes if LARGE else lambda f: _huge_notes(f, 20_000),
           "deep manifest": _deep_manifest,
           "v1 without checksums": _v1_unchecked, "4 GiB sparse file": _sparse, "FIFO": _fifo,
           "link to /dev/zero": _link("/dev/zero"), "link to /dev/urandom": _link("/dev/urandom"),
           "link to itself": _self_link, "dangling link": _link("/nonexistent/x.snnc"), "long name": _long_name,
           "NaN energy constants": _stored_nan_energy}
REFUSE = {"zip bomb", "v1 without checksums", "4 GiB sparse file", "FIFO", "link to /dev/zero",
          "link to /dev/urandom", "link to itself", "dangling link"}


@pytest.mark.parametrize("how", ["load", "info"])
@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_artifact_files(name: str, how: str) -> None:
    if name == "zip bomb" and how == "info" and not LARGE:
        pytest.skip("one zip bomb case in the CI profile")
    with workdir() as folder:
        path = HOSTILE[name](folder)
        os.chdir(folder)
        try:
            call = (lambda: load_artifact(path)) if how == "load" else (lambda: cli(["info", path.name]))
            attempt(call, folder, keep=(path.name,), category=ARTIFACTS, inputs=[] if name in ("FIFO",) else [path],
                    expect="refuse" if name in REFUSE else "any")
        finally:
            os.chdir("/")


def test_zlib_is_available() -> None:
    assert zlib.compress(b"x")  # the zip bomb needs deflate
