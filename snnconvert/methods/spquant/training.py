"""Training method ``spquant``: the training-time parts of SpQuant-SNN (paper 001).

``finetune --method spquant`` on an SNN of the ``spquant`` coding:

* ``prepare``: adds each neuron layer's learnable threshold, trained through the separate
  gradient path of eqs 24-27 (``learn_threshold``); with ``weight_bits`` switches every synapse
  to b-bit power-of-two weights (eqs 14-18) with a learnable power-of-two scale, the scale
  initialised from the current weights (PoT as a fine-tuning option);
* ``loss``: off by default (the paper's gates learn from the task loss alone); with
  ``mask_weight`` > 0 and keep-skip gates it drives them towards ``channel_sparsity`` masked
  channels: ``mask_weight * (mean keep probability - (1 - channel_sparsity))^2`` per gated layer;
* ``parameter_groups``: gates at ``gate_lr``, PoT scales at ``scale_lr`` (fixed, unscheduled);
* ``record``: the channel sparsity of the last batch and the mean threshold, per epoch.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from snnconvert.errors import SnnConvertError
from snnconvert.finetune.methods import TrainingMethod, register_method
from snnconvert.methods.spquant.config import TRAINING, SpQuantMethodConfig
from snnconvert.methods.spquant.neuron import ChannelGate, SpQuantNeuron
from snnconvert.methods.spquant.pot import PoTConv2d, PoTLinear


def _neurons(model: nn.Module) -> list[SpQuantNeuron]:
    return [m for m in model.modules() if isinstance(m, SpQuantNeuron)]


def _gates(model: nn.Module) -> list[ChannelGate]:
    return [m for m in model.modules() if isinstance(m, ChannelGate)]


def prepare(model: nn.Module, cfg: SpQuantMethodConfig) -> nn.Module:
    neurons = _neurons(model)
    if not neurons:
        raise SnnConvertError("training method spquant needs an SNN of the spquant coding (to-snn --coding spquant)")
    if cfg.learn_threshold:
        for n in neurons:
            n.enable_threshold()
    if cfg.weight_bits is not None:
        for m in model.modules():
            if isinstance(m, (PoTConv2d, PoTLinear)) and m.bits != cfg.weight_bits:
                m.init_pot(cfg.weight_bits)
        info = getattr(model, "info", None)
        if isinstance(info, dict):
            info["weight_bits"] = cfg.weight_bits
    if cfg.mask_weight > 0 and any(g.rule == "eq23" for g in _gates(model)):
        raise SnnConvertError("the channel-sparsity loss (spquant.mask_weight > 0) needs gates of rule keep-skip: "
                              "eq 23's softmax shares always sum to 1, so their mean cannot move (convert with "
                              "gate_rule=keep-skip, or leave mask_weight at 0)")
    for g in _gates(model):
        g.track_keep = True
    return model


def loss(model: nn.Module, cfg: SpQuantMethodConfig) -> Tensor | None:
    terms = [(g.last_keep.mean() - (1.0 - cfg.channel_sparsity)) ** 2
             for g in _gates(model) if g.last_keep is not None]
    if not terms or cfg.mask_weight == 0:
        return None
    return cfg.mask_weight * torch.stack(terms).sum()


def parameter_groups(model: nn.Module, cfg: SpQuantMethodConfig) -> list[tuple[list[nn.Parameter], float]]:
    gates = [p for g in _gates(model) for p in g.parameters()]
    scales = [m.log_scale for m in model.modules() if isinstance(m, (PoTConv2d, PoTLinear)) and m.bits is not None]
    groups = []
    if gates:
        groups.append((gates, cfg.gate_lr))
    if scales:
        groups.append((scales, cfg.scale_lr))
    return groups


def record(model: nn.Module, cfg: SpQuantMethodConfig) -> dict[str, Any]:
    gated = [g for g in _gates(model) if g.last_keep_value is not None]
    thresholds = [float(n.threshold.detach().mean()) for n in _neurons(model) if n.threshold is not None]
    out: dict[str, Any] = {}
    if gated:
        masked = torch.cat([(g.last_keep_value < g.threshold).double().reshape(-1) for g in gated])
        out["spquant_channel_sparsity"] = float(masked.mean())
    if thresholds:
        out["spquant_mean_threshold"] = sum(thresholds) / len(thresholds)
    return out


METHOD = register_method(TrainingMethod.of(
    TRAINING,
    prepare=prepare,
    loss=loss,
    parameter_groups=parameter_groups,
    record=record,
))
