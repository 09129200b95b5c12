"""NIR in: a trained SNN saved as a NIR graph (``.nir``, the ``nir`` package's HDF5 format) as
snnconvert's own :class:`~snnconvert.simulate.network.SpikingNetwork`, so that ``evaluate`` and
``finetune`` take it like a converted network.

What the graph means (NIR's equations, Euler-discretised with the step ``dt`` in seconds):

* ``IF(r, v_threshold, v_reset)``: ``v += dt * r * I`` each step, a spike when ``v`` reaches
  ``v_threshold``, then ``v <- v_reset``. It becomes the rate coding's
  :class:`~snnconvert.methods.rate.neuron.IFNeuron` with ``reset="zero"`` (threshold 1) and
  the factor ``dt * r / v_threshold`` folded into the synapse before it (or an explicit ``Gain``
  where no synapse can take it): the membrane in threshold units, the same spikes.
* ``LIF(tau, r, v_leak, v_threshold, v_reset)``: ``v <- v + dt/tau (v_leak - v + r I)``, i.e.
  ``v <- (1 - dt/tau) v + (dt r / tau) I``: the same IF neuron with a fixed ``leak = 1 - dt/tau``
  (per layer or per channel) and the input factor ``dt r / (tau v_threshold)``.
* ``CubaLIF(tau_syn, tau_mem, r, v_leak, v_threshold, v_reset, w_in)``: a synaptic current
  ``I <- (1 - dt/tau_syn) I + (dt/tau_syn) w_in x`` (from 0) that the LIF membrane above
  integrates, ``v <- (1 - dt/tau_mem) v + (dt r / tau_mem) I`` (norse's reading of the node):
  :class:`~snnconvert.methods.rate.neuron.CurrentIFNeuron` with the constant
  ``current_decay = 1 - dt/tau_syn`` and the input factor
  ``(dt/tau_mem) r (dt/tau_syn) w_in / v_threshold``.
* ``Affine`` / ``Linear`` -> ``SynapseLinear``, ``Conv2d`` -> ``SynapseConv2d`` (bias added at
  every step); ``Flatten`` (its dims exclude the batch axis); ``AvgPool2d``; ``SumPool2d`` (an
  average pool times k*k); ``Scale`` (per layer or per channel) -> ``Gain``. Edges into one node
  add up. Gains fold into the neighbouring weights (:func:`~snnconvert.codings.gains.fold_gains`).

Refused, all in one error grouped by primitive: every other primitive (``LI``,
``Threshold``, ``Delay``, ``Conv1d``, nested graphs, ...), ``v_reset`` other than 0, ``v_leak``
other than 0, thresholds <= 0, ``tau`` below ``dt``, parameters that vary within a channel of a
feature map, recurrent edges.

How it runs: the image is a constant current at every one of ``T`` steps
(:class:`~snnconvert.simulate.encoders.RepeatEncoder`) and the logits are the mean of the
output over the steps (:class:`~snnconvert.simulate.synapse.WeightedSumDecoder`); membranes
start at 0; a neuron fires at ``v >= v_threshold`` (norse fires at ``v > v_threshold``: only an
exact tie differs). Other input conventions (Poisson or other spike encodings of the image,
reading out spike counts of a last layer at another rate, per-sample state carried across
images) are not reproduced. ``T`` is not part of NIR: it comes from the caller or the graph
metadata ``"T"``; ``dt`` from the caller, the graph metadata ``"dt"``, else 1e-4 s (SpikingJelly's
default; norse writes its IF nodes with ``r = 1`` and wants ``dt = 1``). Node metadata that
snnconvert's own export writes (``"snnconvert": "IFNeuron"`` with ``"reset"`` and ``"init"``)
is honoured, so a network exported anyway with its soft reset reads back as the simulator ran it.

The file is read with bounds (:func:`read_nir`): every array's size is checked before it is read,
links, external and virtual datasets are refused, and nothing is unpickled.
"""

from __future__ import annotations

import copy
import io
import keyword
import math
import operator
import re
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import fx, nn

from snnconvert.errors import SnnConvertError
from snnconvert.export.nir import states_subtraction
from snnconvert.export.nir_order import ORDERING_METADATA
from snnconvert.limits import (
    MAX_MANIFEST_ITEMS,
    MAX_MANIFEST_STR,
    MAX_MANIFEST_VALUES,
    MAX_NESTING,
    MAX_ONNX_BYTES,
    MAX_TIME_STEPS,
    MAX_WEIGHT_MAGNITUDE,
    MEMORY_SHARE,
    available_memory_bytes,
    require_regular_file,
    shorten,
)
from snnconvert.manifest_check import one_line
from snnconvert.neurons.base import NIR_NEURON_READERS
from snnconvert.options import opt

if TYPE_CHECKING:
    from snnconvert.configs.nir import NirInputOptions
    from snnconvert.core import QuantizedModel
    from snnconvert.simulate.network import SpikingNetwork

SUFFIX = ".nir"
DEFAULT_DT = 1e-4
"""Seconds per step when neither the caller nor the file says (SpikingJelly's and most NIR tools')."""

MAX_NIR_FILE_BYTES = MAX_ONNX_BYTES
"""Largest ``.nir`` file read (the same budget as an ONNX model)."""
MAX_NIR_ARRAY_BYTES = MAX_ONNX_BYTES
"""Most bytes all arrays of a NIR file may take once read (decompressed), checked before reading."""
MAX_NIR_ITEMS = MAX_MANIFEST_VALUES
"""Most groups and datasets in a NIR file."""
MAX_NIR_NODES = MAX_MANIFEST_ITEMS
"""Most nodes (and edges) of a NIR graph."""
MAX_ACTIVATION_ELEMENTS = 1 << 28
"""Most values per image of the input or of any layer's output."""

SUPPORTED = ("Input", "Output", "Affine", "Linear", "Conv2d", "Flatten", "AvgPool2d", "SumPool2d", "Scale", "IF",
             "LIF", "CubaLIF")
"""The NIR primitives this loader maps."""

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_SHOWN_NAMES = 6  # node names listed per problem in the error


# ---------------------------------------------------------------------------- reading, with bounds


@dataclass
class NirFile:
    """A NIR graph as read from a file: its nodes (name -> NIR node, or :class:`Unreadable`), its
    edges and its metadata."""

    nodes: dict[str, Any]
    edges: list[tuple[str, str]]
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class Unreadable:
    """A node of a file that is not a NIR primitive this ``nir`` package builds (an unknown type,
    or fields the primitive refuses): reported with the rest, by ``primitive``."""

    primitive: str
    reason: str = ""


class _Budget:
    """What one read may still take: items and array bytes."""

    def __init__(self, where: str) -> None:
        self.where, self.items, self.bytes = where, 0, 0
        self.available = available_memory_bytes()

    def item(self) -> None:
        self.items += 1
        if self.items > MAX_NIR_ITEMS:
            raise SnnConvertError(f"{self.where} holds more than {MAX_NIR_ITEMS:,} groups and arrays; it is not a "
                                  "NIR graph snnconvert reads")

    def take(self, count: int) -> None:
        self.bytes += count
        if self.bytes > MAX_NIR_ARRAY_BYTES:
            raise SnnConvertError(f"{self.where} holds more than {MAX_NIR_ARRAY_BYTES:,} bytes of arrays; "
                                  "snnconvert does not read it")
        if self.available is not None and 2 * self.bytes > MEMORY_SHARE * self.available:  # arrays + tensors
            raise SnnConvertError(f"{self.where} holds {self.bytes / 2**20:,.0f} MiB of arrays, more than this "
                                  f"machine's free memory takes ({self.available / 2**20:,.0f} MiB free)")


def _text(value: Any, where: str) -> str:
    if isinstance(value, bytes):
        if len(value) > MAX_MANIFEST_STR:
            raise SnnConvertError(f"{where} holds a string of {len(value):,} bytes; it is not a NIR graph "
                                  "snnconvert reads")
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise SnnConvertError(f"{where} holds a string that is not UTF-8; it is damaged or not a NIR "
                                  "graph") from None
    return str(value)


def _read_dataset(dataset: Any, budget: _Budget) -> Any:
    import h5py

    where = budget.where
    if dataset.is_virtual or dataset.external:
        raise SnnConvertError(f"{where} has a dataset stored in other files (external or virtual); snnconvert "
                              "reads self-contained NIR files only")
    shape = dataset.shape
    if shape is None:  # an empty dataspace
        return None
    count = math.prod(int(s) for s in shape)
    dtype = dataset.dtype
    if h5py.check_string_dtype(dtype) is not None or dtype.kind == "S":
        budget.take(count * 8)
        if count > MAX_NIR_NODES * 4:
            raise SnnConvertError(f"{where} holds a list of {count:,} strings; it is not a NIR graph snnconvert "
                                  "reads")
        value = dataset[()]
        if isinstance(value, np.ndarray):
            return np.array([_text(v, where) for v in value.reshape(-1)], dtype=object).reshape(value.shape)
        return _text(value, where)
    if dtype.kind not in "biuf" or dtype.fields is not None or dtype.subdtype is not None:
        raise SnnConvertError(f"{where} holds an array of type {shorten(str(dtype), 40)}; NIR graphs hold numbers "
                              "and strings only")
    budget.take(count * dtype.itemsize)
    return dataset[()]


def _read_group(group: Any, budget: _Budget, depth: int) -> dict[str, Any]:
    import h5py

    if depth > MAX_NESTING:
        raise SnnConvertError(f"{budget.where} nests deeper than {MAX_NESTING} levels; it is not a NIR graph "
                              "snnconvert reads")
    out: dict[str, Any] = {}
    for key in group:
        budget.item()
        name = _text(key, budget.where)
        link = group.get(key, getlink=True)
        if not isinstance(link, h5py.HardLink):
            raise SnnConvertError(f"{budget.where} links to other data ({type(link).__name__}); snnconvert reads "
                                  "self-contained NIR files only")
        item = group[key]
        if isinstance(item, h5py.Group):
            out[name] = _read_group(item, budget, depth + 1)
        elif isinstance(item, h5py.Dataset):
            out[name] = _read_dataset(item, budget)
        else:
            raise SnnConvertError(f"{budget.where} holds an HDF5 object of kind {type(item).__name__}; it is not a "
                                  "NIR graph")
    return out


def _node_of(name: str, data: Any, where: str) -> Any:
    """The NIR node of one ``nodes/<name>`` group (an :class:`Unreadable` when ``nir`` cannot build it)."""
    import nir

    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        return Unreadable("(no type)", "the group names no type")
    kind = data["type"]
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,39}", kind):
        return Unreadable(shorten(one_line(kind), 40), "not a NIR primitive")
    if kind == "NIRGraph":
        return Unreadable("NIRGraph", "a nested subgraph")
    try:
        nir.str2NIRNode(kind)
    except (AssertionError, KeyError):
        return Unreadable(kind, "not a NIR primitive")
    try:
        return nir.dict2NIRNode(dict(data))
    except Exception as exc:  # noqa: BLE001 - nir's constructors assert and raise anything on malformed fields
        return Unreadable(kind, f"its fields do not make a {kind} ({type(exc).__name__})")


def read_nir(source: str | Path | bytes, *, where: str | None = None) -> NirFile:
    """The NIR graph in ``source`` (a path, or the bytes of a file), read with bounds: at most
    :data:`MAX_NIR_FILE_BYTES` of file and :data:`MAX_NIR_ARRAY_BYTES` of arrays (each array's
    size checked before it is read, and against the available memory), no links, no external
    or virtual datasets, no pickles. A file that is not HDF5, or not a NIR graph, is a one-line
    error."""
    import h5py

    if isinstance(source, bytes):
        where = where or "the NIR data"
        handle: Any = io.BytesIO(source)
        size = len(source)
    else:
        path = require_regular_file(source, "NIR file")
        where = where or shorten(str(path), 120)
        try:
            handle = open(path, "rb")  # noqa: SIM115 - closed below; h5py reads through it
        except OSError as exc:
            raise SnnConvertError(f"{where} cannot be read ({exc.strerror or type(exc).__name__})") from None
        size = int(path.stat().st_size)
    try:
        if size > MAX_NIR_FILE_BYTES:
            raise SnnConvertError(f"{where} is {size / 2**30:.1f} GiB; snnconvert reads NIR files up to "
                                  f"{MAX_NIR_FILE_BYTES / 2**30:.0f} GiB")
        available = available_memory_bytes()
        if available is not None and size > MEMORY_SHARE * available:  # its strings alone could take that much
            raise SnnConvertError(f"{where} is {size / 2**20:,.0f} MiB, more than this machine's free memory takes "
                                  f"({available / 2**20:,.0f} MiB free)")
        head = handle.read(8)
        handle.seek(0)
        if head != _HDF5_SIGNATURE:
            raise SnnConvertError(f"{where} is not a NIR file: it is not HDF5 (NIR graphs are written by "
                                  "nir.write)")
        budget = _Budget(where)
        try:
            with h5py.File(handle, "r") as f:
                if "node" not in f or not isinstance(f.get("node", getlink=True), h5py.HardLink) \
                        or not isinstance(f["node"], h5py.Group):
                    raise SnnConvertError(f"{where} is HDF5 but holds no NIR graph (no 'node' group)")
                root = _read_group(f["node"], budget, 0)
        except SnnConvertError:
            raise
        except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
            raise SnnConvertError(f"{where} cannot be read as HDF5 ({type(exc).__name__}: "
                                  f"{shorten(one_line(str(exc).splitlines()[0] if str(exc) else ''), 80)})") from None
    finally:
        handle.close()
    return _graph_of(root, where)


def _graph_of(root: dict[str, Any], where: str) -> NirFile:
    if root.get("type") != "NIRGraph" or not isinstance(root.get("nodes"), dict):
        raise SnnConvertError(f"{where} holds no NIR graph (its top node is not a NIRGraph with nodes)")
    nodes_data = root["nodes"]
    if len(nodes_data) > MAX_NIR_NODES:
        raise SnnConvertError(f"{where} has {len(nodes_data):,} nodes; snnconvert reads at most {MAX_NIR_NODES:,}")
    edges_data = root.get("edges")
    edges: list[tuple[str, str]] = []
    if edges_data is not None:
        array = np.asarray(edges_data, dtype=object)
        if array.size and (array.ndim != 2 or array.shape[1] != 2):
            raise SnnConvertError(f"{where}: the graph's edges are not pairs of node names")
        if array.shape[0] > MAX_NIR_NODES * 4:
            raise SnnConvertError(f"{where} has {array.shape[0]:,} edges; snnconvert reads at most "
                                  f"{MAX_NIR_NODES * 4:,}")
        edges = [(str(a), str(b)) for a, b in array.reshape(-1, 2)]
    metadata = root.get("metadata") if isinstance(root.get("metadata"), dict) else {}
    nodes = {name: _node_of(name, data, where) for name, data in nodes_data.items()}
    return NirFile(nodes, edges, metadata)


# ---------------------------------------------------------------------------- graph -> SpikingNetwork


def _shown(name: str) -> str:
    return shorten(one_line(name), 40)


def _number(value: Any) -> float | None:
    """A finite real number from metadata (a numpy scalar or a one-element array), else None."""
    try:
        array = np.asarray(value)
        if array.size != 1 or array.dtype.kind not in "biuf":
            return None
        number = float(array.reshape(-1)[0])
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _pair(value: Any, what: str) -> tuple[int, int]:
    """Two non-negative ints from a scalar or a length-2 array (ValueError otherwise)."""
    array = np.asarray(value)
    problem = f"a {what} that is not one or two whole numbers >= 0"
    if array.dtype.kind not in "biuf" or array.size not in (1, 2) or not np.all(np.isfinite(array)):
        raise ValueError(problem)
    values = [float(v) for v in array.reshape(-1)]
    if any(v != int(v) or v < 0 or v > 1 << 20 for v in values):
        raise ValueError(problem)
    ints = [int(v) for v in values]
    return (ints[0], ints[0]) if len(ints) == 1 else (ints[0], ints[1])


def _as_int(value: Any, what: str) -> int:
    array = np.asarray(value)
    if array.size != 1 or array.dtype.kind not in "biu":
        raise ValueError(f"a {what} that is not an integer")
    return int(array.reshape(-1)[0])


def _shape_of(value: Any) -> tuple[int, ...] | None:
    """A shape from a NIR type entry (None when absent)."""
    if value is None:
        return None
    array = np.asarray(value)
    if array.size == 0:
        return None
    if array.dtype.kind not in "iu" or array.ndim != 1 or np.any(array <= 0):
        raise ValueError("a type that is not a shape")
    return tuple(int(s) for s in array)


def _per_channel(values: np.ndarray) -> torch.Tensor | None:
    """``values`` (one per neuron of a frame) as one entry when they are all equal, one per
    channel when they vary only between channels (axis 0; every neuron of flat frames is a
    channel), else None."""
    flat = values.reshape(-1)
    if flat.size == 0 or np.all(flat == flat[0]):
        return torch.tensor([float(flat[0]) if flat.size else 1.0], dtype=torch.float64)
    if values.ndim == 1:
        return torch.from_numpy(values.astype(np.float64).copy())
    rows = values.reshape(values.shape[0], -1)
    if np.all(rows == rows[:, :1]):
        return torch.from_numpy(rows[:, 0].astype(np.float64).copy())
    return None


class _Builder:
    """One walk over a NIR graph in topological order: the fx body, its modules and every problem."""

    def __init__(self, nir_file: NirFile, *, T: int, dt: float, where: str) -> None:
        self.file, self.T, self.dt, self.where = nir_file, T, dt, where
        self.graph = fx.Graph()
        self.modules: dict[str, nn.Module] = {}
        self.values: dict[str, fx.Node] = {}
        self.shapes: dict[str, tuple[int, ...] | None] = {}
        self.problems: dict[str, list[str]] = defaultdict(list)  # cause -> node names
        self.neuron_layers: list[str] = []
        self.thresholds: dict[str, float] = {}
        self.kinds: dict[str, int] = defaultdict(int)
        self.resets: set[str] = set()
        self.inits: set[float] = set()
        self.per_channel = False
        self.module_names: dict[str, str] = {}  # module -> NIR node name
        self.input_shape: tuple[int, ...] | None = None
        self.output_shape: tuple[int, ...] | None = None

    # -- structure ---------------------------------------------------------------------------------

    def refuse(self, name: str, cause: str) -> None:
        self.problems[cause].append(name)

    def order(self) -> tuple[list[str], dict[str, list[str]], str, str]:
        """Topological order of the nodes between the Input and the Output, the predecessors of
        each node, and the Input's and Output's names (a broken structure is one error)."""
        import nir

        nodes = self.file.nodes
        unknown = sorted({n for edge in self.file.edges for n in edge if n not in nodes})
        if unknown:
            raise SnnConvertError(f"{self.where}: edges name nodes the graph does not hold "
                                  f"({', '.join(_shown(n) for n in unknown[:_SHOWN_NAMES])})")
        inputs = [n for n, node in nodes.items() if isinstance(node, nir.Input)]
        outputs = [n for n, node in nodes.items() if isinstance(node, nir.Output)]
        if len(inputs) != 1 or len(outputs) != 1:
            raise SnnConvertError(f"{self.where} has {len(inputs)} Input and {len(outputs)} Output nodes; snnconvert "
                                  "loads graphs with one of each (the image in, the logits out)")
        preds: dict[str, list[str]] = {n: [] for n in nodes}
        succs: dict[str, list[str]] = {n: [] for n in nodes}
        for a, b in dict.fromkeys(self.file.edges):  # a repeated edge is one edge
            preds[b].append(a)
            succs[a].append(b)
        pending = {n: len(p) for n, p in preds.items()}
        ready = deque(n for n in nodes if pending[n] == 0)
        order: list[str] = []
        while ready:
            n = ready.popleft()
            order.append(n)
            for s in succs[n]:
                pending[s] -= 1
                if pending[s] == 0:
                    ready.append(s)
        if len(order) != len(nodes):
            cycle = [n for n in nodes if pending[n] > 0]
            raise SnnConvertError(f"{self.where} has recurrent edges (a cycle through "
                                  f"{', '.join(_shown(n) for n in cycle[:_SHOWN_NAMES])}); snnconvert runs "
                                  "feed-forward graphs only")
        source, sink = inputs[0], outputs[0]
        after = self._reach(source, succs)
        before = self._reach(sink, preds)
        for n in order:
            if n not in after or n not in before:
                self.refuse(n, "nodes not on a path from the Input to the Output")
        return [n for n in order if n in after and n in before], preds, source, sink

    @staticmethod
    def _reach(start: str, links: dict[str, list[str]]) -> set[str]:
        seen, stack = {start}, [start]
        while stack:
            for other in links[stack.pop()]:
                if other not in seen:
                    seen.add(other)
                    stack.append(other)
        return seen

    # -- modules -----------------------------------------------------------------------------------

    def module_name(self, name: str, suffix: str = "") -> str:
        base = re.sub(r"[^0-9A-Za-z_]", "_", name)[:60] + suffix
        if not base or base[0].isdigit() or keyword.iskeyword(base) or hasattr(fx.GraphModule, base):
            base = f"n_{base}"
        candidate, i = base, 1
        while candidate in self.modules:
            i += 1
            candidate = f"{base}_{i}"
        return candidate

    def call(self, name: str, module: nn.Module, arg: fx.Node, suffix: str = "") -> fx.Node:
        target = self.module_name(name, suffix)
        self.modules[target] = module
        self.module_names[target] = name
        return self.graph.call_module(target, (arg,))

    def gain(self, name: str, value: torch.Tensor, arg: fx.Node, suffix: str) -> fx.Node:
        from snnconvert.simulate.synapse import Gain

        if value.numel() == 1 and float(value[0]) == 1.0:
            return arg
        if value.numel() > 1:
            self.per_channel = True
        return self.call(name, Gain.of(value), arg, suffix)

    # -- the walk ----------------------------------------------------------------------------------

    def build(self) -> fx.Node | None:
        order, preds, source, sink = self.order()
        output: fx.Node | None = None
        for name in order:
            node = self.file.nodes[name]
            if name == source:
                output = self._input(name, node)
                continue
            built = [p for p in preds[name] if p in self.values]
            shapes = [self.shapes[p] for p in built]
            shape: tuple[int, ...] | None = None
            value: fx.Node | None = None
            if built and len(built) == len(preds[name]):
                if any(s != shapes[0] for s in shapes):
                    self.refuse(name, "nodes whose inputs have different shapes")
                else:
                    shape, value = shapes[0], self.values[built[0]]
                    for other in built[1:]:  # NIR adds the inputs of a node
                        value = self.graph.call_function(operator.add, (value, self.values[other]))
            result = self._node(name, node, value, shape)
            if result is not None:
                self.values[name], self.shapes[name] = result
                if name == sink:
                    output = result[0]
            else:
                self.shapes[name] = None
        return output if sink in self.values else None

    def _node(self, name: str, node: Any, x: fx.Node | None,
              shape: tuple[int, ...] | None) -> tuple[fx.Node, tuple[int, ...]] | None:
        if isinstance(node, Unreadable):
            self.refuse(name, node.primitive + (f" ({node.reason})" if node.reason and node.reason != "not a NIR "
                                                "primitive" else ""))
            return None
        kind = type(node).__name__
        handler: Callable[..., Any] | None = getattr(self, f"_{kind.lower()}", None) if kind in SUPPORTED else None
        if handler is None or kind == "Input":
            self.refuse(name, kind + (" (a second Input)" if kind == "Input" else ""))
            return None
        try:  # (x None: after a refused node; the handler only checks the node's own fields)
            return handler(name, node, x, shape)
        except ValueError as exc:  # a field of the wrong form (the reason is the code's own words)
            self.refuse(name, f"{kind} with {exc}")
            return None
        except (TypeError, IndexError, AttributeError, KeyError) as exc:  # fields of another kind altogether
            self.refuse(name, f"{kind} with fields of the wrong form ({type(exc).__name__})")
            return None

    def _input(self, name: str, node: Any) -> fx.Node:
        try:
            shape = _shape_of(node.input_type.get("input"))
        except ValueError:
            shape = None
        if shape is None or len(shape) not in (1, 3) or math.prod(shape) > MAX_ACTIVATION_ELEMENTS:
            raise SnnConvertError(f"{self.where}: the Input node's shape is not an image (C, H, W) or a vector of "
                                  f"at most {MAX_ACTIVATION_ELEMENTS:,} values")
        self.input_shape = shape
        value = self.graph.placeholder("frames")
        self.values[name], self.shapes[name] = value, shape
        return value

    def _checked(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        if math.prod(shape) > MAX_ACTIVATION_ELEMENTS:
            raise ValueError(f"an output of {math.prod(shape):,} values per image (at most "
                             f"{MAX_ACTIVATION_ELEMENTS:,})")
        return shape

    @staticmethod
    def _array(value: Any, what: str) -> np.ndarray:
        array = np.asarray(value)
        if array.dtype.kind not in "biuf":
            raise ValueError(f"a non-numeric {what}")
        array = array.astype(np.float64)
        if not np.all(np.isfinite(array)):
            raise ValueError(f"a non-finite {what}")
        return array

    def _weights(self, value: Any, what: str) -> np.ndarray:
        array = self._array(value, what)
        if array.size and float(np.abs(array).max()) > MAX_WEIGHT_MAGNITUDE:
            raise ValueError(f"a {what} beyond {MAX_WEIGHT_MAGNITUDE:g} in magnitude")
        return array

    def _output(self, name: str, node: Any, x: fx.Node | None, shape: tuple[int, ...] | None):
        if x is None or shape is None:
            return None
        declared = _shape_of(node.output_type.get("output"))
        if declared is not None and declared != shape:
            raise ValueError(f"the shape {declared} where {shape} reaches it")
        self.output_shape = shape
        return x, shape

    def _affine(self, name: str, node: Any, x: fx.Node | None, shape: tuple[int, ...] | None, bias: bool = True):
        from snnconvert.simulate.synapse import SynapseLinear

        weight = self._weights(node.weight, "weight")
        if weight.ndim != 2:
            raise ValueError("a weight that is not a matrix")
        b = self._weights(node.bias, "bias").reshape(-1) if bias else None
        if b is not None and b.size != weight.shape[0]:
            raise ValueError("a bias that does not fit the weight")
        if x is None or shape is None:
            return None
        if shape != (weight.shape[1],):
            raise ValueError(f"a {weight.shape[1]}-input weight on frames of shape {shape} (NIR's Affine takes "
                             "flat vectors: flatten first)")
        template = nn.Linear(weight.shape[1], weight.shape[0], bias=b is not None, device="meta")
        syn = SynapseLinear.from_linear(template, torch.from_numpy(weight), None if b is None else torch.from_numpy(b),
                                        torch.ones(self.T, dtype=torch.float64))
        return self.call(name, syn, x), self._checked((weight.shape[0],))

    def _linear(self, name: str, node: Any, x: fx.Node | None, shape: tuple[int, ...] | None):
        return self._affine(name, node, x, shape, bias=False)

    def _conv2d(self, name: str, node: Any, x: fx.Node | None, shape: tuple[int, ...] | None):
        from snnconvert.simulate.synapse import SynapseConv2d

        weight = self._weights(node.weight, "weight")
        if weight.ndim != 4:
            raise ValueError("a weight that is not (C_out, C_in / groups, kH, kW)")
        groups = _as_int(node.groups, "groups")
        out_channels, per_group, kh, kw = (int(s) for s in weight.shape)
        if groups < 1 or out_channels % groups:
            raise ValueError(f"{groups} groups for {out_channels} output channels")
        bias = None if node.bias is None else self._weights(node.bias, "bias").reshape(-1)
        if bias is not None and bias.size != out_channels:
            raise ValueError("a bias that does not fit the weight")
        stride, dilation = _pair(node.stride, "stride"), _pair(node.dilation, "dilation")
        if min(stride) < 1 or min(dilation) < 1:
            raise ValueError("a stride or dilation below 1")
        padding: tuple[int, int] | str
        if isinstance(node.padding, str):
            if node.padding == "valid":
                padding = (0, 0)
            elif stride != (1, 1):
                raise ValueError("padding 'same' with a stride")
            else:
                totals = (dilation[0] * (kh - 1), dilation[1] * (kw - 1))
                padding = (totals[0] // 2, totals[1] // 2) if not (totals[0] % 2 or totals[1] % 2) else "same"
        else:
            padding = _pair(node.padding, "padding")
        if x is None or shape is None:
            return None
        if len(shape) != 3 or shape[0] != per_group * groups:
            raise ValueError(f"a weight for {per_group * groups} input channels on frames of shape {shape}")
        declared = _shape_of(node.input_shape)
        if declared is not None and declared != shape[1:]:
            raise ValueError(f"input_shape {declared} where {shape[1:]} reaches it")
        pads = (0, 0) if isinstance(padding, str) else padding
        sizes = []
        for size, k, s, p, d in ((shape[1], kh, stride[0], pads[0], dilation[0]),
                                 (shape[2], kw, stride[1], pads[1], dilation[1])):
            out = size if isinstance(padding, str) else (size + 2 * p - d * (k - 1) - 1) // s + 1
            if out < 1:
                raise ValueError(f"a kernel larger than its padded input {shape[1:]}")
            sizes.append(out)
        template = nn.Conv2d(per_group * groups, out_channels, (kh, kw), stride=stride, padding=padding,
                             dilation=dilation, groups=groups, bias=bias is not None, device="meta")
        syn = SynapseConv2d.from_conv(template, torch.from_numpy(weight),
                                      None if bias is None else torch.from_numpy(bias),
                                      torch.ones(self.T, dtype=torch.float64))
        return self.call(name, syn, x), self._checked((out_channels, *sizes))

    def _flatten(self, name: str, node: Any, x: fx.Node | None, shape: tuple[int, ...] | None):
        start, end = _as_int(node.start_dim, "start_dim"), _as_int(node.end_dim, "end_dim")
        if x is None or shape is None:
            return None
        rank = len(shape)
        s = start + rank if start < 0 else start
        e = end + rank if end < 0 else end
        if not 0 <= s <= e < rank:
            raise ValueError(f"start_dim {start} / end_dim {end} outside frames of shape {shape} (NIR counts without "
                             "the batch axis)")
        declared = _shape_of(node.input_type.get("input"))
        if declared is not None and declared != shape:
            raise ValueError(f"input_type {declared} where {shape} reaches it")
        out = (*shape[:s], math.prod(shape[s:e + 1]), *shape[e + 1:])
        return self.call(name, nn.Flatten(s + 1, e + 1), x), out

    def _avgpool2d(self, name: str, node: Any, x: fx.Node | None, shape: tuple[int, ...] | None,
                   sum_pool: bool = False):
        kernel = _pair(node.kernel_size, "kernel_size")
        stride = kernel if node.stride is None else _pair(node.stride, "stride")
        padding = (0, 0) if node.padding is None else _pair(node.padding, "padding")
        if min(kernel) < 1 or min(stride) < 1:
            raise ValueError("a kernel or stride below 1")
        if padding[0] * 2 > kernel[0] or padding[1] * 2 > kernel[1]:
            raise ValueError("padding above half the kernel")
        if x is None or shape is None:
            return None
        if len(shape) != 3:
            raise ValueError(f"frames of shape {shape} (2-d pooling takes (C, H, W))")
        sizes = [(size + 2 * p - k) // s + 1 for size, k, s, p in zip(shape[1:], kernel, stride, padding, strict=True)]
        if min(sizes) < 1:
            raise ValueError(f"a kernel larger than its padded input {shape[1:]}")
        value = self.call(name, nn.AvgPool2d(kernel, stride, padding), x)
        if sum_pool:  # the sum of the window: the average times k*k (folded into the next synapse)
            value = self.gain(name, torch.tensor([float(kernel[0] * kernel[1])], dtype=torch.float64), value, "_sum")
        return value, (shape[0], *sizes)

    def _sumpool2d(self, name: str, node: Any, x: fx.Node | None, shape: tuple[int, ...] | None):
        return self._avgpool2d(name, node, x, shape, sum_pool=True)

    def _scale(self, name: str, node: Any, x: fx.Node | None, shape: tuple[int, ...] | None):
        scale = self._weights(node.scale, "scale")
        if x is None or shape is None:
            return None
        values = _per_channel(self._fit(scale, shape, "scale"))
        if values is None:
            raise ValueError("a scale that varies within a channel")
        return self.gain(name, values, x, ""), shape

    @staticmethod
    def _fit(value: np.ndarray, shape: tuple[int, ...], what: str) -> np.ndarray:
        try:
            return np.broadcast_to(value, shape)
        except ValueError:
            raise ValueError(f"a {what} of shape {value.shape} on frames of shape {shape}") from None

    def _neuron_settings(self, node: Any, primitive: str) -> tuple[str, float]:
        """Reset and initial membrane (threshold units): NIR's (to 0, from 0), a subtractive reset
        where the graph's metadata ``reset`` says ``subtract ...`` (snnconvert's ``--nir-reset
        subtract``), or what snnconvert's own export recorded in the node's metadata."""
        reader = NIR_NEURON_READERS.get(primitive)
        meta = node.metadata if isinstance(node.metadata, dict) else {}
        reset, init = "zero", 0.0
        if states_subtraction(self.file.metadata) and "subtract" in reader.resets:
            reset = "subtract"
        if meta.get("snnconvert") == reader.recorded:
            if meta.get("reset") in reader.resets:
                reset = str(meta["reset"])
            elif _number(meta.get("soft_reset")) == 1.0:  # files of earlier releases
                reset = "subtract"
            start = _number(meta.get("init"))
            if start is not None and 0.0 <= start <= 1.0:
                init = start
        return reset, init

    def _if(self, name: str, node: Any, x: fx.Node | None, shape: tuple[int, ...] | None, lif: bool = False,
            current: tuple[np.ndarray, np.ndarray] | None = None):
        kind = "CubaLIF" if current is not None else "LIF" if lif else "IF"
        theta = self._array(node.v_threshold, "v_threshold")
        r = self._array(node.r, "r")
        v_reset = self._array(np.zeros(1) if node.v_reset is None else node.v_reset, "v_reset")
        refused = False
        if np.any(v_reset != 0):
            self.refuse(name, f"{kind} with v_reset != 0 (snnconvert's neurons reset to 0)")
            refused = True
        if lif:
            v_leak = self._array(node.v_leak, "v_leak")
            tau = self._array(node.tau_mem, "tau_mem") if current is not None else self._array(node.tau, "tau")
            if np.any(v_leak != 0):
                self.refuse(name, f"{kind} with v_leak != 0 (snnconvert's neurons leak towards 0)")
                refused = True
            if np.any(tau <= 0):
                raise ValueError("tau <= 0")
            if np.any(self.dt / tau > 1):
                raise ValueError(f"tau below dt = {self.dt:g} s (one step would overshoot the leak; give the dt the "
                                 "file was made for)")
        if np.any(theta <= 0):
            raise ValueError("v_threshold <= 0")
        if refused or x is None or shape is None:
            return None
        theta, r = self._fit(theta, shape, "v_threshold"), self._fit(r, shape, "r")
        decay = None
        if lif:
            ratio = self.dt / self._fit(tau, shape, "tau")
            leak = _per_channel(1.0 - ratio)
            factor = _per_channel(ratio * r / theta)
            if leak is None:
                raise ValueError("a tau that varies within a channel")
            if current is not None:  # I <- (1 - dt/tau_syn) I + dt/tau_syn w_in x feeds the membrane
                ratio_syn = self.dt / self._fit(current[0], shape, "tau_syn")
                decay = _per_channel(1.0 - ratio_syn)
                factor = _per_channel(ratio * r / theta * ratio_syn * self._fit(current[1], shape, "w_in"))
                if decay is None:
                    raise ValueError("a tau_syn that varies within a channel")
        else:
            leak, factor = None, _per_channel(self.dt * r / theta)
        if factor is None:
            raise ValueError("r / v_threshold (or tau, or w_in) that vary within a channel")
        reset, init = self._neuron_settings(node, "CubaLIF" if current is not None else "IF")
        if current is not None:
            neuron = NIR_NEURON_READERS.get("CubaLIF").build(self.T, reset=reset, init=init, leak=leak,
                                                             current_decay=decay)
        else:
            neuron = NIR_NEURON_READERS.get("IF").build(self.T, reset=reset, init=init, leak=leak)
        if leak is not None:
            self.per_channel |= leak.numel() > 1
        value = self.gain(name, factor, x, "_in_gain")
        value = self.call(name, neuron, value)
        module = str(value.target)
        self.neuron_layers.append(module)
        self.thresholds[module] = float(theta.max())
        self.kinds[kind] += 1
        self.resets.add(reset)
        self.inits.add(init)
        return value, shape

    def _lif(self, name: str, node: Any, x: fx.Node | None, shape: tuple[int, ...] | None):
        return self._if(name, node, x, shape, lif=True)

    def _cubalif(self, name: str, node: Any, x: fx.Node | None, shape: tuple[int, ...] | None):
        tau_syn, w_in = self._array(node.tau_syn, "tau_syn"), self._array(node.w_in, "w_in")
        if np.any(tau_syn <= 0):
            raise ValueError("tau_syn <= 0")
        if np.any(self.dt / tau_syn > 1):
            raise ValueError(f"tau_syn below dt = {self.dt:g} s (one step would overshoot the decay; give the dt the "
                             "file was made for)")
        return self._if(name, node, x, shape, lif=True, current=(tau_syn, w_in))

    def error(self) -> SnnConvertError | None:
        if not self.problems:
            return None
        parts = []
        for cause, names in self.problems.items():
            shown = ", ".join(_shown(n) for n in names[:_SHOWN_NAMES])
            more = f" and {len(names) - _SHOWN_NAMES} more" if len(names) > _SHOWN_NAMES else ""
            parts.append(f"{cause}: {shown}{more}")
        return SnnConvertError(f"{self.where} holds NIR nodes snnconvert cannot load: {'; '.join(parts)} (snnconvert "
                               f"loads {', '.join(SUPPORTED)} with v_reset 0 and v_leak 0)")


def _resolve_T(T: int | None, metadata: dict[str, Any], where: str) -> int:
    if T is None:
        value = _number(metadata.get("T"))
        if value is None:
            raise SnnConvertError(f"{where} does not say how many time steps to run (no metadata T): give "
                                  f"{opt('load_nir', 'T')} (e.g. 32)")
        if value != int(value):
            raise SnnConvertError(f"{where}: metadata T = {value:g} is not a whole number of steps; give "
                                  f"{opt('load_nir', 'T')}")
        T = int(value)
    if isinstance(T, bool) or not isinstance(T, int) or not 1 <= T <= MAX_TIME_STEPS:
        raise SnnConvertError(f"{opt('load_nir', 'T')} {shorten(T, 20)} is not possible: give an integer "
                              f"1..{MAX_TIME_STEPS} time steps")
    return T


def _resolve_dt(dt: float | None, metadata: dict[str, Any]) -> float:
    if dt is None:
        stated = _number(metadata.get("dt"))
        if stated is not None and stated > 0:
            return stated
        if "snnconvert.coding" in metadata:  # snnconvert's exports before they stated dt: IF r = 1 per step
            return 1.0
        return DEFAULT_DT
    if isinstance(dt, bool) or not isinstance(dt, (int, float)) or not math.isfinite(dt) or dt <= 0:
        raise SnnConvertError(f"{opt('load_nir', 'dt')} {shorten(dt, 20)} is not possible: give a time step > 0 "
                              "seconds")
    return float(dt)


def without_ordering_nodes(nir_file: NirFile) -> NirFile:
    """``nir_file`` without the zero-weight ordering nodes of snnconvert's own export
    (:mod:`snnconvert.export.nir_order`): a synapse node marked as one, whose weights and bias are
    all zero and whose every target has another input, adds exactly 0, so dropping it (and its
    edges) leaves what the graph computes and keeps it out of the operation counts."""
    inputs: dict[str, int] = defaultdict(int)
    for _, target in dict.fromkeys(nir_file.edges):
        inputs[target] += 1
    dropped = set()
    for name, node in nir_file.nodes.items():
        meta = getattr(node, "metadata", None)
        if not (isinstance(meta, dict) and ORDERING_METADATA in meta):
            continue
        weights = [getattr(node, field_name, None) for field_name in ("weight", "bias")]
        zero = weights[0] is not None and all(w is None or not np.any(np.asarray(w, dtype=np.float64))
                                              for w in weights)
        targets = list(dict.fromkeys(b for a, b in nir_file.edges if a == name))
        if zero and targets and all(inputs[b] > 1 for b in targets):
            dropped.add(name)
            for b in targets:
                inputs[b] -= 1
    if not dropped:
        return nir_file
    return NirFile({n: node for n, node in nir_file.nodes.items() if n not in dropped},
                   [e for e in nir_file.edges if e[0] not in dropped and e[1] not in dropped], nir_file.metadata)


def nir_to_snn(graph: Any, *, T: int | None = None, dt: float | None = None, name: str = "nir") -> SpikingNetwork:
    """The :class:`~snnconvert.simulate.network.SpikingNetwork` of a NIR graph (a ``nir.NIRGraph``
    or a :class:`NirFile`) that runs ``T`` steps of ``dt`` seconds (see the module docstring;
    ``T``: the graph metadata's when None; ``dt``: the metadata's, else 1e-4). Every node it
    cannot map is listed in one :class:`~snnconvert.errors.SnnConvertError`."""
    from snnconvert.codings.gains import fold_gains
    from snnconvert.simulate.encoders import RepeatEncoder
    from snnconvert.simulate.network import SpikingNetwork
    from snnconvert.simulate.synapse import WeightedSumDecoder

    nir_file = graph if isinstance(graph, NirFile) else NirFile(dict(graph.nodes), [tuple(e) for e in graph.edges],
                                                                dict(graph.metadata or {}))
    where = f"NIR graph {shorten(one_line(name), 80)}"
    nir_file = without_ordering_nodes(nir_file)
    metadata = nir_file.metadata if isinstance(nir_file.metadata, dict) else {}
    steps = _resolve_T(T, metadata, where)
    step = _resolve_dt(dt, metadata)
    builder = _Builder(nir_file, T=steps, dt=step, where=where)
    output = builder.build()
    error = builder.error()
    if error is not None:
        raise error
    if output is None:
        raise SnnConvertError(f"{where}: nothing reaches its Output node")
    builder.graph.output(output)
    body = fx.GraphModule(builder.modules, builder.graph)
    body.double()
    fold_gains(body)  # the input factors and sum-pool gains into the weights, where one can take them
    body = body.to(torch.float32)
    snn = SpikingNetwork("rate")
    snn.encoder = RepeatEncoder(steps)
    snn.body = body
    snn.decoder = WeightedSumDecoder(steps)
    resets = sorted(builder.resets)
    snn.info = {
        "coding": "rate",
        "source": "nir",
        "file": name,
        "T": steps,
        "frames": steps,
        "latency": steps,
        "latency_terms": f"T = {steps}",
        "dt": step,
        "percentile": None,  # thresholds come with the network, not from activation statistics
        "per_channel": builder.per_channel,
        "half_init": False,
        "initial_membrane": sorted(builder.inits),
        "reset": resets[0] if len(resets) == 1 else "mixed",
        "dtype": "float32",
        "neuron_layers": builder.neuron_layers,
        "neuron_kinds": dict(builder.kinds),
        "thresholds": builder.thresholds,
        "nir_nodes": {module: node for module, node in builder.module_names.items() if module in body._modules},
        "input_shape": list(builder.input_shape or ()),
        "output_shape": list(builder.output_shape or ()),
    }
    return snn


def load_nir(path: str | Path, *, T: int | None = None, dt: float | None = None) -> SpikingNetwork:
    """The NIR graph in the file ``path`` as a :class:`~snnconvert.simulate.network.SpikingNetwork`
    of ``T`` steps of ``dt`` seconds (see the module docstring): read with bounds
    (:func:`read_nir`), every unsupported node listed in one error. ``T`` defaults to the graph
    metadata's ``"T"``; ``dt`` to its ``"dt"``, else 1e-4 s. Poisson or other spike encodings of
    the input are not reproduced: the image is a constant current at every step."""
    path = Path(path)
    return nir_to_snn(read_nir(path), T=T, dt=dt, name=path.name)


# ---------------------------------------------------------------------------- evaluate / finetune input


def is_nir_path(path: str | Path) -> bool:
    """Whether ``path`` names a NIR file (by its suffix)."""
    return str(path).strip().lower().endswith(SUFFIX)


def nir_input(path: str | Path, *, T: int | None = None, dt: float | None = None, data: str | None = None,
              seed: int = 0, train_split: float = 0.2) -> tuple[QuantizedModel, SpikingNetwork]:
    """A NIR file as what ``evaluate`` and ``finetune`` take: a :class:`~snnconvert.core.QuantizedModel`
    *without* ANNs (``float_model`` and ``model`` are None: scores and agreements with an ANN are
    not available, distillation is off) that records the input geometry and the classes, and the
    network. The Input node must be an image (C, H, W) in the data loader's raw [0, 1] pixels and
    the Output a vector of class scores. ``data`` (fine-tuning's training data) stands in for the
    calibration data: validation then takes the part of it training leaves out (``train_split``,
    ``seed``); without it (evaluation) the data must be given to ``evaluate``."""
    from snnconvert.configs.quantize import QuantizeConfig
    from snnconvert.core import CalibrationRecord, ModelInfo, QuantizedModel, check_data_matches
    from snnconvert.data import InputSpec

    path = Path(path)
    snn = load_nir(path, T=T, dt=dt)
    image, classes = tuple(snn.info["input_shape"]), tuple(snn.info["output_shape"])
    shown = shorten(str(path.name), 80)
    if len(image) != 3:
        raise SnnConvertError(f"{shown}: its Input takes vectors of {image[0]:,} values; evaluate and finetune feed "
                              "images, so the Input must be (C, H, W) (flatten inside the graph)")
    if len(classes) != 1:
        raise SnnConvertError(f"{shown}: its Output has shape {classes}; evaluate and finetune read a vector of class "
                              "scores")
    info = ModelInfo(name=path.stem, source=f"nir:{path.name}",
                     input_spec=InputSpec(channels=image[0], size=(image[1], image[2])),
                     num_classes=classes[0], default_data=None,
                     notes=[f"NIR graph {path.name}: T = {snn.info['T']}, dt = {snn.info['dt']:g} s; no ANN"])
    if data:  # it stands in for the calibration data below, whose images are never checked again
        check_data_matches(info.name, info.input_spec, data)
    calibration = CalibrationRecord(spec=data or "", limit=None, seed=int(seed), calib_split=float(train_split),
                                    images=0, description="none: a NIR network runs as it is", fingerprint="")
    quantized = QuantizedModel(float_model=None, model=None, info=info, config=QuantizeConfig(),  # type: ignore[arg-type]
                               calibration=calibration)
    return quantized, snn


def load_input(path: str | Path, *, allow_unchecked: bool = False, nir: NirInputOptions | None = None,
               data: str | None = None, seed: int = 0,
               train_split: float = 0.2) -> tuple[QuantizedModel, SpikingNetwork | None]:
    """What ``evaluate`` / ``finetune --input PATH`` load: a ``.nir`` file through :func:`nir_input`
    (``nir``: its ``--T`` / ``--dt``), anything else as an artifact (:func:`snnconvert.core.load`)."""
    if is_nir_path(path):
        return nir_input(path, T=getattr(nir, "nir_T", None), dt=getattr(nir, "nir_dt", None), data=data, seed=seed,
                         train_split=train_split)
    from snnconvert.core import load

    return load(path, allow_unchecked=allow_unchecked)


# ---------------------------------------------------------------------------- NIR out after fine-tuning


def save_nir_network(snn: SpikingNetwork, directory: str | Path, stem: str,
                     image_shape: tuple[int, int, int]) -> Path:
    """Write a network loaded from NIR (and fine-tuned) back as a new NIR file
    ``<stem>-finetuned.nir`` in ``directory`` (the next free name; never an existing file), with
    the ``T`` and ``dt`` it was loaded with, through :func:`snnconvert.export.nir.export_nir`. The
    file is read back with :func:`load_nir` and run on a few random images before it is kept: a
    network the file would not reproduce (to 1 % of its logits) is an error, not a file."""
    from snnconvert.atomic import release_name, reserve_name
    from snnconvert.export.nir import export_nir

    directory = Path(directory)
    base = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem)[:80] or "network"
    path = reserve_name(directory / (f"{base}-finetuned-{n}{SUFFIX}" if n else f"{base}-finetuned{SUFFIX}")
                        for n in range(1000))
    dt = float(snn.info.get("dt", DEFAULT_DT))
    # a network read from a file snnconvert wrote with its soft reset or theta/2 start goes back the same way
    inexact = snn.info.get("reset") != "zero" or any(init != 0 for init in snn.info.get("initial_membrane", []))
    try:
        export_nir(snn, path, image_shape, dt=dt, inexact=inexact)
        check = load_nir(path, T=int(snn.info["T"]), dt=dt)
        generator = torch.Generator().manual_seed(0)
        probe = torch.rand((4, *image_shape), generator=generator)
        with torch.no_grad():
            expected = copy.deepcopy(snn).float().eval()(probe).double()  # the caller's network keeps its dtype
            got = check.eval()(probe).double()
        scale = float(expected.norm()) or 1.0
        if float((got - expected).norm()) > 1e-2 * scale:
            raise SnnConvertError(f"the NIR file of the fine-tuned network does not reproduce it (logits differ by "
                                  f"{100 * float((got - expected).norm()) / scale:.1f} %); it was not kept")
    except BaseException:
        path.unlink(missing_ok=True)
        release_name(path)
        raise
    return path


__all__ = ["DEFAULT_DT", "SUFFIX", "SUPPORTED", "NirFile", "Unreadable", "is_nir_path", "load_input",
           "load_nir", "nir_input", "nir_to_snn", "read_nir", "save_nir_network"]
