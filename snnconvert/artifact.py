"""The snnconvert artifact: a versioned file with a manifest, model structures and tensors.

Layout (a ``torch.save`` zip of plain containers, read back with ``weights_only=True``)::

    {"format": "snnconvert-artifact", "version": 1,
     "manifest": "<JSON>",                # source, config, versions, data, metrics, ...
     "models": {"float": "<JSON spec>", "quantized": "<JSON spec>", ...},
     "tensors": {"float/conv1.weight": Tensor, ..., "extra/<name>": Tensor}}

Model structures are JSON (see :mod:`snnconvert.serialize`), so loading never unpickles code.
Writes go to a temporary file in the same directory and are renamed into place (see
:mod:`snnconvert.atomic`); a new file never replaces one another process created meanwhile.

Integrity and bounds (format v2): the manifest records ``tensors_sha256``, a SHA-256 over every
tensor's name, dtype, shape and bytes, and ``models_sha256`` over the model specs; a load
recomputes both and refuses a file whose data changed. Every field is type-checked, nesting and
config values are bounded, and each model is first built on the ``meta`` device so that its
size is known before any memory is allocated.

What the checksums are for: **integrity, not authenticity.** They catch a truncated copy, a
flipped bit or a half-finished edit. Anyone who crafts a file can recompute them, so they prove
nothing about who wrote it. Safety against a crafted file comes from the reader itself: tensors
are read with ``weights_only=True`` (no pickled code), model structures are JSON checked against
allow-lists of module classes and graph operations, and every string that torch.fx would place
into generated Python source is checked to be a plain identifier before a graph is built
(:mod:`snnconvert.serialize`). Format v1 files carry no checksum: they are refused unless the
caller passes ``allow_unchecked=True`` (CLI: ``snnconvert --allow-unchecked-artifacts ...``).
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import platform
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from snnconvert._version import __version__
from snnconvert.atomic import release_name, write_atomically
from snnconvert.errors import SnnConvertError
from snnconvert.limits import (
    MAX_EXTRA_BUFFER_BYTES,
    MAX_TIME_STEPS,
    TIME_KEYS,
    check_config_values,
    check_manifest_sizes,
    check_nesting,
    require_regular_file,
    shorten,
)
from snnconvert.manifest_check import check_snn_info, validate_manifest
from snnconvert.safe_zip import NotATorchFile, check_torch_zip
from snnconvert.serialize import module_from_spec, module_spec

FORMAT = "snnconvert-artifact"
FORMAT_VERSION = 2
OLDEST_VERSION = 1
_BUILD_ERRORS = (TypeError, ValueError, RuntimeError, KeyError, AttributeError, IndexError, OverflowError,
                 AssertionError, NotImplementedError, RecursionError)
SUFFIX = ".snnc"


def _renamed_types(names: dict[str, str]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A model-structure migration that renames stored module types."""

    def migrate(spec: dict[str, Any]) -> dict[str, Any]:
        stack = [spec]
        while stack:
            item = stack.pop()
            if isinstance(item, dict):
                if isinstance(item.get("type"), str):
                    item["type"] = names.get(item["type"], item["type"])
                for field_name in ("children", "modules"):
                    children = item.get(field_name)
                    if isinstance(children, dict):
                        stack.extend(children.values())
        return spec

    return migrate


MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {
    1: _renamed_types({"MLIFInputEncoder": "RepeatEncoder"}),  # v1 -> v2: the M-LIF input encoder's new name
}
"""How a model structure of format version v becomes one of version v + 1 (applied in order on read)."""


def migrate_spec(spec: dict[str, Any], version: int) -> dict[str, Any]:
    """A model structure stored at format ``version``, brought to :data:`FORMAT_VERSION`."""
    for step in range(version, FORMAT_VERSION):
        spec = MIGRATIONS[step](spec)
    return spec


class UncheckedArtifactError(SnnConvertError):
    """An artifact without checksums (format v1), refused unless explicitly allowed."""


@dataclass
class Artifact:
    """Models plus everything needed to interpret and reproduce them."""

    kind: str  # "quantized" | "snn"
    manifest: dict[str, Any]
    models: dict[str, nn.Module]
    extra_tensors: dict[str, Tensor] = field(default_factory=dict)


def library_versions() -> dict[str, str]:
    import numpy
    import torchvision

    return {
        "snnconvert": __version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
    }


def new_manifest(kind: str, **content: Any) -> dict[str, Any]:
    return {
        "kind": kind,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": library_versions(),
        **content,
    }


def tensors_digest(tensors: dict[str, Tensor]) -> str:
    """SHA-256 over the names, dtypes, shapes and bytes of ``tensors`` (in name order)."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        value = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}\0{value.dtype}\0{tuple(value.shape)}\0".encode())
        if value.numel():
            digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _specs_digest(texts: Iterable[tuple[str, str]]) -> str:
    digest = hashlib.sha256()
    for name, text in sorted(texts):
        digest.update(f"{name}\0{text}\0".encode())
    return digest.hexdigest()


def save_artifact(artifact: Artifact, path: str | Path) -> Path:
    """Write ``artifact`` atomically (temp file + rename); returns the path written.

    An existing file at ``path`` is replaced; a ``path`` that does not exist yet is created
    without replacing a file another process creates meanwhile (the next free name
    ``<stem>-N.snnc`` is taken instead, and returned)."""
    path = Path(path)
    try:
        return _save(artifact, path)
    except BaseException:
        release_name(path)  # a name reserved for this write (workspace.new_artifact_path)
        raise


def _save(artifact: Artifact, path: Path) -> Path:
    exclusive = not os.path.lexists(path)
    payload: dict[str, Any] = {"format": FORMAT, "version": FORMAT_VERSION, "models": {}, "tensors": {}}
    for name, model in artifact.models.items():
        payload["models"][name] = json.dumps(module_spec(model))
        for key, value in model.state_dict().items():
            payload["tensors"][f"{name}/{key}"] = value.detach().cpu().clone()
    for key, value in artifact.extra_tensors.items():
        payload["tensors"][f"extra/{key}"] = value.detach().cpu().clone()
    for name, text in payload["models"].items():  # whatever the reader refuses, the writer refuses first
        try:
            _check_specs(path, name, json.loads(text))
        except SnnConvertError as exc:
            reason = getattr(exc, "what", None) or str(exc)
            raise SnnConvertError(f"cannot save {shorten(str(path), 200)}: model '{shorten(name, 40)}' is beyond "
                                  f"what an artifact may hold ({shorten(reason, 200)})") from None
    manifest = dict(artifact.manifest, kind=artifact.kind, tensors_sha256=tensors_digest(payload["tensors"]),
                    models_sha256=_specs_digest(payload["models"].items()))
    try:
        check_manifest_sizes(manifest, "the manifest")
        validate_manifest(json.loads(json.dumps(manifest, allow_nan=True, default=str)), "the manifest")
        for name, model in artifact.models.items():
            if isinstance(getattr(model, "info", None), dict):
                check_snn_info(json.loads(json.dumps(model.info, allow_nan=True, default=str)), "the network",
                               f"models.{shorten(name, 40)}.info", "stored network field")
    except SnnConvertError as exc:
        reason = str(exc).split("; the artifact is damaged")[0]
        raise SnnConvertError(f"cannot save {shorten(str(path), 200)}: {reason}") from None
    try:
        payload["manifest"] = json.dumps(manifest, allow_nan=True)
    except (TypeError, ValueError) as exc:
        raise SnnConvertError(f"artifact manifest is not JSON-serializable: {shorten(str(exc))}") from exc
    return write_atomically(path, lambda handle: torch.save(payload, handle), exclusive=exclusive)


class _SpecProblem(SnnConvertError):
    """A model spec outside the format's bounds (reader: a damaged file; writer: cannot save)."""


def _damaged(path: Path, what: str) -> SnnConvertError:
    error = _SpecProblem(f"{shorten(str(path), 200)} is a damaged snnconvert artifact: {what}; "
                         "re-create it with the command that wrote it")
    error.what = what
    return error


def _read_payload(path: Path) -> dict[str, Any]:
    require_regular_file(path, "artifact")
    try:
        check_torch_zip(path, "artifact")  # sizes from the zip directory, before anything is inflated
    except NotATorchFile:
        raise SnnConvertError(f"{path} is not a readable snnconvert artifact (corrupt or truncated)") from None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise SnnConvertError(
            f"{path} contains pickled Python objects that are not plain tensors; "
            "snnconvert never unpickles code"
        ) from exc
    except Exception as exc:  # noqa: BLE001 - any failure to parse untrusted bytes is a corrupt file
        raise SnnConvertError(f"{path} is not a readable snnconvert artifact (corrupt or truncated)") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise SnnConvertError(f"{path} is not an snnconvert artifact")
    version = payload.get("version")
    if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
        raise SnnConvertError(
            f"{path} has artifact format v{version}, newer than this snnconvert "
            f"{__version__} reads (v{FORMAT_VERSION}); upgrade snnconvert"
        )
    if isinstance(version, bool) or not isinstance(version, int) or version < OLDEST_VERSION:
        raise _damaged(path, f"format version {shorten(version, 40)} is not a version "
                             f"({OLDEST_VERSION}..{FORMAT_VERSION})")
    for key, kind in (("manifest", str), ("models", dict), ("tensors", dict)):
        if not isinstance(payload.get(key), kind):
            raise _damaged(path, f"field '{key}' is {'missing' if key not in payload else 'not a ' + kind.__name__}")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in payload["models"].items()):
        raise _damaged(path, "'models' must map names to JSON text")
    for key, value in payload["tensors"].items():
        if not isinstance(key, str) or not isinstance(value, Tensor) or value.layout != torch.strided \
                or value.device.type != "cpu":
            raise _damaged(path, f"tensor entry {shorten(key, 60)} is not a plain tensor")
    return payload


def _parse_json(path: Path, text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError, UnicodeError) as exc:
        raise _damaged(path, f"{what} is not valid JSON") from exc


def _check_specs(path: Path, name: str, spec: Any) -> None:
    """Type and bound checks of one model spec before anything is built."""
    check_nesting(spec, f"{path}: model '{shorten(name, 40)}'")
    stack = [spec]
    while stack:
        item = stack.pop()
        if not isinstance(item, dict) or not isinstance(item.get("type"), str):
            raise _damaged(path, f"model '{shorten(name, 40)}' has a module entry without a type")
        config = item.get("config", {})
        if not isinstance(config, dict):
            raise _damaged(path, f"the config of a {shorten(item['type'], 40)} is not a mapping")
        check_config_values(config, f"{path}: the config of a {shorten(item['type'], 40)}")
        for key in TIME_KEYS:
            value = config.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_TIME_STEPS:
                raise _damaged(path, f"{item['type']} has {key}={value} time steps (most {MAX_TIME_STEPS})")
        for field_name in ("children", "modules"):
            children = item.get(field_name, {})
            if not isinstance(children, dict):
                raise _damaged(path, f"'{field_name}' of a {shorten(item['type'], 40)} is not a mapping")
            stack.extend(children.values())
        if item["type"] == "GraphModule" and not isinstance(item.get("graph"), list):
            raise _damaged(path, f"model '{shorten(name, 40)}' has a graph that is not a list of nodes")


def _build(path: Path, name: str, spec: dict, stored_bytes: int) -> nn.Module:
    """Build model ``name``: first on the meta device (no memory) to bound its size, then for real."""
    label = shorten(name, 40)
    try:
        with torch.device("meta"):
            probe = module_from_spec(spec)
        tensors = {id(t): t for t in (*probe.parameters(), *probe.buffers())}
        needed = sum(t.numel() * t.element_size() for t in tensors.values())
        del probe, tensors
    except SnnConvertError as exc:
        raise SnnConvertError(f"{path}: model '{label}': {exc}") from None
    except _BUILD_ERRORS as exc:
        raise _damaged(path, f"model '{label}' cannot be built from its configs ({shorten(str(exc))})") from None
    if needed > stored_bytes + MAX_EXTRA_BUFFER_BYTES:
        raise _damaged(path, f"model '{label}' would allocate {needed / 2**20:.0f} MiB, far more than the "
                             f"{stored_bytes / 2**20:.0f} MiB of tensors it stores")
    try:
        return module_from_spec(spec)
    except SnnConvertError as exc:
        raise SnnConvertError(f"{path}: model '{label}': {exc}") from None
    except _BUILD_ERRORS as exc:
        raise _damaged(path, f"model '{label}' cannot be built from its configs ({shorten(str(exc))})") from None


def load_artifact(path: str | Path, *, allow_unchecked: bool = False) -> Artifact:
    """Read an artifact written by :func:`save_artifact` (never executes pickled code); every
    problem with the file is a one-line :class:`SnnConvertError`. A format v1 file has no
    checksums and is refused (:class:`UncheckedArtifactError`) unless ``allow_unchecked``."""
    path = Path(path)
    payload = _read_payload(path)
    if payload["version"] < 2 and not allow_unchecked:
        raise UncheckedArtifactError(
            f"{shorten(str(path), 200)} is a format v{payload['version']} artifact without checksums, so its "
            "integrity cannot be checked; re-create it with this snnconvert, or load it with allow_unchecked=True "
            "(CLI: snnconvert --allow-unchecked-artifacts COMMAND) if you trust where it came from")
    manifest = _parse_json(path, payload["manifest"], "the manifest")
    if not isinstance(manifest, dict):
        raise _damaged(path, "the manifest is not a mapping")
    check_nesting(manifest, f"{path}: the manifest", limit=64)
    check_manifest_sizes(manifest, f"{shorten(str(path), 200)}: the manifest")
    validate_manifest(manifest, shorten(str(path), 200))
    tensors: dict[str, Tensor] = payload["tensors"]
    if payload["version"] >= 2:
        expected = manifest.get("tensors_sha256")
        if not isinstance(expected, str) or not isinstance(manifest.get("models_sha256"), str):
            raise _damaged(path, "the manifest has no checksum")
        if tensors_digest(tensors) != expected:
            raise _damaged(path, "tensor data does not match its SHA-256 checksum")
        if _specs_digest(payload["models"].items()) != manifest["models_sha256"]:
            raise _damaged(path, "model structures do not match their SHA-256 checksum")
    specs = {name: _parse_json(path, text, f"the structure of model '{shorten(name, 40)}'")
             for name, text in payload["models"].items()}
    for name, spec in specs.items():
        _check_specs(path, name, spec)
    specs = {name: migrate_spec(spec, payload["version"]) for name, spec in specs.items()}
    models = {}
    for name, spec in specs.items():
        prefix = f"{name}/"
        state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        model = _build(path, name, spec, sum(v.numel() * v.element_size() for v in state.values()))
        try:
            model.load_state_dict(state, strict=True, assign=True)  # keeps the stored dtypes (float64 SNNs)
        except (RuntimeError, TypeError, ValueError, KeyError, AttributeError) as exc:
            raise SnnConvertError(f"{path}: tensors of model '{shorten(name, 40)}' do not match its structure") \
                from exc
        models[name] = model.eval()
    for name, model in models.items():  # the network's own info: energy constants, latency, names
        if isinstance(getattr(model, "info", None), dict):
            check_snn_info(model.info, shorten(str(path), 200), f"models.{shorten(name, 40)}.info",
                           "stored network field")
    extra = {k[len("extra/"):]: v for k, v in tensors.items() if k.startswith("extra/")}
    kind = manifest.get("kind", "unknown")
    return Artifact(kind if isinstance(kind, str) else "unknown", manifest, models, extra)
