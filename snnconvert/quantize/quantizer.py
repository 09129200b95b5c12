"""Post-training quantization and quantization-aware training of a prepared graph."""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass, field

import torch
from torch import Tensor, fx, nn
from torch.utils.data import DataLoader

from snnconvert.configs.quantize import QuantizeConfig
from snnconvert.device import resolve_device
from snnconvert.distributed import DistContext
from snnconvert.errors import SnnConvertError
from snnconvert.graph.capture import propagate_shapes
from snnconvert.graph.modules import PadWithValues
from snnconvert.graph.ops import Kind, activation_of, kind_of, module_of
from snnconvert.graph.passes import add_module_after, bn_as_affine, recompile_graph, set_module
from snnconvert.options import opt
from snnconvert.progress import track
from snnconvert.quantize.histogram import ClipStats, RangeDoublingHistogram
from snnconvert.quantize.modules import ActQuant, QConv2d, QConvBn2d, QLinear
from snnconvert.training import StepHooks, StepLoss, train_epoch

INPUT_QUANT = "input_quant"


@dataclass
class QATSchedule:
    """Appendix A.2 of the SWS paper (12 epochs: BN frozen after 3, quantizers after 5), scaled."""

    epochs: int

    @property
    def freeze_bn_epoch(self) -> int:
        return max(1, round(self.epochs * 3 / 12)) if self.epochs > 1 else self.epochs

    @property
    def freeze_quant_epoch(self) -> int:
        return min(self.epochs, max(self.freeze_bn_epoch + 1, round(self.epochs * 5 / 12)))


@dataclass
class QuantizeResult:
    model: fx.GraphModule
    clip_stats: list[ClipStats]
    qat_history: list[dict[str, float]] = field(default_factory=list)


def insert_quantizers(gm: fx.GraphModule, config: QuantizeConfig, *, inplace: bool = False) -> fx.GraphModule:
    """Replace conv/linear by weight-quantized layers and put an activation quantizer after the
    input and after every ReLU-type activation. Conv + batch-norm pairs (kept for QAT) become
    :class:`QConvBn2d`."""
    gm = gm if inplace else copy.deepcopy(gm)
    for node in list(gm.graph.nodes):
        kind = kind_of(gm, node)
        mod = module_of(gm, node)
        if kind is Kind.WEIGHTED:
            bn_user = _sole_bn_user(gm, node)
            if bn_user is not None and isinstance(mod, nn.Conv2d):
                set_module(gm, node.target, QConvBn2d.from_conv_bn(mod, module_of(gm, bn_user), config.w_bits))
                bn_user.replace_all_uses_with(node)
                gm.graph.erase_node(bn_user)
            elif isinstance(mod, nn.Conv2d):
                set_module(gm, node.target, QConv2d.from_float(mod, config.w_bits))
            else:
                set_module(gm, node.target, QLinear.from_float(mod, config.w_bits))
        elif kind is Kind.NORM:
            set_module(gm, node.target, bn_as_affine(mod))
        elif kind is Kind.ACTIVATION:
            channels = _channels(node) if config.per_channel else 1
            quant = ActQuant(config.bits, channels, upper=activation_of(gm, node).upper)
            add_module_after(gm, node, quant, f"{node.name}_quant")
        elif kind is Kind.INPUT:
            channels = _channels(node) if config.per_channel else 1
            add_module_after(gm, node, ActQuant(config.bits, channels), INPUT_QUANT)
    return recompile_graph(gm)


def _sole_bn_user(gm: fx.GraphModule, node: fx.Node) -> fx.Node | None:
    users = list(node.users)
    if len(users) == 1 and kind_of(gm, users[0]) is Kind.NORM:
        return users[0]
    return None


def _channels(node: fx.Node) -> int:
    meta = node.meta.get("tensor_meta")
    if meta is None or len(meta.shape) < 2:
        return 1
    return int(meta.shape[1])


def quantizers(gm: nn.Module) -> dict[str, ActQuant]:
    return {name: m for name, m in gm.named_modules() if isinstance(m, ActQuant)}


def weight_layers(gm: nn.Module) -> dict[str, QConv2d | QLinear]:
    return {name: m for name, m in gm.named_modules() if isinstance(m, (QConv2d, QLinear))}


def set_quantization(gm: nn.Module, enabled: bool) -> None:
    """Turn all fake quantization on or off (off: the model computes in float)."""
    for q in quantizers(gm).values():
        q.enabled = enabled
    for layer in weight_layers(gm).values():
        layer.quantize_weights = enabled


@torch.no_grad()
def calibrate(
    gm: fx.GraphModule, loader: DataLoader, config: QuantizeConfig, *, show_progress: bool = False
) -> list[ClipStats]:
    """Collect activation histograms in one pass over ``loader`` and set every quantizer's range.

    The model runs on the device its parameters are on; histograms are kept on the CPU."""
    quants = quantizers(gm)
    device = _device_of(gm)
    hists: dict[str, RangeDoublingHistogram] = {}
    hooks = []

    def observe(name: str):
        def hook(module: ActQuant, inputs: tuple, _output: torch.Tensor) -> None:
            x = inputs[0].detach().cpu()
            if name not in hists:
                hists[name] = RangeDoublingHistogram(module.scale.numel())
            hists[name].update(x)

        return hook

    for name, q in quants.items():
        hooks.append(q.register_forward_hook(observe(name)))
    set_quantization(gm, False)
    was_training = gm.training
    gm.eval()
    try:
        for images, _labels in track(loader, "calibrating", show=show_progress):
            gm(images.to(device))
    finally:
        for h in hooks:
            h.remove()
        set_quantization(gm, True)
        gm.train(was_training)
    if not hists:
        raise SnnConvertError("calibration saw no data: the calibration split is empty")
    stats = []
    for name, q in quants.items():
        hist = hists[name]
        if name == INPUT_QUANT:
            low = torch.minimum(hist.min_seen.float(), torch.zeros(()))
            high = torch.maximum(hist.max_seen.float(), torch.ones(()))  # raw pixels span [0, 1]
            q.set_range(low, high)
            clip = high.double().expand(hist.channels)
            stats.append(ClipStats.from_histogram(name, hist, clip, "input range"))
            continue
        clip = hist.clip(config.clip_method, config.percentile, q.bits)
        clip = torch.where(clip > 0, clip, hist.max_seen.clamp(min=1e-6))
        q.set_range(torch.zeros(()), clip.float())
        stats.append(ClipStats.from_histogram(name, hist, q.clip_range()[1].double(), config.clip_method))
    return stats


def _device_of(gm: nn.Module) -> torch.device:
    return next((p.device for p in gm.parameters()), torch.device("cpu"))


def finalize(gm: fx.GraphModule) -> fx.GraphModule:
    """Freeze the quantized model: fold QAT batch-norms, snap weights and input pads to the grid,
    freeze all scales. The result computes exactly what conversion reproduces."""
    for node in gm.graph.nodes:
        mod = module_of(gm, node)
        if isinstance(mod, QConvBn2d):
            set_module(gm, node.target, mod.to_qconv())
    for layer in weight_layers(gm).values():
        layer.refresh_weight_scale()
        layer.w_scale_frozen = True
        shape = (-1,) + (1,) * (layer.weight.dim() - 1)
        with torch.no_grad():
            layer.weight.copy_(layer.integer_weight().float() * layer.w_scale.view(shape))
    for q in quantizers(gm).values():
        q.scale.requires_grad_(False)
    snap_input_pads(gm)
    gm.eval()
    gm.recompile()
    return gm


def snap_input_pads(gm: fx.GraphModule) -> None:
    """Pads right after the input quantizer pad with values on its integer grid (in place, in the
    dtype of ``gm``: float32 storage rounds a grid value to 24 bits; a float64 copy holds it exactly)."""
    quant_node = next((n for n in gm.graph.nodes if n.op == "call_module" and n.target == INPUT_QUANT), None)
    if quant_node is None:
        return
    quant: ActQuant = gm.get_submodule(INPUT_QUANT)
    for user in quant_node.users:
        pad = module_of(gm, user)
        if isinstance(pad, PadWithValues):
            with torch.no_grad():
                v = pad.values.view(1, -1, 1, 1)
                pad.values.copy_(quant(v).view(-1))


def qat_finetune(
    gm: fx.GraphModule,
    loader: DataLoader,
    config: QuantizeConfig,
    *,
    show_progress: bool = False,
) -> list[dict[str, float]]:
    """Quantization-aware fine-tuning with the schedule of the SWS paper's appendix A.2:
    SGD (momentum 0.9, lr 1e-4); batch-norm statistics frozen after 3/12 of the epochs and the
    quantizer parameters (scales) after 5/12.

    Runs on the device of ``gm``. Under ``torchrun`` (``WORLD_SIZE = W > 1``) it is data-parallel:
    every rank's loader yields the same seeded batches, rank r trains on batches r, r + W, ...
    (``batches // W`` each) and ``DistributedDataParallel`` averages the gradients, so each step
    sees W batches; the caller starts the process group (:class:`~snnconvert.distributed.DistContext`).
    """
    schedule = QATSchedule(config.qat_epochs)
    device = _device_of(gm)
    ctx = DistContext.from_env()
    torch.manual_seed(config.seed)
    for q in quantizers(gm).values():
        q.scale.requires_grad_(True)
    params = [p for p in gm.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=config.qat_lr, momentum=config.qat_momentum)
    loss_fn = nn.CrossEntropyLoss()
    history = []
    for epoch in range(config.qat_epochs):
        if epoch >= schedule.freeze_bn_epoch:
            for m in gm.modules():
                if isinstance(m, QConvBn2d):
                    m.bn_frozen = True
        if epoch >= schedule.freeze_quant_epoch:
            for q in quantizers(gm).values():
                q.scale.requires_grad_(False)
            for layer in weight_layers(gm).values():
                layer.w_scale_frozen = True
        gm.train()
        for m in gm.modules():
            if isinstance(m, QConvBn2d) and m.bn_frozen:
                m.bn.eval()
        step_module: nn.Module = gm
        if ctx.enabled:  # rebuilt each epoch: DDP synchronizes what requires grad when it is built
            from torch.nn.parallel import DistributedDataParallel

            step_module = DistributedDataParallel(gm, device_ids=[device.index] if device.type == "cuda" else None)
        limit = config.qat_batches_per_epoch
        batches = len(loader) if limit is None else min(limit, len(loader))
        batches -= batches % ctx.world_size  # every rank takes the same number of steps
        mine = set(ctx.shard(batches))
        own = (batch for i, batch in enumerate(itertools.islice(loader, batches)) if i in mine)  # no batch past them

        def compute(images: Tensor, labels: Tensor, step_module: nn.Module = step_module) -> StepLoss:
            logits = step_module(images)
            loss = loss_fn(logits, labels)
            return StepLoss(loss, loss, logits)

        def clamp_scales(k: int) -> None:
            with torch.no_grad():
                for q in quantizers(gm).values():
                    q.scale.clamp_(min=1e-8)

        totals = train_epoch(
            own, len(mine), compute, optimizer, device=device, hooks=StepHooks(after=clamp_scales),
            description=f"QAT epoch {epoch + 1}/{config.qat_epochs}", show=show_progress and ctx.is_main,
            world_size=ctx.world_size,
            diverged=lambda value, k: f"quantization-aware training diverged (loss is not finite); lower "
                                      f"{opt(QuantizeConfig, 'qat_lr')}",
        ).summed(ctx, device)
        history.append(
            {
                "epoch": epoch + 1,
                "loss": totals.loss,
                "bn_frozen": float(epoch >= schedule.freeze_bn_epoch),
                "quant_frozen": float(epoch >= schedule.freeze_quant_epoch),
            }
        )
    gm.eval()
    return history


def quantize_graph(
    prepared: fx.GraphModule,
    calib_loader: DataLoader,
    config: QuantizeConfig,
    *,
    example_shape: tuple[int, ...],
    train_loader: DataLoader | None = None,
    show_progress: bool = False,
) -> QuantizeResult:
    """Quantize a prepared graph (PTQ, then QAT when ``config.qat_epochs > 0``)."""
    config.validate()
    qgm = insert_quantizers(prepared, config)
    propagate_shapes(qgm, example_shape)
    device = resolve_device(config.device)
    ctx = DistContext.from_env()
    if ctx.enabled and device.type == "cuda":
        device = torch.device("cuda", ctx.local_rank)
    qgm.to(device)
    stats = calibrate(qgm, calib_loader, config, show_progress=show_progress)
    history: list[dict[str, float]] = []
    if config.qat_epochs > 0:
        if train_loader is None:
            raise SnnConvertError(f"quantization-aware training needs training data ({opt('quantize', 'data')})")
        ctx.init(device)
        try:
            history = qat_finetune(qgm, train_loader, config, show_progress=show_progress)
        finally:
            ctx.close()
    qgm.cpu()
    finalize(qgm)
    propagate_shapes(qgm, example_shape)
    return QuantizeResult(qgm, stats, history)
