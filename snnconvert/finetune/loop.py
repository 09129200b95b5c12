"""The training loop: backpropagation through time over the time-folded simulator.

The network that trains is the ``SpikingNetwork`` that ``evaluate`` runs (a trainable deep copy
of it): its encoder and body run once per batch on time-folded frames, the decoder gives the
logits and, for TET, the body's output frames give per-step logits (see ``losses.TrainView``).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.markup import escape
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler

from snnconvert.core import QuantizedModel
from snnconvert.data.datasets import TensorImageDataset
from snnconvert.device import resolve_device
from snnconvert.distributed import DistContext
from snnconvert.errors import SnnConvertError
from snnconvert.finetune.augment import apply, default_pad, draw
from snnconvert.finetune.checkpoint import (
    CHECKPOINT_NAME,
    check_compatible,
    load_checkpoint,
    restore_rng,
    rng_state,
    save_checkpoint,
)
from snnconvert.finetune.config import FinetuneConfig
from snnconvert.finetune.distill import Teacher, distillation_loss, teacher_note
from snnconvert.finetune.losses import TrainView, loss_of
from snnconvert.finetune.methods import ActiveMethod, active_methods
from snnconvert.finetune.model import (
    TrainingMonitor,
    checkpointed_neurons,
    reinit_dead_layers,
    set_dropout,
    trainable_copy,
)
from snnconvert.finetune.optim import EpochSchedule, build_optimizer
from snnconvert.finetune.report import LOG_NAME, PLOT_NAME, write_curves, write_log
from snnconvert.finetune.splits import stacked, training_data, validation_data
from snnconvert.neurons.base import SpikingNeuron
from snnconvert.options import opt
from snnconvert.simulate.network import SpikingNetwork
from snnconvert.training import EpochTotals, StepHooks, StepLoss, train_epoch


@dataclass
class FinetuneResult:
    """The trained network (on the CPU: the ``SpikingNetwork`` of :func:`finetune`, the float
    graph of :func:`finetune_ann`), the per-epoch history and the files written (None when no
    ``out_dir`` was given or on ranks other than 0)."""

    model: nn.Module
    history: list[dict[str, Any]] = field(default_factory=list)
    log_path: Path | None = None
    plot_path: Path | None = None
    checkpoint_path: Path | None = None
    stopped: str | None = None  # "time_budget" when the wall-clock budget ended the run
    info: dict[str, Any] = field(default_factory=dict)  # data, devices, notes of the run

    @property
    def snn(self) -> SpikingNetwork:
        """The trained SNN (the result of :func:`finetune`)."""
        if not isinstance(self.model, SpikingNetwork):
            raise SnnConvertError("this result holds a float ANN (finetune_ann), not an SNN")
        return self.model


@dataclass
class _Trainee:
    """What one run trains: the model (a copy), its optimizer groups, the view that returns
    ``(logits, per-step logits)``, the training methods, the teacher and whether it spikes
    (dead-layer re-initialization applies)."""

    model: nn.Module
    groups: dict[str, list[nn.Parameter]]
    view: nn.Module
    title: str
    spiking: bool = True
    methods: list[ActiveMethod] = field(default_factory=list)
    teacher: Teacher | None = None
    teacher_note: str | None = None


class _FloatView(nn.Module):
    """A float ANN as a one-step network: ``(logits, logits[None])``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        logits = self.model(images)
        return logits, logits.unsqueeze(0)


def _batch(dataset: Any, index: Tensor) -> tuple[Tensor, Tensor]:
    if isinstance(dataset, TensorImageDataset) and dataset.adapt is None:
        x = dataset.images[index]
        x = x.to(torch.float32).div_(255.0) if x.dtype == torch.uint8 else x.to(torch.float32)
        return x, torch.from_numpy(dataset.labels[index.numpy()])
    items = [dataset[int(i)] for i in index]
    return torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items])


def _batches(dataset: Any, sampler: DistributedSampler, size: int) -> Iterator[tuple[Tensor, Tensor]]:
    order = torch.tensor(list(iter(sampler)), dtype=torch.long)
    for start in range(0, len(order), size):
        yield _batch(dataset, order[start:start + size])


@torch.no_grad()
def top1(snn: nn.Module, images: Tensor, labels: Tensor, device: torch.device, batch_size: int) -> float:
    """Top-1 of ``snn`` on ``images`` (evaluation mode, no gradients)."""
    was_training = snn.training
    snn.eval()
    correct = 0
    for s in range(0, len(images), batch_size):
        logits = snn(images[s:s + batch_size].to(device))
        correct += int((logits.argmax(1).cpu() == labels[s:s + batch_size]).sum())
    snn.train(was_training)
    return correct / max(len(images), 1)


def _device_for(config: FinetuneConfig, ctx: DistContext) -> torch.device:
    device = resolve_device(config.device)
    if ctx.enabled and device.type == "cuda":
        device = torch.device("cuda", ctx.local_rank)
        torch.cuda.set_device(device)
    return device


def finetune(
    quantized: QuantizedModel,
    snn: SpikingNetwork,
    config: FinetuneConfig | None = None,
    *,
    data: str,
    val_data: str | None = None,
    out_dir: Path | None = None,
    show_progress: bool = False,
    resume: bool = False,
) -> FinetuneResult:
    """Fine-tune ``snn`` with BPTT and surrogate gradients on the training images of ``data``.

    Validation each epoch on ``val_data`` (default: the evaluation part of the calibration data),
    never on training or calibration images. With ``out_dir`` a checkpoint (every epoch), a JSON
    log and a PNG of the curves are written there; ``resume=True`` continues from its checkpoint.
    Under ``torchrun`` (``WORLD_SIZE > 1``) training is data-parallel (see ``snnconvert.distributed``).
    The input ``snn`` is not modified; the result is a trained copy on the CPU whose
    ``info["finetune"]`` records the config and the history.
    """
    config = config or FinetuneConfig()

    def trainee(device: torch.device) -> _Trainee:
        model, groups = trainable_copy(snn, config)
        methods = active_methods(config.methods)
        for method in methods:
            model = method.prepare(model)
        if methods:
            model, groups = _regrouped(model, methods)
        note = teacher_note(config.distill, quantized.float_model, quantized.info.source.endswith("/random"))
        teacher = Teacher.of(quantized.float_model, device) if config.distill == "float" and note is None else None
        return _Trainee(model, groups, TrainView(model), f"fine-tuning {snn.coding} SNN", methods=methods,
                        teacher=teacher, teacher_note=note)

    result = _train(quantized, config, trainee, data=data, val_data=val_data, out_dir=out_dir,
                    show_progress=show_progress, resume=resume)
    model = result.model
    model.info = dict(model.info)
    model.info["finetune"] = {"config": config.as_dict(), "history": result.history, **result.info,
                              "stopped": result.stopped}
    return result


def finetune_ann(
    quantized: QuantizedModel,
    config: FinetuneConfig | None = None,
    *,
    data: str,
    val_data: str | None = None,
    out_dir: Path | None = None,
    show_progress: bool = False,
    resume: bool = False,
) -> FinetuneResult:
    """Fine-tune a copy of the float ANN (``quantized.float_model``) with the same engine, data,
    optimizer, schedule, augmentation and budget as :func:`finetune`: the fair float reference
    for an SNN fine-tuned on the same images (for example the "JPEG-adapted ANN" of a network
    trained on PNGs). The loss is cross-entropy; training methods, distillation and neuron
    options do not apply and are refused. ``result.model`` is the trained float graph."""
    config = config or FinetuneConfig()
    if config.methods:
        raise SnnConvertError(f"training methods act on spiking neurons; the float ANN takes none "
                              f"(got {', '.join(sorted(config.methods))})")

    def trainee(device: torch.device) -> _Trainee:
        model = copy.deepcopy(quantized.float_model)
        for p in model.parameters():
            p.requires_grad_(p.is_floating_point())
        set_dropout(model, config.dropout, (nn.Dropout, nn.Dropout2d))  # the same regularizer as the SNN
        groups = {"other": [p for p in model.parameters() if p.requires_grad]}
        return _Trainee(model, groups, _FloatView(model), "fine-tuning the float ANN", spiking=False)

    return _train(quantized, config, trainee, data=data, val_data=val_data, out_dir=out_dir,
                  show_progress=show_progress, resume=resume)


def _train(quantized: QuantizedModel, config: FinetuneConfig, trainee: Callable[[torch.device], _Trainee], *,
           data: str, val_data: str | None, out_dir: Path | None, show_progress: bool,
           resume: bool) -> FinetuneResult:
    """Check the config, start the process group (under torchrun), build what trains on the
    device and run the epochs."""
    config.validate()
    if resume and out_dir is None:
        raise SnnConvertError("resume needs the output folder of the interrupted run (out_dir)")
    ctx = DistContext.from_env()
    device = _device_for(config, ctx)
    ctx.init(device)
    try:
        torch.manual_seed(config.seed)
        return _run(quantized, trainee(device), config, ctx, device, data=data, val_data=val_data,
                    out_dir=Path(out_dir) if out_dir is not None else None, show_progress=show_progress,
                    resume=resume)
    finally:
        ctx.close()


def _run(quantized: QuantizedModel, trainee: _Trainee, config: FinetuneConfig, ctx: DistContext,
         device: torch.device, *, data: str, val_data: str | None, out_dir: Path | None,
         show_progress: bool, resume: bool) -> FinetuneResult:
    show = show_progress and ctx.is_main
    model, groups, view, methods = trainee.model, trainee.groups, trainee.view, trainee.methods
    teacher, note = trainee.teacher, trainee.teacher_note
    model.to(device).train()
    writes = out_dir is not None and ctx.is_main
    ckpt_path = out_dir / CHECKPOINT_NAME if out_dir is not None else None
    log_path = out_dir / LOG_NAME if writes else None
    plot_path = None
    history: list[dict[str, Any]] = []
    stopped = None
    info: dict[str, Any] = {"data": data, "val_data": val_data, "world_size": ctx.world_size, "device": str(device)}

    if config.epochs > 0 or resume:
        train = training_data(quantized, data, config, show_progress=show)
        val_split = validation_data(quantized, data, val_data, train, config, show_progress=show)
        val = stacked(val_split) if val_split is not None else None
        notes = list(train.notes) + ([note] if note else [])
        probe = stacked_head(train.split.dataset, DEAD_PROBE_IMAGES).to(device) \
            if (config.reinit_dead and trainee.spiking) or teacher is not None else None
        if config.reinit_dead and trainee.spiking:
            notes += reinit_dead_layers(model, probe, config.learn_threshold)  # new thresholds stay frozen
        if teacher is not None:
            chosen = teacher.choose_standardize(config.distill_standardize, model, probe)
            notes += [chosen] if chosen else []
        if show:
            for line in notes:
                Console(stderr=True).print(f"note: {escape(line)}", highlight=False)
        info.update(train_images=len(train.split), train_description=train.split.description,
                    val_images=len(val_split) if val_split is not None else 0,
                    val_description=val_split.description if val_split is not None else None,
                    notes=notes, distill=teacher is not None,
                    distill_standardize=teacher is not None and teacher.standardize)
        optimizer = build_optimizer(groups, config)
        for method in methods:
            for params, lr in method.parameter_groups(model):
                optimizer.add_param_group({"params": params, "lr": lr, "base_lr": lr, "scheduled": False,
                                           "name": method.method.name})
        schedule = EpochSchedule(optimizer, config)
        generator = torch.Generator().manual_seed(config.seed)
        start = 0
        if resume:
            state = load_checkpoint(ckpt_path)
            check_compatible(state["config"], config.as_dict(), ckpt_path)
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            schedule.load_state_dict(state["schedule"])
            restore_rng(state["rng"], generator)
            start, history = int(state["epoch"]), [dict(r) for r in state["history"]]
            for row in history:
                row.pop("stopped", None)
        per_rank = ctx.per_rank_batch(config.batch_size)
        sampler = DistributedSampler(train.split.dataset, num_replicas=ctx.world_size, rank=ctx.rank,
                                     shuffle=True, seed=config.seed, drop_last=ctx.enabled)
        step_module: nn.Module = view
        if ctx.enabled:
            step_module = DistributedDataParallel(view, device_ids=[device.index] if device.type == "cuda" else None)
        pad = config.augment_pad if config.augment_pad is not None else default_pad(
            train.split.dataset[0][0].shape[-2])
        batches = (len(sampler) + per_rank - 1) // per_rank
        if config.max_batches_per_epoch is not None:
            batches = min(batches, config.max_batches_per_epoch)
        monitor = TrainingMonitor(model)
        for epoch in range(start, config.epochs):
            lr = schedule.set_epoch(epoch)
            sampler.set_epoch(epoch)
            monitor.reset()
            totals = _train_epoch(
                step_module, optimizer, config, ctx, device, train.split.dataset, sampler, per_rank, batches,
                generator, pad, show, f"epoch {epoch + 1}/{config.epochs}", model, methods, epoch * batches,
                schedule=schedule, epoch=epoch, teacher=teacher, monitor=monitor)
            totals = totals.summed(ctx, device)
            val_top1 = None
            if val is not None and ctx.is_main:
                val_top1 = top1(model, val[0], val[1], device, max(per_rank, 100))
            history.append({
                "epoch": epoch + 1, "train_loss": totals.loss, "train_top1": totals.top1,
                "val_top1": val_top1, "lr": lr, "seconds": totals.seconds, "images": int(totals.seen),
                "images_per_s": totals.images_per_s, **monitor.summary(),
            })
            for method in methods:
                history[-1].update(method.record(model))
            stuck = _stuck(totals.tail_ce, totals.top1, batches, train.split.num_classes)
            over = config.time_budget_s is not None and sum(r["seconds"] for r in history) > config.time_budget_s
            if ctx.sum([1.0 if over else 0.0], device)[0] > 0 and epoch + 1 < config.epochs:
                stopped = "time_budget"
                history[-1]["stopped"] = stopped
            if show:
                row = history[-1]
                val_text = f", val top-1 {row['val_top1']:.2%}" if row["val_top1"] is not None else ""
                Console(stderr=True).print(
                    f"epoch {row['epoch']}/{config.epochs}: loss {row['train_loss']:.4f}, train top-1 "
                    f"{row['train_top1']:.2%}{val_text}, lr {lr:.3g}, {row['images_per_s']:.1f} img/s",
                    highlight=False)
            if writes:
                save_checkpoint(ckpt_path, {
                    "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "schedule": schedule.state_dict(), "rng": rng_state(generator), "epoch": epoch + 1,
                    "history": history, "config": config.as_dict(),
                })
                write_log(log_path, config.as_dict(), history, **info)
                plot_path = write_curves(out_dir / PLOT_NAME, history, trainee.title)
            ctx.barrier()
            if stuck is not None:
                raise SnnConvertError(
                    f"training is stuck after epoch {epoch + 1}: {stuck}; lower {opt(FinetuneConfig, 'lr')} (now "
                    f"{config.lr:g}), keep {opt(FinetuneConfig, 'grad_clip')} on, or check that every layer fires "
                    "(firing_rate in the log)")
            if stopped:
                break
    elif writes:
        write_log(log_path, config.as_dict(), history, **info)

    if writes and plot_path is None and (out_dir / PLOT_NAME).is_file():  # resumed a finished run
        plot_path = out_dir / PLOT_NAME
    model.cpu().eval()
    return FinetuneResult(model, history, log_path, plot_path,
                          ckpt_path if writes and ckpt_path is not None and ckpt_path.is_file() else None, stopped,
                          info)


def _regrouped(model: nn.Module, methods: list[ActiveMethod]) -> tuple[nn.Module, dict[str, list[nn.Parameter]]]:
    """Optimizer groups after the methods' ``prepare``: their own groups, and the parameters they
    update themselves, are left out of the rest."""
    from snnconvert.neurons.trainable import neuron_parameters

    groups = neuron_parameters(model)
    own = {id(p) for m in methods for params, _ in m.parameter_groups(model) for p in params}
    own |= {id(p) for m in methods for p in m.own_parameters(model)}
    return model, {k: [p for p in v if id(p) not in own] for k, v in groups.items()}


def _train_epoch(step_module: nn.Module, optimizer: torch.optim.Optimizer, config: FinetuneConfig,
                 ctx: DistContext, device: torch.device, dataset: Any, sampler: DistributedSampler,
                 per_rank: int, batches: int, generator: torch.Generator, pad: int, show: bool,
                 description: str, model: nn.Module | None = None, methods: list[ActiveMethod] | None = None,
                 first_step: int = 0, *, schedule: EpochSchedule | None = None, epoch: int = 0,
                 teacher: Teacher | None = None, monitor: TrainingMonitor | None = None) -> EpochTotals:
    """One epoch on :func:`snnconvert.training.train_epoch`; returns this rank's totals. A
    non-finite loss stops the run with a one-line error."""
    step_module.train()
    methods = methods or []

    def augmented() -> Iterator[tuple[Tensor, Tensor]]:
        for images, labels in _batches(dataset, sampler, per_rank):
            if config.augment:
                d = draw(len(images) * ctx.world_size, pad, generator)  # the whole global batch
                images = apply(images, d[ctx.rank::ctx.world_size], pad)
            yield images, labels

    def before(k: int, images: Tensor) -> None:
        if schedule is not None:
            schedule.set_position(epoch + k / max(batches, 1))
        for method in methods:
            method.before_step(model, first_step + k, images)

    def compute(images: Tensor, labels: Tensor) -> StepLoss:
        logits, step_logits = step_module(images)
        loss = ce = loss_of(config.loss, logits, step_logits, labels, tet_lambda=config.tet_lambda,
                            tet_target=config.tet_target)
        if teacher is not None:
            loss = distillation_loss(logits, teacher(images), ce, config.distill_temperature,
                                     config.distill_weight, teacher.standardize)
        for method in methods:
            extra = method.loss(model)
            if extra is not None:
                loss = loss + extra
        return StepLoss(loss, ce, logits)

    bounded = [m.leak for m in model.modules()
               if isinstance(m, SpikingNeuron) and getattr(m, "leak", None) is not None] \
        if config.leak_max is not None else []

    def after(k: int) -> None:
        with torch.no_grad():
            for leak in bounded:
                leak.clamp_(max=config.leak_max)
        for method in methods:
            method.after_step(model, first_step + k)

    def diverged(value: float, k: int) -> str:
        return (f"the loss became {value} at epoch {epoch + 1}, batch {k + 1}: lower {opt(FinetuneConfig, 'lr')} "
                f"(now {config.lr:g}) or set {opt(FinetuneConfig, 'grad_clip')} (now {config.grad_clip})")

    ckpt = checkpointed_neurons(step_module, config.checkpoint_time) if config.checkpoint_time else nullcontext()
    hooks = StepHooks(before, monitor.record_grads if monitor is not None else None, after)
    with ckpt, (monitor if monitor is not None else nullcontext()):
        return train_epoch(augmented(), batches, compute, optimizer, device=device, grad_clip=config.grad_clip,
                           hooks=hooks, description=description, show=show, world_size=ctx.world_size,
                           diverged=diverged)


DEAD_PROBE_IMAGES = 256  # training images the dead-layer check runs before training
STUCK_MIN_BATCHES = 20  # an epoch this short proves nothing about being stuck
STUCK_TOLERANCE = 0.05  # relative distance of the cross-entropy to ln(classes)


def stacked_head(dataset: Any, n: int) -> Tensor:
    """The first ``n`` images of ``dataset`` (training order: seeded and class-mixed) as one tensor."""
    return _batch(dataset, torch.arange(min(n, len(dataset))))[0]


def _stuck(ce: float, top1: float, batches: int, classes: int) -> str | None:
    """Why the epoch counts as stuck at chance: its second half's cross-entropy within 5 % of
    ln(classes) and its train top-1 at most 1.5 / classes, over at least 20 batches; else None."""
    if batches < STUCK_MIN_BATCHES or classes < 2:
        return None
    chance = math.log(classes)
    if abs(ce - chance) <= STUCK_TOLERANCE * chance and top1 <= 1.5 / classes:
        return (f"cross-entropy {ce:.4f} stayed at ln({classes}) = {chance:.4f} and train top-1 {top1:.1%} at "
                f"chance for the whole epoch")
    return None
