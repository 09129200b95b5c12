"""The ``toy-lif`` coding: every ReLU becomes a :class:`HardResetLIF` layer whose threshold is
the 99.9th percentile of the activation on the calibration images; the input image is a
constant current for T steps and the readout is the mean of the T output frames."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from snnconvert.codings import Coding, ConversionInputs, option, register_coding
from snnconvert.codings.common import calibration_percentiles, insert_neurons, replace_synapses, rewrite_maxpools
from snnconvert.codings.gains import fold_gains
from snnconvert.errors import SnnConvertError
from snnconvert.graph.ops import Kind, kind_of
from snnconvert.graph.passes import recompile_graph
from snnconvert.simulate.encoders import RepeatEncoder
from snnconvert.simulate.network import SpikingNetwork
from snnconvert.simulate.synapse import WeightedSumDecoder
from toy_neuron.neuron import HardResetLIF

PERCENTILE = 99.9


@dataclass
class ToyLIFConfig:
    T: int = option(8, help="Time steps.")
    decay: float = option(1.0, help="Membrane decay per step, in (0, 1].")

    def validate(self) -> None:
        if isinstance(self.T, bool) or not isinstance(self.T, int) or self.T < 1:
            raise SnnConvertError(f"--T {self.T!r} is not possible: give a positive integer")
        if not 0 < float(self.decay) <= 1:
            raise SnnConvertError(f"--decay {self.decay!r} is not possible: give a number in (0, 1]")


def convert(inputs: ConversionInputs, cfg: ToyLIFConfig) -> SpikingNetwork:
    cfg.validate()
    stats = calibration_percentiles(inputs, (PERCENTILE,))
    gm = copy.deepcopy(inputs.float_model)
    replace_synapses(gm, torch.ones(cfg.T, dtype=torch.float64))
    gm.double()
    plan = {n.name: (HardResetLIF(cfg.T, cfg.decay), stats[n.name][PERCENTILE].double().clamp(min=1e-6))
            for n in gm.graph.nodes if kind_of(gm, n) is Kind.ACTIVATION}
    layers = insert_neurons(gm, plan)
    rewrite_maxpools(gm)
    recompile_graph(gm)
    fold_gains(gm)
    snn = SpikingNetwork("toy-lif")
    snn.encoder, snn.body, snn.decoder = RepeatEncoder(cfg.T), gm.float(), WeightedSumDecoder(cfg.T)
    snn.info = {"coding": "toy-lif", "frames": cfg.T, "latency": cfg.T, "T": cfg.T,
                "latency_terms": "T steps", "neuron_layers": layers}
    return snn


TOY_CODING = register_coding(Coding(name="toy-lif", summary="toy: hard-reset LIF neurons (a test plugin)",
                                    config=ToyLIFConfig, convert=convert, needs_calibration=lambda _cfg: True))
