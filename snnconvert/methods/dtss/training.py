"""Training method ``dtss``: dynamic per-layer time steps (DTSS paper §III, eqs 3-10).

``prepare`` puts a :class:`~snnconvert.methods.dtss.mask.DTSSMask` after every firing neuron layer
of a LIF-family SNN (rate / IF, M-LIF and the Spikformer converted with either; after the
max-pool when a neuron feeds only a pool), each with ``T_max`` trainable scores initialised to
keep ``init_steps`` steps and never fewer than ``min_steps`` (a floor, 1 by default, so no layer
can learn 0 steps). ``loss`` is the mask loss of eq 8, ``lambda_m * sum_l sum_t TM_l^t``
over the masks of the selected layer groups (table III: ``sps``, ``qkv``, ``attn``, ``mlp``;
``all`` for every mask, the CNN case); its gradient and the task loss's reach the scores
through the box surrogate of eq 6 (eqs 10-11); ``warmup_steps`` ramps ``lambda_m`` linearly
from 0 over the first optimizer steps, so the task loss shapes the masks first. After every
optimizer step the scores are projected onto ``TP >= 0`` so that each mask stays a prefix of
ones. ``record`` adds ``T_avg`` (eq 3) and the per-layer ``T_l`` to each epoch's history.

CLI: ``snnconvert finetune --dtss --t-max 4 --lambda-m 1e-4 --dtss-groups qkv,mlp --dtss-min-steps 1``
(sugar for ``--method dtss --method-option dtss.lambda_m=1e-4 ...``; :func:`flag_options`).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, fx, nn

from snnconvert.errors import SnnConvertError, option_ref
from snnconvert.finetune.methods import TrainingMethod, register_method
from snnconvert.graph.attention import SpikingAttention
from snnconvert.graph.passes import add_module_after, recompile_graph
from snnconvert.methods.dtss.config import OPTIONS, DTSSConfig
from snnconvert.methods.dtss.mask import DTSSMask, dtss_masks, t_avg
from snnconvert.methods.rate.neuron import IFNeuron, RateMaxPool
from snnconvert.models.spikformer import layer_group
from snnconvert.neurons.base import SpikingNeuron
from snnconvert.options import opt


def steps_of(snn: nn.Module) -> int:
    """The number of time steps every layer of ``snn`` runs (``info['T']`` or ``frames``)."""
    info = getattr(snn, "info", {})
    steps = info.get("T", info.get("frames"))
    if not isinstance(steps, int) or steps < 1:
        raise SnnConvertError("dtss needs an SNN whose layers all run T steps (rate, M-LIF codings)")
    return steps


def _mask_site(gm: fx.GraphModule, node: fx.Node) -> fx.Node:
    """Where the mask of neuron ``node`` goes: after it, or after the max-pool it alone feeds."""
    users = list(node.users)
    if len(users) == 1 and users[0].op == "call_module" and isinstance(gm.get_submodule(users[0].target),
                                                                        RateMaxPool):
        return users[0]
    return node


def insert_masks(snn: nn.Module, steps: int, init_steps: int, min_steps: int = 1) -> list[str]:
    """Put a DTSS mask after every firing neuron layer of ``snn.body`` (in place); returns the
    masked layers' names."""
    gm = snn.body
    if not isinstance(gm, fx.GraphModule):
        raise SnnConvertError("dtss needs an SNN with an fx body (a converted network)")
    if dtss_masks(snn):
        raise SnnConvertError(f"this SNN already has DTSS masks; fine-tune it without {opt('finetune', 'method')} dtss "
                              "again")
    layers = []
    for node in list(gm.graph.nodes):
        if node.op != "call_module":
            continue
        mod = gm.get_submodule(node.target)
        if not isinstance(mod, SpikingNeuron) or isinstance(mod, RateMaxPool):
            continue
        if getattr(mod, "steps_out", steps) != steps:
            raise SnnConvertError(f"dtss: layer {node.target} runs {mod.steps_out} steps, not {steps}")
        name = str(node.target)
        mask = DTSSMask(steps, layer_group(name), init_steps, layer=name, min_steps=min_steps)
        add_module_after(gm, _mask_site(gm, node), mask, f"{name}_dtss")
        layers.append(name)
    for mod in gm.modules():
        if isinstance(mod, SpikingAttention):
            mod.steps = steps  # frames per sample: lets it skip masked frames at inference
    recompile_graph(gm)
    if not layers:
        raise SnnConvertError("dtss found no LIF-family neuron layer to mask")
    return layers


def prepare(model: nn.Module, config: DTSSConfig) -> nn.Module:
    steps = steps_of(model)
    t_max = config.t_max or steps
    if t_max != steps:
        raise SnnConvertError(f"{opt(DTSSConfig, 't_max')} {t_max} but the SNN runs T={steps} steps: convert with "
                              f"{option_ref('T', '--T')} {t_max}")
    init = config.init_steps or math.ceil(t_max / 2)
    if init > t_max:
        raise SnnConvertError(f"dtss.init_steps={init} is more than T_max={t_max}")
    if config.min_steps > t_max:
        raise SnnConvertError(f"dtss.min_steps={config.min_steps} is more than T_max={t_max}")
    layers = insert_masks(model, t_max, init, config.min_steps)
    if config.order != "keep":
        for neuron in model.modules():
            if isinstance(neuron, IFNeuron):
                neuron.order = config.order
                if config.order == "dtss":
                    neuron.init = 0.0  # eqs 1-2 start from U^0 = 0
    model.info = dict(model.info)
    model.info["dtss"] = {"t_max": t_max, "init_steps": init, "lambda_m": config.lambda_m,
                          "min_steps": config.min_steps, "warmup_steps": config.warmup_steps,
                          "groups": sorted(config.group_set(tuple(m.group for m in dtss_masks(model).values()))),
                          "layers": layers}
    return model


def mask_loss(model: nn.Module, config: DTSSConfig) -> Tensor | None:
    """Eq 8's ``lambda_m * sum_{l_s} sum_t TM_{l_s}^t`` over the selected groups (each term
    times its mask's warm-up ``loss_weight``)."""
    masks = list(dtss_masks(model).values())
    chosen = config.group_set(tuple(m.group for m in masks))
    terms = [m.loss_weight * m.mask().sum() for m in masks if m.group in chosen]
    if not terms or config.lambda_m == 0:
        return None
    return config.lambda_m * torch.stack(terms).sum()


def _before_step(model: nn.Module, config: DTSSConfig, step: int, images: Tensor) -> None:
    weight = min(1.0, (step + 1) / config.warmup_steps) if config.warmup_steps else 1.0
    for m in dtss_masks(model).values():
        m.loss_weight = weight


def _after_step(model: nn.Module, config: DTSSConfig, step: int) -> None:
    for m in dtss_masks(model).values():
        m.project()


def kept_steps(model: nn.Module) -> dict[str, int]:
    """``T_l`` of every masked layer, by layer name."""
    return {m.layer or name: m.kept_steps() for name, m in dtss_masks(model).items()}


def record(model: nn.Module, config: DTSSConfig) -> dict[str, Any]:
    kept = kept_steps(model)
    return {"T_avg": t_avg(kept), "T_per_layer": kept} if kept else {}


def parameter_groups(model: nn.Module, config: DTSSConfig) -> list[tuple[list[nn.Parameter], float]]:
    scores = [m.scores for m in dtss_masks(model).values()]
    return [(scores, config.score_lr)] if scores else []


def flag_options(t_max: int | None = None, lambda_m: float | None = None, groups: str | None = None,
                 min_steps: int | None = None) -> list[str]:
    """The CLI's sugar flags (``--t-max``, ``--lambda-m``, ``--dtss-groups``,
    ``--dtss-min-steps``) as ``--method-option`` texts of this method (given ones only)."""
    given = {"t_max": t_max, "lambda_m": lambda_m, "groups": groups, "min_steps": min_steps}
    return [f"dtss.{key}={value}" for key, value in given.items() if value is not None]


METHOD = register_method(TrainingMethod.of(
    OPTIONS,
    prepare=prepare,
    loss=mask_loss,
    before_step=_before_step,
    after_step=_after_step,
    record=record,
    parameter_groups=parameter_groups,
))
