"""Common machinery of spiking-neuron modules: folded time, recorded statistics, reset."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from snnconvert.registry import Registry

# Neurons per chunk of the time loops of the neuron dynamics on the CPU: 1 MiB of float32 per
# state tensor, so a chunk's state stays in the L2/L3 cache across the steps while the per-op
# overhead (about 2 us) is small against the arithmetic. On CUDA the whole layer is one chunk.
TIME_LOOP_CHUNK = 262144


def time_chunks(frames: Tensor) -> tuple[Tensor, list[slice]]:
    """``frames`` (T, ...) as a (T, N) view (a copy only if not contiguous) and its column chunks
    (one chunk off the CPU)."""
    flat = frames.reshape(frames.shape[0], -1)
    n = flat.shape[1]
    size = TIME_LOOP_CHUNK if flat.device.type == "cpu" else max(n, 1)
    return flat, [slice(s, min(n, s + size)) for s in range(0, n, size)]


EXACT_COUNT = 2**24
"""Entries a float32 sum of zeros and ones holds exactly (every partial sum is an integer below it)."""


def nonzero_per_row(flat: Tensor, unit: bool = False) -> Tensor:
    """Non-zero entries in each row of ``flat`` (rows, N), as float64.

    On the CPU in float32/64 a row's count is ``dot(s, s)`` with ``s = sign(row)`` (``unit``:
    every entry is already in {-1, 0, 1}, so ``s`` is the row and the count is one BLAS pass,
    about 8x faster than an L1 norm and 13x faster than ``torch.count_nonzero``). Rows are summed
    in parts of fewer than 2^24 entries, so every partial sum is an integer the float holds exactly."""
    if flat.device.type != "cpu" or flat.dtype not in (torch.float32, torch.float64):
        if flat.shape[1] >= EXACT_COUNT:
            return torch.count_nonzero(flat, dim=1).double()
        if unit:
            return torch.linalg.vector_norm(flat, 1, dim=1).double()
        return torch.sign(flat).abs_().sum(dim=1).double()
    signs = flat if unit else torch.sign(flat)
    counts = [sum(float(torch.dot(part, part)) for part in row.split(EXACT_COUNT - 1)) for row in signs]
    return torch.tensor(counts, dtype=torch.float64)


def nonzero_total(values: Tensor) -> float:
    """Non-zero entries of ``values`` (any shape): :func:`nonzero_per_row` of it as one row."""
    return float(nonzero_per_row(values.reshape(1, -1)).sum())


def unfold_time(frames: Tensor, steps: int) -> Tensor:
    """(T*B, ...) -> (T, B, ...): frames are time-major, frame k is rows k*B:(k+1)*B."""
    return frames.reshape(steps, frames.shape[0] // steps, *frames.shape[1:])


def fold_time(frames: Tensor) -> Tensor:
    """(T, B, ...) -> (T*B, ...)."""
    return frames.reshape(frames.shape[0] * frames.shape[1], *frames.shape[2:])


@dataclass(frozen=True)
class StepState:
    """One state tensor of a neuron layer run one frame at a time (:meth:`SpikingNeuron.step`):
    its ``name``, its initial value and whose per-image shape it has (``"output"`` or ``"input"``
    frame)."""

    name: str
    init: float = 0.0
    shape_of: str = "output"


@dataclass
class SpikeStats:
    """What a neuron layer emitted, accumulated over ``samples`` inputs since the last reset."""

    name: str
    neurons: int  # neurons per sample
    lanes: int  # output lanes per neuron (1 unless multi-lane)
    samples: int
    events_per_step: list[float]  # non-zero outputs per sample at each output step
    magnitude_per_step: list[float]  # sum of |output| per sample at each output step

    @property
    def events(self) -> float:
        """Non-zero outputs per sample over all steps and lanes."""
        return float(sum(self.events_per_step))

    @property
    def rate(self) -> float:
        """Spike rate r_l: non-zero outputs per neuron per inference (all steps and lanes)."""
        return self.events / max(self.neurons, 1)

    @property
    def density(self) -> float:
        """Share of (neuron, step, lane) slots that carry a spike."""
        slots = self.neurons * self.lanes * max(len(self.events_per_step), 1)
        return self.events / max(slots, 1)


@dataclass
class NirNeuron:
    """What a neuron layer becomes in a NIR graph (:meth:`SpikingNeuron.to_nir`).

    ``node``: the NIR primitive (``nir.IF``, ``nir.LIF``, ...). ``input_scale``: a factor per
    output channel (or a scalar) the export multiplies into the synapse feeding the layer (None:
    none), e.g. the ``1/(1 - leak)`` that makes a consumer's ``dt/tau`` input term the simulator's
    plain sum. ``differences``: what the simulator's layer does that the node's NIR meaning does
    not (e.g. "reset by subtraction"), and ``fix`` how to convert without them; the export
    refuses such a node unless asked to write it anyway.
    ``refusal``: why no NIR node can hold the layer at all (a leak above 1, say), named in the
    export's one error.
    """

    node: Any
    input_scale: Any = None
    differences: tuple[str, ...] = ()
    fix: str = ""  # how to convert for a node without differences ("convert with --reset zero")
    refusal: str | None = None  # why no NIR node can hold this layer (then ``node`` is None)


@dataclass(frozen=True)
class NirNeuronReader:
    """How a NIR ``IF`` / ``LIF`` node becomes a simulator neuron (a method package registers one
    in :data:`NIR_NEURON_READERS`): ``build(T, *, reset, init, leak)`` returns a layer with
    threshold 1 in its input's units that adds its input each step, fires at ``>= 1`` and resets
    as ``reset`` (one of ``resets``: NIR's is ``"zero"``), starting at ``init`` thresholds;
    ``leak`` (a tensor, one entry or one per channel; None: no leak) multiplies the membrane each
    step. ``recorded``: the ``"snnconvert"`` metadata value that the same package's NIR export
    writes on its nodes (the reader then takes their ``reset`` and ``init`` from the metadata)."""

    build: Callable[..., SpikingNeuron]
    resets: tuple[str, ...]
    recorded: str


NIR_NEURON_READERS: Registry[NirNeuronReader] = Registry("NIR neuron reader")
"""The readers of NIR's spiking nodes, by NIR primitive: "IF" (for IF and LIF nodes) and
"CubaLIF", whose ``build`` also takes ``current_decay`` (the synaptic current's decay per step,
one entry or one per channel); the rate package registers both."""


class SpikingNeuron(nn.Module):
    """Base of all neuron modules: maps input frames (T_in*B, ...) to output frames.

    Subclasses implement :meth:`dynamics` on time-unfolded tensors. When ``recording`` is on,
    the module accumulates spike counts in non-persistent buffers; :meth:`reset_stats` clears
    them. The dynamics themselves keep no state between calls.
    """

    snn_kind = "neuron"
    lanes = 1  # output lanes per neuron (one value per neuron per step in the frames either way)
    unit_spikes = False  # True when every output is in {-1, 0, 1}: magnitudes then equal event counts
    # constructor keywords that rebuild the module (each an attribute with a JSON-compatible value)
    serial_params: ClassVar[tuple[str, ...]] = ()
    surrogate: str = "straight-through"  # spec of the surrogate gradient (neurons/surrogates.py)

    # a pooling layer: no membrane of its own; it runs on the steps of the layer it pools (time
    # gates, snnconvert.simulate.gating) and analyses of neuron inputs skip it
    pools: ClassVar[bool] = False

    def __init__(self, steps_in: int, steps_out: int) -> None:
        super().__init__()
        self.steps_in = int(steps_in)
        self.steps_out = int(steps_out)
        self.exporting = False  # True: forward runs export_dynamics (traced by the ONNX exporter)
        self.recording = False
        self.recording_detail = True  # with recording: also the per-coding extras (e.g. TSA residual histograms)
        # (start, stop) steps of the current time chunk while the engine runs the network in
        # time chunks (snnconvert.simulate.chunks), else None: the frames hold all steps
        self.time_window: tuple[int, int] | None = None
        self._stat_names: list[str] = []
        self.register_stat("events_per_step", self.steps_out)
        self.register_stat("magnitude_per_step", self.steps_out)
        self.register_stat("samples")
        self.register_stat("neurons")

    def register_stat(self, name: str, *shape: int) -> None:
        """A statistics buffer: float64, not saved with the model, zeroed by :meth:`reset_stats`
        and kept in float64 when the network is cast with ``.float()`` / ``.to(dtype)``."""
        self.register_buffer(name, torch.zeros(shape, dtype=torch.float64), persistent=False)
        self._stat_names.append(name)

    def additive_stats(self) -> dict[str, Tensor]:
        """The statistics buffers that add up over images (all but ``neurons``, a layer size):
        what ranks that ran different images sum (see :meth:`set_stat`)."""
        return {name: self._buffers[name] for name in self._stat_names if name != "neurons"}

    def set_stat(self, name: str, value: Tensor) -> None:
        """Replace the statistics buffer ``name`` (kept in float64 where it was)."""
        if name not in self._stat_names:
            raise KeyError(f"{type(self).__name__} has no statistic {name!r}")
        old = self._buffers[name]
        self._buffers[name] = value.to(device=old.device, dtype=torch.float64).reshape(old.shape)

    def reset_stats(self) -> None:
        for name in self._stat_names:
            self._buffers[name] = torch.zeros_like(self._buffers[name], dtype=torch.float64)

    def _apply(self, fn, recurse: bool = True):  # noqa: ANN001 - nn.Module's signature
        result = super()._apply(fn, recurse)
        for name in self._stat_names:
            self._buffers[name] = self._buffers[name].to(torch.float64)
        return result

    @property
    def supports_chunks(self) -> bool:
        """Whether the layer can run in time chunks (``time_window`` set), carrying its state
        from one chunk to the next in ``chunk_state`` with the same floats as one call."""
        return False

    def reset_chunk_state(self) -> None:
        """Forget the state carried between time chunks (the engine calls it after every run)."""
        self.time_window = None
        for name in [n for n in self._buffers if n.startswith("chunk_state")]:
            self._buffers[name] = None

    def forward(self, frames: Tensor) -> Tensor:
        window = self.time_window
        run = self.export_dynamics if self.exporting else self.dynamics
        out = run(unfold_time(frames, self.steps_in if window is None else window[1] - window[0]))
        if self.recording:
            self._record(out)
        return fold_time(out)

    # ------------------------------------------------------------------ the neuron protocol
    # Core code (export, training, reports, serialization) reaches a neuron only through these
    # methods; a new neuron kind overrides the ones it supports (see docs/extend.md).

    def dynamics(self, inputs: Tensor) -> Tensor:  # (T_in, B, ...) -> (T_out, B, ...)
        """The layer's equations on time-unfolded frames: the fast in-place path when no gradient
        is needed (:meth:`needs_grad`), else the differentiable path with the same values."""
        raise NotImplementedError

    def export_dynamics(self, inputs: Tensor) -> Tensor:
        """:meth:`dynamics` in operations the ONNX exporter traces faithfully (out of place, no
        float bit tricks, no ``out=``). Default: :meth:`dynamics` itself."""
        return self.dynamics(inputs)

    def step_states(self) -> tuple[StepState, ...]:
        """The state of one-frame-at-a-time execution (:meth:`step`), declared once; empty when
        the neuron has no one-frame update."""
        return ()

    def step_refusal(self) -> str | None:
        """Why this layer cannot run one frame at a time (None: it can, see :meth:`step`)."""
        return None if self.step_states() else "no one-frame update"

    def step(self, frame: Tensor, state: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """One time step: the input frame (B, ...) and the state by :meth:`step_states` name ->
        the output frame and the new state. Running it ``steps_in`` times from the initial state
        gives :meth:`dynamics`' frames. Used by the ONNX step export and streaming runtimes."""
        raise NotImplementedError(f"{type(self).__name__} has no one-frame update")

    def make_trainable(self, *, learn_threshold: bool, learn_leak: bool, channels: Callable[[], int] | None,
                       dtype: torch.dtype, device: torch.device) -> None:
        """Add the parameters fine-tuning may learn (called on a copy by
        :func:`snnconvert.neurons.trainable.make_trainable`). ``channels`` (given when
        per-channel parameters are wanted) tells the layer's channel count (it raises when unknown). The
        copy must compute what the original did until the parameters move. Default: nothing
        learnable (the surrogate alone drives training)."""

    def reset_threshold(self, theta: float, *, trainable: bool, dtype: torch.dtype, device: torch.device) -> bool:
        """Set the firing threshold to ``theta`` (threshold units) on every channel, adding a
        ``threshold`` parameter (trained when ``trainable``) if the layer has none; used to wake
        a layer that never fires. False: the layer has no threshold to move (the default)."""
        return False

    def reset_learned_threshold(self, theta: float, *, trainable: bool, dtype: torch.dtype,
                                device: torch.device) -> bool:
        """:meth:`reset_threshold` of neurons built with :meth:`init_learnable`."""
        if self.threshold is None:
            self.threshold = nn.Parameter(torch.full((self.channels,), theta, dtype=dtype, device=device),
                                          requires_grad=trainable)
            self.learn_threshold = True
        else:
            with torch.no_grad():
                self.threshold.fill_(theta)
        return True

    has_membrane: ClassVar[bool] = False  # True: membrane_run is implemented

    def membrane_run(self, inputs: Tensor, clip: float | None) -> tuple[Tensor, Tensor]:
        """The layer's recursion with the post-spike membrane clipped at ``clip`` (threshold
        units; None: no clip): ``(spikes (T, B, ...), membrane after the first step (B, ...))``,
        for the membrane analyses. Only for ``has_membrane`` neurons."""
        raise NotImplementedError(f"{type(self).__name__} has no membrane recursion to probe")

    def to_nir(self, shape: tuple[int, ...], *, dt: float, fold_input: bool,
               reset: str = "zero") -> NirNeuron | None:
        """The NIR node of this layer for frames of per-image ``shape`` and time step ``dt``, or
        None when NIR has no primitive for it (the export then refuses the network, naming the
        class). ``fold_input``: the export can multiply the synapse feeding this layer by
        :attr:`NirNeuron.input_scale` (otherwise the node must take its input as it is).
        ``reset``: what a spike does to a membrane in the file, ``"zero"`` (NIR's meaning: set to
        ``v_reset = 0``) or ``"subtract"`` (the file's stated convention: subtract the threshold);
        a layer that resets otherwise lists that among its differences."""
        return None

    def needs_grad(self, inputs: Tensor) -> bool:
        """Whether to take the differentiable path: grad mode is on and the input or one of the
        neuron's own parameters requires a gradient (otherwise the in-place fast path runs)."""
        return torch.is_grad_enabled() and (
            inputs.requires_grad or any(p.requires_grad for p in self.parameters(recurse=False))
        )

    def init_learnable(self, learn_threshold: bool, learn_leak: bool, channels: int, leak: float) -> None:
        """Register ``threshold`` (ones: threshold units) and ``leak`` (``leak``) parameters of
        ``channels`` entries when asked, else ``None``; records the constructor flags."""
        self.learn_threshold, self.learn_leak, self.channels = bool(learn_threshold), bool(learn_leak), int(channels)
        self.register_parameter("threshold", nn.Parameter(torch.ones(self.channels)) if learn_threshold else None)
        self.register_parameter("leak", nn.Parameter(torch.full((self.channels,), float(leak)))
                                if learn_leak else None)

    def add_threshold_leak(self, *, learn_threshold: bool, learn_leak: bool, channels: Callable[[], int] | None,
                           dtype: torch.dtype, device: torch.device, leak: float) -> None:
        """:meth:`make_trainable` of neurons built with :meth:`init_learnable`: add ``threshold``
        (ones) and ``leak`` (``leak``) parameters where missing, per layer or, when ``channels``
        is given and the layer has neither yet, one per channel."""
        count = self.channels
        if self.threshold is None and self.leak is None and channels is not None:
            count = channels()
        if learn_threshold and self.threshold is None:
            self.threshold = nn.Parameter(torch.ones(count, dtype=dtype, device=device))
            self.learn_threshold = True
        if learn_leak and self.leak is None:
            self.leak = nn.Parameter(torch.full((count,), leak, dtype=dtype, device=device))
            self.learn_leak = True
        self.channels = count

    @staticmethod
    def per_channel(param: Tensor | None, dims: int) -> Tensor | None:
        """``param`` (one entry, or one per channel) shaped to broadcast over a (B, C, ...)
        frame of ``dims`` dimensions (channel axis 1)."""
        if param is None or param.numel() == 1:
            return None if param is None else param.reshape(())
        return param.view((-1,) + (1,) * (dims - 2))

    @torch.no_grad()
    def _record(self, out: Tensor) -> None:
        batch = out.shape[1]
        flat = out.reshape(out.shape[0], -1)
        events = nonzero_per_row(flat, self.unit_spikes)
        window = self.time_window
        steps = slice(None) if window is None else slice(window[0], window[1])
        self.events_per_step[steps] += events
        if self.unit_spikes:  # every spike has magnitude 1
            self.magnitude_per_step[steps] += events
        else:
            self.magnitude_per_step[steps] += torch.linalg.vector_norm(flat, 1, dim=1).double()
        if window is None or window[0] == 0:  # a time chunk after the first one sees the same samples
            self.samples += batch
        self.neurons.fill_(flat.shape[1] // batch)

    def stats(self, name: str) -> SpikeStats:
        n = max(float(self.samples), 1.0)
        return SpikeStats(
            name=name,
            neurons=int(self.neurons),
            lanes=self.lanes,
            samples=int(self.samples),
            events_per_step=(self.events_per_step / n).tolist(),
            magnitude_per_step=(self.magnitude_per_step / n).tolist(),
        )
