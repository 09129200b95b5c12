"""Fuzz artifacts: flipped bytes, truncations and mutated fields give a clean one-line error."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from fuzzing import ARTIFACTS, attempt, workdir
from hypothesis import given
from hypothesis import strategies as st
from torch import fx, nn

from snnconvert.artifact import FORMAT, FORMAT_VERSION, Artifact, _specs_digest, load_artifact, save_artifact
from snnconvert.artifact import tensors_digest as digest


def _good_bytes() -> bytes:
    with workdir() as folder:
        torch.manual_seed(0)
        model = fx.symbolic_trace(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 3)))
        path = save_artifact(Artifact("quantized", {"model": {"name": "fuzz"}}, {"float": model}), folder / "a.snnc")
        return path.read_bytes()


GOOD = _good_bytes()

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@given(flips=st.lists(st.tuples(st.integers(0, len(GOOD) - 1), st.integers(1, 255)), min_size=1, max_size=8),
       cut=st.none() | st.integers(0, len(GOOD)))
def test_flipped_or_truncated_artifacts(flips: list[tuple[int, int]], cut: int | None) -> None:
    data = bytearray(GOOD)
    for position, mask in flips:
        data[position] ^= mask
    if cut is not None:
        data = data[:cut]
    with workdir() as folder:
        path = folder / "a.snnc"
        path.write_bytes(bytes(data))
        attempt(lambda: load_artifact(path), folder, keep=("a.snnc",), category=ARTIFACTS, inputs=[path])


def _spec_strategy() -> st.SearchStrategy[dict]:
    types = st.sampled_from(["Linear", "Conv2d", "ReLU", "TSANeuron", "IFNeuron", "MLIFNeuron", "GraphModule",
                             "SpikingNetwork", "BatchNorm2d", "ActQuant", "NoSuchModule"])
    configs = st.dictionaries(st.sampled_from(["in_features", "out_features", "bias", "in_channels", "out_channels",
                                               "kernel_size", "T", "Tc", "Ts", "S", "bits", "channels",
                                               "residual_bins", "num_features", "coding", "info", "x"]),
                              json_values | st.integers(0, 10**7), max_size=5)
    return st.fixed_dictionaries({"type": types, "config": configs},
                                 optional={"graph": json_values, "modules": json_values, "children": json_values})


@given(field=st.sampled_from(["format", "version", "manifest", "models", "tensors", "spec", "manifest-json"]),
       value=json_values, spec=_spec_strategy(), fix_checksum=st.booleans())
def test_mutated_artifact_fields(field: str, value, spec: dict, fix_checksum: bool) -> None:
    model = nn.Linear(2, 2)
    models = {"float": json.dumps({"type": "Linear", "config": {"in_features": 2, "out_features": 2, "bias": True}})}
    tensors = {f"float/{k}": v for k, v in model.state_dict().items()}
    manifest: dict = {"kind": "quantized"}
    payload: dict = {"format": FORMAT, "version": FORMAT_VERSION, "models": models, "tensors": tensors}
    if field == "spec":
        models["float"] = json.dumps(spec)
    elif field == "manifest-json":
        manifest["model"] = value
    else:
        payload[field] = value
    if fix_checksum and isinstance(payload.get("tensors"), dict) and isinstance(payload.get("models"), dict):
        try:
            manifest["tensors_sha256"] = digest(payload["tensors"])
            manifest["models_sha256"] = _specs_digest(payload["models"].items())
        except (TypeError, AttributeError, RuntimeError):
            pass
    payload.setdefault("manifest", json.dumps(manifest))
    with workdir() as folder:
        path = Path(folder) / "m.snnc"
        torch.save(payload, path)
        attempt(lambda: load_artifact(path), folder, keep=("m.snnc",), category=ARTIFACTS, inputs=[path])
