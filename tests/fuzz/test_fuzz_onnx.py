"""ONNX files (issue 29, classes 1 and 3): flipped bytes, a marker payload in every name of the graph,
external data that lies about its size or points elsewhere, and files that block a reader."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from fuzzing import LARGE, ONNX, PAYLOADS, attempt, cli, workdir
from hypothesis import given
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from snnconvert.ingest.loader import load_model


def tiny_model() -> onnx.ModelProto:
    """1x1x8x8 -> Conv(2, 3x3) -> Relu -> Flatten -> Gemm(72 -> 3)."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((2, 1, 3, 3)).astype(np.float32), "conv_w"),
             numpy_helper.from_array(np.zeros(2, np.float32), "conv_b"),
             numpy_helper.from_array(rng.standard_normal((3, 72)).astype(np.float32), "fc_w"),
             numpy_helper.from_array(np.zeros(3, np.float32), "fc_b")]
    nodes = [helper.make_node("Conv", ["input", "conv_w", "conv_b"], ["c"], name="conv", kernel_shape=[3, 3]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Flatten", ["r"], ["f"], name="flatten", axis=1),
             helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["logits"], name="fc", transB=1)]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1, 8, 8])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="fuzz")
    model.ir_version = 8
    helper.set_model_props(model, {"note": "x"})
    return model


GOOD = tiny_model().SerializeToString()


def _load(path: Path) -> None:
    load_model(str(path))


def test_the_tiny_model_loads() -> None:
    with workdir() as folder:
        path = folder / "m.onnx"
        path.write_bytes(GOOD)
        loaded = attempt(lambda: load_model(str(path)), folder, keep=("m.onnx",), category=ONNX, inputs=[path])
        assert loaded.num_classes == 3


@given(flips=st.lists(st.tuples(st.integers(0, len(GOOD) - 1), st.integers(1, 255)), min_size=1, max_size=6),
       cut=st.none() | st.integers(0, len(GOOD)))
def test_flipped_or_truncated_onnx(flips: list[tuple[int, int]], cut: int | None) -> None:
    data = bytearray(GOOD)
    for position, mask in flips:
        data[position] ^= mask
    with workdir() as folder:
        path = folder / "m.onnx"
        path.write_bytes(bytes(data[:cut] if cut is not None else data))
        attempt(lambda: _load(path), folder, keep=("m.onnx",), category=ONNX, inputs=[path])


@given(data=st.binary(max_size=400), head=st.sampled_from([b"", b"\x08\x08\x12\x04fuzz", b"PK\x03\x04"]))
def test_arbitrary_bytes_as_onnx(data: bytes, head: bytes) -> None:
    with workdir() as folder:
        path = folder / "m.onnx"
        path.write_bytes(head + data)
        attempt(lambda: _load(path), folder, keep=("m.onnx",), category=ONNX, inputs=[path])


def _renamed(model: onnx.ModelProto, old: str, new: str) -> None:
    """Rename value ``old`` to ``new`` everywhere in the graph."""
    graph = model.graph
    for node in graph.node:
        node.input[:] = [new if n == old else n for n in node.input]
        node.output[:] = [new if n == old else n for n in node.output]
    for items in (graph.input, graph.output, graph.initializer, graph.value_info):
        for item in items:
            if item.name == old:
                item.name = new


SLOTS = ["value input", "value c", "value f", "value logits", "value conv_w", "value fc_b", "node name conv",
         "node name fc", "op_type relu", "domain relu", "graph name", "producer", "doc string", "metadata key",
         "metadata value", "attribute name"]


def _inject(slot: str, text: str) -> onnx.ModelProto:
    model = tiny_model()
    kind, _, which = slot.rpartition(" ")
    nodes = {n.name: n for n in model.graph.node}
    if kind == "value":
        _renamed(model, which, text)
    elif kind == "node name":
        nodes[which].name = text
    elif kind == "op_type":
        nodes[which].op_type = text
    elif kind == "domain":
        nodes[which].domain = text
    elif slot == "graph name":
        model.graph.name = text
    elif slot == "producer":
        model.producer_name = text
    elif slot == "doc string":
        model.graph.doc_string = text
    elif slot == "metadata key":
        model.metadata_props[0].key = text
    elif slot == "metadata value":
        model.metadata_props[0].value = text
    elif slot == "attribute name":
        nodes["flatten"].attribute[0].name = text
    return model


@pytest.mark.parametrize("n", range(len(PAYLOADS)))
@pytest.mark.parametrize("slot", SLOTS)
def test_payload_in_every_onnx_name(slot: str, n: int) -> None:
    with workdir() as folder:
        path = folder / "m.onnx"
        path.write_bytes(_inject(slot, PAYLOADS[n]).SerializeToString())

        def load_and_run() -> None:
            import torch

            loaded = load_model(str(path))
            loaded.module(torch.zeros(1, 1, 8, 8))

        attempt(load_and_run, folder, keep=("m.onnx",), category=ONNX, inputs=[path])


def _external(location: str, length: int | None, offset: int | None = None):
    def make(folder: Path) -> Path:
        model = tiny_model()
        tensor = next(t for t in model.graph.initializer if t.name == "fc_w")
        tensor.ClearField("raw_data")
        tensor.ClearField("float_data")
        tensor.data_location = TensorProto.EXTERNAL
        entries = {"location": location}
        if length is not None:
            entries["length"] = str(length)
        if offset is not None:
            entries["offset"] = str(offset)
        for key, value in entries.items():
            tensor.external_data.add(key=key, value=value)
        (folder / "w.bin").write_bytes(np.zeros(216, np.float32).tobytes())
        path = folder / "m.onnx"
        path.write_bytes(model.SerializeToString())
        return path
    return make


def _special(kind: str):
    def make(folder: Path) -> Path:
        path = folder / "m.onnx"
        if kind == "fifo":
            os.mkfifo(path)
        elif kind == "dir":
            path.mkdir()
        elif kind == "sparse":
            with open(path, "wb") as handle:
                handle.write(GOOD)
                handle.truncate(4 << 30)
        elif kind == "empty":
            path.write_bytes(b"")
        else:
            path.symlink_to(kind)
        return path
    return make


HOSTILE = {
    "external length 2^40": _external("w.bin", 1 << 40),
    "external length past the file": _external("w.bin", 4096),
    "external offset 2^62": _external("w.bin", 288, 1 << 62),
    "external negative length": _external("w.bin", -5),
    "external data outside the folder": _external("../../../../etc/passwd", None),
    "external data absolute path": _external("/etc/hostname", None),
    "external data is /dev/zero": _external("/dev/zero", 288),
    "external data missing": _external("nope.bin", 288),
    "FIFO": _special("fifo"), "directory": _special("dir"), "4 GiB sparse file": _special("sparse"),
    "empty file": _special("empty"), "link to /dev/zero": _special("/dev/zero"),
    "dangling link": _special("/nonexistent/m.onnx"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_onnx_files(name: str) -> None:
    with workdir() as folder:
        path = HOSTILE[name](folder)
        inputs = [p for p in folder.iterdir() if p.name != "m.onnx" or name != "FIFO"]
        attempt(lambda: _load(path), folder, keep=tuple(os.listdir(folder)), category=ONNX, inputs=inputs,
                expect="refuse")


THROUGH_CLI = sorted(HOSTILE) if LARGE else ["FIFO", "external length 2^40", "link to /dev/zero"]


@pytest.mark.parametrize("name", THROUGH_CLI)
def test_hostile_onnx_files_through_quantize(name: str) -> None:
    with workdir() as folder:
        path = HOSTILE[name](folder)
        keep = tuple(os.listdir(folder))
        os.chdir(folder)
        try:
            attempt(lambda: cli(["quantize", path.name, "--data", "digits", "--calib-limit", "8", "--eval-limit", "0",
                                 "--out", "run"]),
                    folder, keep=keep, category=ONNX, expect="refuse")
        finally:
            os.chdir("/")
