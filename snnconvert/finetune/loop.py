"""The training loop: backpropagation through time over the time-folded simulator.

The network that trains is the ``SpikingNetwork`` that ``evaluate`` runs (a trainable deep copy
of it): its encoder and body run once per batch on time-folded frames, the decoder gives the
logits and, for TET, the body's output frames give per-step logits (see ``losses.TrainView``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
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
from snnconvert.finetune.model import TrainingMonitor, checkpointed_neurons, reinit_dead_layers, trainable_copy
from snnconvert.finetune.optim import EpochSchedule, build_optimizer
from snnconvert.finetune.report import LOG_NAME, PLOT_NAME, write_curves, write_log
from snnconvert.finetune.splits import stacked, training_data, validation_data
from snnconvert.progress import Progress
from snnconvert.simulate.network import SpikingNetwork


@dataclass
class FinetuneResult:
    """The trained SNN (on the CPU, an ordinary ``SpikingNetwork``), the per-epoch history and
    the files written (None when no ``out_dir`` was given or on ranks other than 0)."""

    snn: SpikingNetwork
    history: list[dict[str, Any]] = field(default_factory=list)
    log_path: Path | None = None
    plot_path: Path | None = None
    checkpoint_path: Path | None = None
    stopped: str | None = None  # "time_budget" when the wall-clock budget ended the run


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


def _progress(show: bool, total: int, description: str) -> Progress:
    """A bar on a terminal, plain-text lines otherwise (see :mod:`snnconvert.progress`)."""
    return Progress(description, total=total, show=show)


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
    config.validate()
    if resume and out_dir is None:
        raise SnnConvertError("resume needs the output folder of the interrupted run (out_dir)")
    ctx = DistContext.from_env()
    device = _device_for(config, ctx)
    ctx.init(device)
    try:
        return _run(quantized, snn, config, ctx, device, data=data, val_data=val_data,
                    out_dir=Path(out_dir) if out_dir is not None else None, show_progress=show_progress,
                    resume=resume)
    finally:
        ctx.close()


def _run(quantized: QuantizedModel, snn: SpikingNetwork, config: FinetuneConfig, ctx: DistContext,
         device: torch.device, *, data: str, val_data: str | None, out_dir: Path | None,
         show_progress: bool, resume: bool) -> FinetuneResult:
    show = show_progress and ctx.is_main
    torch.manual_seed(config.seed)
    model, groups = trainable_copy(snn, config)
    methods = active_methods(config.methods)
    for method in methods:
        model = method.prepare(model)
    if methods:
        model, groups = _regrouped(model, methods)
    model.to(device).train()
    view = TrainView(model)
    note = teacher_note(config.distill, quantized.float_model, quantized.info.source.endswith("/random"))
    teacher = Teacher.of(quantized.float_model, device) if config.distill == "float" and note is None else None
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
            if config.reinit_dead or teacher is not None else None
        if config.reinit_dead:
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
            loss_sum, correct, seen, seconds, ce_tail, tail_seen = _train_epoch(
                step_module, optimizer, config, ctx, device, train.split.dataset, sampler, per_rank, batches,
                generator, pad, show, f"epoch {epoch + 1}/{config.epochs}", model, methods, epoch * batches,
                schedule=schedule, epoch=epoch, teacher=teacher, monitor=monitor)
            loss_sum, correct, seen, seconds, ce_tail, tail_seen = ctx.sum(
                [loss_sum, correct, seen, seconds, ce_tail, tail_seen], device)
            seconds /= ctx.world_size  # the ranks' mean
            val_top1 = None
            if val is not None and ctx.is_main:
                val_top1 = top1(model, val[0], val[1], device, max(per_rank, 100))
            history.append({
                "epoch": epoch + 1, "train_loss": loss_sum / max(seen, 1), "train_top1": correct / max(seen, 1),
                "val_top1": val_top1, "lr": lr, "seconds": seconds, "images": int(seen),
                "images_per_s": seen / max(seconds, 1e-12), **monitor.summary(),
            })
            for method in methods:
                history[-1].update(method.record(model))
            stuck = _stuck(ce_tail / max(tail_seen, 1.0), correct / max(seen, 1.0), batches, train.split.num_classes)
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
                plot_path = write_curves(out_dir / PLOT_NAME, history, f"fine-tuning {snn.coding} SNN")
            ctx.barrier()
            if stuck is not None:
                raise SnnConvertError(
                    f"training is stuck after epoch {epoch + 1}: {stuck}; lower --lr (now {config.lr:g}), keep "
                    f"--grad-clip on, or check that every layer fires (firing_rate in the log)")
            if stopped:
                break
    elif writes:
        write_log(log_path, config.as_dict(), history, **info)

    if writes and plot_path is None and (out_dir / PLOT_NAME).is_file():  # resumed a finished run
        plot_path = out_dir / PLOT_NAME
    model.cpu().eval()
    model.info = dict(model.info)
    model.info["finetune"] = {"config": config.as_dict(), "history": history, **info, "stopped": stopped}
    return FinetuneResult(model, history, log_path, plot_path,
                          ckpt_path if writes and ckpt_path is not None and ckpt_path.is_file() else None, stopped)


def _regrouped(model: nn.Module, methods: list[ActiveMethod]) -> tuple[nn.Module, dict[str, list[nn.Parameter]]]:
    """Optimizer groups after the methods' ``prepare``: their own groups are left out of the rest."""
    from snnconvert.neurons.trainable import neuron_parameters

    groups = neuron_parameters(model)
    own = {id(p) for m in methods for params, _ in m.parameter_groups(model) for p in params}
    return model, {k: [p for p in v if id(p) not in own] for k, v in groups.items()}


def _train_epoch(step_module: nn.Module, optimizer: torch.optim.Optimizer, config: FinetuneConfig,
                 ctx: DistContext, device: torch.device, dataset: Any, sampler: DistributedSampler,
                 per_rank: int, batches: int, generator: torch.Generator, pad: int, show: bool,
                 description: str, model: nn.Module | None = None, methods: list[ActiveMethod] | None = None,
                 first_step: int = 0, *, schedule: EpochSchedule | None = None, epoch: int = 0,
                 teacher: Teacher | None = None, monitor: TrainingMonitor | None = None,
                 ) -> tuple[float, float, float, float, float, float]:
    """One epoch; returns this rank's loss sum, correct count, images, seconds, and the cross-entropy
    sum and images of the epoch's second half (for the stuck-loss check). A non-finite loss stops
    the run with a one-line error."""
    step_module.train()
    loss_sum = correct = seen = ce_tail = tail_seen = 0.0
    start = time.perf_counter()
    ckpt = checkpointed_neurons(step_module, config.checkpoint_time) if config.checkpoint_time else nullcontext()
    watch = monitor if monitor is not None else nullcontext()
    params = [p for group in optimizer.param_groups for p in group["params"]]
    with _progress(show, batches, description) as progress, ckpt, watch:
        for k, (images, labels) in enumerate(_batches(dataset, sampler, per_rank)):
            if k >= batches:
                break
            if config.augment:
                d = draw(len(images) * ctx.world_size, pad, generator)  # the whole global batch
                images = apply(images, d[ctx.rank::ctx.world_size], pad)
            images, labels = images.to(device), labels.to(device)
            step = first_step + k
            if schedule is not None:
                schedule.set_position(epoch + k / max(batches, 1))
            for method in methods or ():
                method.before_step(model, step, images)
            logits, step_logits = step_module(images)
            loss = ce = loss_of(config.loss, logits, step_logits, labels)
            if teacher is not None:
                loss = distillation_loss(logits, teacher(images), ce, config.distill_temperature,
                                         config.distill_weight, teacher.standardize)
            for method in methods or ():
                extra = method.loss(model)
                if extra is not None:
                    loss = loss + extra
            if not math.isfinite(float(loss.detach())):
                raise SnnConvertError(
                    f"the loss became {float(loss.detach())} at epoch {epoch + 1}, batch {k + 1}: lower --lr "
                    f"(now {config.lr:g}) or set --grad-clip (now {config.grad_clip})")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if monitor is not None:
                monitor.record_grads()
            if config.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
            optimizer.step()
            for method in methods or ():
                method.after_step(model, step)
            n = len(labels)
            loss_sum += float(loss.detach()) * n
            if 2 * k >= batches:
                ce_tail += float(ce.detach()) * n
                tail_seen += n
            correct += float((logits.detach().argmax(1) == labels).sum())
            seen += n
            elapsed = time.perf_counter() - start
            progress.advance(loss=loss_sum / seen, top1=f"{correct / seen:.2%}",
                             img_s=f"{seen * ctx.world_size / max(elapsed, 1e-9):.1f}")
    return loss_sum, correct, seen, time.perf_counter() - start, ce_tail, tail_seen


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
