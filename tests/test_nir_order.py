"""The NIR export's depth-first ordering (snnconvert.export.nir_order): a graph whose depth-first
pre-order (what ``nirtorch.load`` executes for norse and sinabs) is its topological order, built
from zero-weight nodes that add exactly 0. Hand-built graphs, hand-derived shapes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from snnconvert.errors import SnnConvertError
from snnconvert.export.nir_order import ORDERING_METADATA, _axis, order_depth_first, output_shape
from snnconvert.nir_in import NirFile, without_ordering_nodes

nir = pytest.importorskip("nir")


def _pre_order(nodes: dict, edges: list[tuple[str, str]]) -> list[str]:
    """A depth-first walk from the Input, each node's children in the order of the edges, every
    node listed when first reached (the rule ``nirtorch.load`` executes by)."""
    children: dict[str, list[str]] = {name: [] for name in nodes}
    for a, b in edges:
        children[a].append(b)
    seen: list[str] = []

    def visit(name: str) -> None:
        if name in seen:
            return
        seen.append(name)
        for child in children[name]:
            visit(child)

    visit(next(name for name, node in nodes.items() if isinstance(node, nir.Input)))
    return seen


def _conv(cin: int, cout: int, size: int, kernel: int, stride: int, padding: int):
    return nir.Conv2d(input_shape=np.array([size, size]), weight=np.ones((cout, cin, kernel, kernel), np.float32),
                      stride=np.array([stride, stride]), padding=np.array([padding, padding]),
                      dilation=np.array([1, 1]), groups=1, bias=np.zeros(cout, np.float32))


def _if(shape: tuple[int, ...]):
    return nir.IF(r=np.ones(shape), v_threshold=np.ones(shape), v_reset=np.zeros(shape))


def _residual() -> tuple[dict, list[tuple[str, str]]]:
    """input (3, 8, 8) -> conv_a (stride 2) -> if_a -> conv_b -> join, input -> short (1x1, stride 2)
    -> join; join -> flat -> fc -> output: a downsampling residual block."""
    nodes = {"input": nir.Input(input_type={"input": np.array([3, 8, 8])}),
             "conv_a": _conv(3, 4, 8, 3, 2, 1), "if_a": _if((4, 4, 4)), "conv_b": _conv(4, 4, 4, 3, 1, 1),
             "short": _conv(3, 4, 8, 1, 2, 0), "join": _if((4, 4, 4)),
             "flat": nir.Flatten(input_type={"input": np.array([4, 4, 4])}, start_dim=-3, end_dim=-1),
             "fc": nir.Affine(weight=np.ones((2, 64), np.float32), bias=np.zeros(2, np.float32)),
             "output": nir.Output(output_type={"output": np.array([2])})}
    edges = [("input", "conv_a"), ("conv_a", "if_a"), ("if_a", "conv_b"), ("input", "short"),
             ("conv_b", "join"), ("short", "join"), ("join", "flat"), ("flat", "fc"), ("fc", "output")]
    return nodes, edges


def test_shapes_follow_the_primitives() -> None:
    nodes, _ = _residual()
    assert output_shape(nodes["input"], ()) == (3, 8, 8)
    assert output_shape(nodes["conv_a"], (3, 8, 8)) == (4, 4, 4)  # (8 + 2 - 2 - 1) // 2 + 1
    assert output_shape(nodes["short"], (3, 8, 8)) == (4, 4, 4)  # (8 - 1) // 2 + 1
    assert output_shape(nodes["flat"], (4, 4, 4)) == (64,)
    assert output_shape(nodes["fc"], (64,)) == (2,)
    assert output_shape(nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]),
                                      padding=np.array([0, 0])), (4, 4, 4)) == (4, 2, 2)


@pytest.mark.parametrize("size_in,size_out,expected", [
    (8, 8, (1, 1, 0)),     # the same size: a 1x1 kernel
    (32, 16, (1, 2, 0)),   # (32 - 1) // 2 + 1 = 16
    (10, 6, (2, 2, 1)),    # (10 + 2 - 1 - 1) // 2 + 1 = 6; no stride-1 or 1x1 stride-2 fit
    (16, 32, (1, 1, 8)),   # growing: 16 + 2 * 8 = 32
    (5, 8, (2, 1, 2)),     # growing by an odd count: 5 + 4 - 2 + 1 = 8
])
def test_a_zero_convolution_maps_any_size_to_any_other(size_in: int, size_out: int, expected) -> None:
    kernel, stride, padding = _axis(size_in, size_out)
    assert (kernel, stride, padding) == expected
    out = F.conv2d(torch.zeros(1, 1, size_in, size_in), torch.zeros(1, 1, kernel, kernel), stride=stride,
                   padding=padding)
    assert out.shape[-1] == size_out


def test_the_plain_graph_runs_the_sum_before_its_shortcut_depth_first() -> None:
    """Why the ordering exists: the walk reaches ``join`` from ``conv_b`` before ``short`` ran."""
    nodes, edges = _residual()
    walk = _pre_order(nodes, edges)
    assert walk.index("join") < walk.index("short")


def test_ordering_makes_the_depth_first_walk_the_topological_order() -> None:
    nodes, edges = _residual()
    ordered, new_edges, added = order_depth_first(nodes, edges)
    assert added == ["order_conv_b_short"]
    assert _pre_order(ordered, new_edges) == ["input", "conv_a", "if_a", "conv_b", "order_conv_b_short", "short",
                                              "join", "flat", "fc", "output"]
    assert set(edges) <= set(new_edges) and set(new_edges) - set(edges) == {("conv_b", "order_conv_b_short"),
                                                                            ("order_conv_b_short", "short")}
    zero = ordered["order_conv_b_short"]  # from conv_b's (4, 4, 4) to short's input (3, 8, 8): 4 + 2*2 = 8
    assert zero.weight.shape == (3, 4, 1, 1) and not zero.weight.any() and not zero.bias.any()
    assert tuple(zero.padding) == (2, 2) and tuple(zero.stride) == (1, 1)
    assert ORDERING_METADATA in zero.metadata
    out = F.conv2d(torch.ones(1, 4, 4, 4), torch.from_numpy(zero.weight), stride=1, padding=2)
    assert out.shape == (1, 3, 8, 8) and not out.any()  # adds exactly 0 to short's input


def test_a_chain_needs_no_ordering_nodes() -> None:
    nodes = {"input": nir.Input(input_type={"input": np.array([4])}),
             "fc": nir.Affine(weight=np.ones((3, 4), np.float32), bias=np.zeros(3, np.float32)),
             "lif": _if((3,)), "output": nir.Output(output_type={"output": np.array([3])})}
    edges = [("input", "fc"), ("fc", "lif"), ("lif", "output")]
    ordered, new_edges, added = order_depth_first(nodes, edges)
    assert added == [] and list(ordered) == list(nodes) and new_edges == edges


def test_an_order_no_zero_node_can_make_is_refused_by_name() -> None:
    """Two flat branches from a map input: the second branch starts with a Flatten of a 3-d map
    and the first ends flat, and no zero Conv2d or Linear maps a vector to a map."""
    flat = {"start_dim": -3, "end_dim": -1, "input_type": {"input": np.array([1, 2, 2])}}
    nodes = {"input": nir.Input(input_type={"input": np.array([1, 2, 2])}), "flat1": nir.Flatten(**flat),
             "fc1": nir.Affine(weight=np.ones((2, 4), np.float32), bias=np.zeros(2, np.float32)),
             "flat2": nir.Flatten(**flat),
             "fc2": nir.Affine(weight=np.ones((2, 4), np.float32), bias=np.zeros(2, np.float32)),
             "join": _if((2,)), "output": nir.Output(output_type={"output": np.array([2])})}
    edges = [("input", "flat1"), ("flat1", "fc1"), ("input", "flat2"), ("flat2", "fc2"), ("fc1", "join"),
             ("fc2", "join"), ("join", "output")]
    with pytest.raises(SnnConvertError, match="cannot order flat2 after fc1 .*plain order"):
        order_depth_first(nodes, edges)


def test_the_reader_drops_only_zero_ordering_nodes_that_add_nothing() -> None:
    nodes, edges = _residual()
    ordered, new_edges, _ = order_depth_first(nodes, edges)
    kept = without_ordering_nodes(NirFile(ordered, new_edges))
    assert list(kept.nodes) == list(nodes) and set(kept.edges) == set(edges)
    ordered["order_conv_b_short"].weight[0, 0, 0, 0] = 1.0  # marked, but it adds something: kept
    assert "order_conv_b_short" in without_ordering_nodes(NirFile(ordered, new_edges)).nodes
    unmarked = dict(ordered)
    unmarked["order_conv_b_short"] = _conv(4, 3, 4, 1, 1, 2)
    unmarked["order_conv_b_short"].weight[:] = 0.0  # zero, but not marked: a graph's own node, kept
    assert "order_conv_b_short" in without_ordering_nodes(NirFile(unmarked, new_edges)).nodes
