"""The snnconvert artifact: a versioned file with a manifest, model structures and tensors.

Layout (a ``torch.save`` zip of plain containers, read back with ``weights_only=True``)::

    {"format": "snnconvert-artifact", "version": 1,
     "manifest": "<JSON>",                # source, config, versions, data, metrics, ...
     "models": {"float": "<JSON spec>", "quantized": "<JSON spec>", ...},
     "tensors": {"float/conv1.weight": Tensor, ..., "extra/<name>": Tensor}}

Model structures are JSON (see :mod:`snnconvert.serialize`), so loading never unpickles code.
Writes go to a temporary file in the same directory and are renamed into place.
"""

from __future__ import annotations

import json
import pickle
import platform
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from snnconvert._version import __version__
from snnconvert.atomic import write_atomically
from snnconvert.errors import SnnConvertError
from snnconvert.serialize import module_from_spec, module_spec

FORMAT = "snnconvert-artifact"
FORMAT_VERSION = 1
SUFFIX = ".snnc"


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


def save_artifact(artifact: Artifact, path: str | Path) -> Path:
    """Write ``artifact`` atomically (temp file + rename); returns the final path."""
    path = Path(path)
    manifest = dict(artifact.manifest, kind=artifact.kind)
    try:
        manifest_text = json.dumps(manifest, allow_nan=True)
    except TypeError as exc:
        raise SnnConvertError(f"artifact manifest is not JSON-serializable: {exc}") from exc
    payload: dict[str, Any] = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "manifest": manifest_text,
        "models": {},
        "tensors": {},
    }
    for name, model in artifact.models.items():
        payload["models"][name] = json.dumps(module_spec(model))
        for key, value in model.state_dict().items():
            payload["tensors"][f"{name}/{key}"] = value.detach().cpu().clone()
    for key, value in artifact.extra_tensors.items():
        payload["tensors"][f"extra/{key}"] = value.detach().cpu().clone()
    return write_atomically(path, lambda handle: torch.save(payload, handle))


def load_artifact(path: str | Path) -> Artifact:
    """Read an artifact written by :func:`save_artifact` (never executes pickled code)."""
    path = Path(path)
    if not path.is_file():
        raise SnnConvertError(f"artifact not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise SnnConvertError(
            f"{path} contains pickled Python objects that are not plain tensors; "
            "snnconvert never unpickles code"
        ) from exc
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as exc:
        raise SnnConvertError(f"{path} is not a readable snnconvert artifact (corrupt or truncated)") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise SnnConvertError(f"{path} is not an snnconvert artifact")
    version = payload.get("version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise SnnConvertError(
            f"{path} has artifact format v{version}, newer than this snnconvert "
            f"{__version__} reads (v{FORMAT_VERSION}); upgrade snnconvert"
        )
    try:
        manifest = json.loads(payload["manifest"])
        specs = {name: json.loads(text) for name, text in payload["models"].items()}
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise SnnConvertError(f"{path} has a damaged manifest") from exc
    tensors: dict[str, Tensor] = payload["tensors"]
    models = {}
    for name, spec in specs.items():
        model = module_from_spec(spec)
        prefix = f"{name}/"
        state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        try:
            model.load_state_dict(state, strict=True, assign=True)  # keeps the stored dtypes (float64 SNNs)
        except RuntimeError as exc:
            raise SnnConvertError(f"{path}: tensors of model '{name}' do not match its structure") from exc
        models[name] = model.eval()
    extra = {k[len("extra/"):]: v for k, v in tensors.items() if k.startswith("extra/")}
    return Artifact(manifest.get("kind", "unknown"), manifest, models, extra)
