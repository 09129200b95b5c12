"""Fuzz weight checkpoints: arbitrary bytes and odd containers give a clean one-line error."""

from __future__ import annotations

import torch
from fuzzing import CHECKPOINTS, attempt, workdir
from hypothesis import given
from hypothesis import strategies as st

from snnconvert.ingest.checkpoint import read_checkpoint
from snnconvert.ingest.loader import load_model

LENET = load_model("lenet5", "random").module.state_dict()
special = st.sampled_from([0.0, 1.0, -2.5, float("nan"), float("inf"), -float("inf"), 1e30, 1e-30])
dtypes = st.sampled_from([torch.float32, torch.float64, torch.float16, torch.int64, torch.uint8, torch.bool])


@st.composite
def tensors(draw) -> torch.Tensor:
    shape = draw(st.lists(st.integers(0, 4), max_size=3))
    value = torch.full(shape, draw(special)) if draw(st.booleans()) else torch.rand(shape)
    return value.to(draw(dtypes))


@st.composite
def checkpoints(draw) -> object:
    """A lenet5 state dict with some entries replaced, renamed, nested or wrapped."""
    state = dict(LENET)
    keys = sorted(state)
    for _ in range(draw(st.integers(0, 3))):
        key = draw(st.sampled_from(keys))
        action = draw(st.sampled_from(["tensor", "drop", "other", "rename"]))
        if action == "tensor":
            state[key] = draw(tensors())
        elif action == "drop":
            state.pop(key, None)
        elif action == "other":
            state[key] = draw(st.none() | st.integers() | st.text(max_size=10))
        else:
            state[draw(st.text(max_size=20))] = state.pop(key, torch.zeros(1))
    wrapper = draw(st.sampled_from(["bare", "state_dict", "model", "module.", "list", "tensor"]))
    if wrapper == "state_dict":
        return {"state_dict": state, "epoch": draw(st.integers())}
    if wrapper == "model":
        return {"model": {"state_dict": state}}
    if wrapper == "module.":
        return {f"module.{k}": v for k, v in state.items()}
    if wrapper == "list":
        return list(state.values())
    if wrapper == "tensor":
        return draw(tensors())
    return state


@given(data=st.binary(max_size=512), head=st.sampled_from([b"", b"PK\x03\x04", b"\x80\x02", b"\x80\x04"]))
def test_arbitrary_bytes_as_a_checkpoint(data: bytes, head: bytes) -> None:
    with workdir() as folder:
        path = folder / "w.pt"
        path.write_bytes(head + data)
        attempt(lambda: read_checkpoint(path), folder, keep=("w.pt",), category=CHECKPOINTS, inputs=[path])


@given(obj=checkpoints())
def test_odd_checkpoint_contents(obj: object) -> None:
    with workdir() as folder:
        path = folder / "w.pt"
        torch.save(obj, path)
        attempt(lambda: load_model("lenet5", str(path)), folder, keep=("w.pt",), category=CHECKPOINTS, inputs=[path])


@given(data=st.binary(max_size=256), head=st.sampled_from([b"", b"PK\x03\x04", b"\x80\x02"]))
def test_arbitrary_bytes_as_a_finetune_checkpoint(data: bytes, head: bytes) -> None:
    from snnconvert.finetune.checkpoint import load_checkpoint

    with workdir() as folder:
        path = folder / "finetune-checkpoint.pt"
        path.write_bytes(head + data)
        attempt(lambda: load_checkpoint(path), folder, keep=(path.name,), category=CHECKPOINTS, inputs=[path])
