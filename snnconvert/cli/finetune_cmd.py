"""``snnconvert finetune``: BPTT fine-tuning of the latest SNN artifact (``register(app)`` adds it)."""

from __future__ import annotations

from pathlib import Path

import typer

from snnconvert.errors import SnnConvertError
from snnconvert.finetune.config import FinetuneConfig

_DEFAULTS = FinetuneConfig()


def _milestones(text: str | None) -> list[int]:
    if not text:
        return []
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise SnnConvertError(f"--milestones {text!r} is not possible: give epochs as N,N,...") from None


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def register(app: typer.Typer) -> None:
    """Add the ``finetune`` and ``methods`` commands to ``app``."""

    @app.command("methods")
    def methods_cmd(as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON.")) -> None:
        """List the training methods `finetune --method` can apply, with their options."""
        from snnconvert.cli.app import _emit_json, _guard, console

        def body() -> None:
            from snnconvert.finetune.methods import methods

            table = {name: {"summary": m.summary, "options": {f.name: f.metadata.get("help", "")
                                                               for f in m.options()}}
                     for name, m in methods().items()}
            if as_json:
                _emit_json(table)
                return
            from rich.table import Table

            t = Table(title="training methods (finetune --method NAME --method-option NAME.KEY=VALUE)")
            for col in ("method", "summary", "options"):
                t.add_column(col)
            for name, entry in table.items():
                t.add_row(name, entry["summary"], ", ".join(entry["options"]))
            console.print(t)

        _guard(body)

    @app.command("finetune")
    def finetune_cmd(
        input_path: Path | None = typer.Option(None, "--input", help="SNN artifact, or a run directory to take the "
                                               "latest from (default: the latest SNN artifact)."),
        data: str = typer.Option(..., "--data", help="Training data: digits, imagefolder:PATH, cifar10:PATH, ..."),
        val_data: str | None = typer.Option(None, "--val-data", help="Validation data (default: the held-out part "
                                                                     "of the calibration data)."),
        epochs: int = typer.Option(..., "--epochs", help="Training epochs."),
        lr: float = typer.Option(_DEFAULTS.lr, "--lr", help="Learning rate of weights and biases."),
        optimizer: str = typer.Option("adam", "--optimizer", help="adam or sgd."),
        momentum: float = typer.Option(0.9, "--momentum", help="SGD momentum."),
        weight_decay: float = typer.Option(0.0, "--weight-decay", help="Weight decay."),
        schedule: str = typer.Option(_DEFAULTS.schedule, "--schedule", help="none, step or cosine."),
        milestones: str | None = typer.Option(None, "--milestones", help="Step-schedule epochs N,N,..."),
        gamma: float = typer.Option(0.2, "--gamma", help="Step-schedule factor."),
        warmup_epochs: int = typer.Option(_DEFAULTS.warmup_epochs, "--warmup-epochs",
                                          help="Linear warm-up epochs (per step; at most half the run)."),
        grad_clip: float = typer.Option(_DEFAULTS.grad_clip or 0.0, "--grad-clip",
                                        help="Clip the global gradient norm of each step (0: no clipping)."),
        distill: str = typer.Option(_DEFAULTS.distill, "--distill", help="float: distil the logits of the "
                                    "artifact's float ANN (when it has trained weights); none: CE only. LeNet-5 "
                                    "on digits, M-LIF S=3 T=1, 5 epochs: 97.8% with it, 96.9% without."),
        distill_temperature: float = typer.Option(_DEFAULTS.distill_temperature, "--distill-temperature",
                                                  help="Distillation temperature."),
        distill_weight: float = typer.Option(_DEFAULTS.distill_weight, "--distill-weight",
                                             help="Share of the distillation term in the loss (0..1)."),
        distill_standardize: str = typer.Option(_DEFAULTS.distill_standardize, "--distill-standardize",
                                                help="auto, on or off: z-score both logit vectors before the "
                                                "temperature (auto: when the SNN's logit scale is over 4x off "
                                                "the ANN's, e.g. after --calibrate none)."),
        reinit_dead: bool = typer.Option(_DEFAULTS.reinit_dead, "--reinit-dead/--no-reinit-dead",
                                         help="Re-initialise the threshold of a layer that never fires on the "
                                         "first training images."),
        threshold_lr: float | None = typer.Option(None, "--threshold-lr", help="Fixed lr of the thresholds."),
        leak_lr: float | None = typer.Option(None, "--leak-lr", help="Fixed lr of the leaks."),
        surrogate: str | None = typer.Option(None, "--surrogate", help="Surrogate gradient NAME[:PARAM] "
                                             "(default: each neuron's own; M-LIF: the 000 A.1 window)."),
        learn_threshold: bool = typer.Option(False, "--learn-threshold", help="Train the firing thresholds."),
        learn_leak: bool = typer.Option(False, "--learn-leak", help="Train the membrane leaks."),
        per_channel: bool = typer.Option(False, "--per-channel", help="Per-channel thresholds / leaks."),
        loss: str = typer.Option("ce", "--loss", help="ce or tet."),
        augment: bool = typer.Option(False, "--augment", help="Random crop with padding and horizontal flip."),
        batch_size: int = typer.Option(64, "--batch-size", help="Global batch size."),
        seed: int = typer.Option(0, "--seed", help="Seed of data order, augmentation and torch."),
        val_limit: int = typer.Option(1000, "--val-limit", help="Validation images per epoch (0: none)."),
        max_batches: int | None = typer.Option(None, "--max-batches", help="Batches per epoch at most."),
        time_budget: float | None = typer.Option(None, "--time-budget", help="Stop after the epoch that passes "
                                                                            "this many seconds."),
        checkpoint_time: bool = typer.Option(False, "--checkpoint-time", help="Recompute neuron time loops in the "
                                                                             "backward pass (less memory)."),
        resume: bool = typer.Option(False, "--resume", help="Continue the interrupted run from its checkpoint."),
        allow_class_mismatch: bool = typer.Option(False, "--allow-class-mismatch", help="Train on class folders "
                                                  "that differ from the model's classes (a note says how labelled)."),
        device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
        method: list[str] = typer.Option([], "--method", help="Training method to apply (repeatable); "
                                         "`snnconvert methods` lists them."),
        method_option: list[str] = typer.Option([], "--method-option", help="A method's option, "
                                                "NAME.KEY=VALUE (repeatable; switches the method on)."),
        adaptive_bits: bool = typer.Option(False, "--adaptive-bits", help="Learn per-layer weight / spike widths "
                                           "and T (multi-bit SNNs; same as --method adaptive-bits)."),
        target_bits: str | None = typer.Option(None, "--target-bits", help="Target average widths W/S/T of "
                                               "--adaptive-bits, e.g. 2/2/1 (switches it on)."),
        dtss: bool = typer.Option(False, "--dtss", help="Learn per-layer time steps (same as --method dtss)."),
        t_max: int | None = typer.Option(None, "--t-max", help="DTSS: maximum steps per layer (the SNN's T; "
                                         "switches --dtss on)."),
        lambda_m: float | None = typer.Option(None, "--lambda-m", help="DTSS: weight of the mask loss "
                                              "(switches --dtss on)."),
        dtss_groups: str | None = typer.Option(None, "--dtss-groups", help="DTSS: layer groups in the mask loss, "
                                               "e.g. qkv,mlp or all (switches --dtss on)."),
        dtss_min_steps: int | None = typer.Option(None, "--dtss-min-steps", help="DTSS: steps every layer keeps "
                                                  "at least (default 1; switches --dtss on)."),
        out: Path | None = typer.Option(None, "--out", help="Run directory (default: the input's directory)."),
        as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
    ) -> None:
        """Fine-tune the SNN with backpropagation through time and surrogate gradients; writes a new
        SNN artifact plus a checkpoint, a JSON log and a PNG of the curves in finetune-<input>/.

        Examples:

          snnconvert finetune --data digits --epochs 5   (defaults: Adam lr 1e-3, 1 warm-up epoch, cosine,
          gradient clipping 1.0, distillation from the float ANN)

          snnconvert finetune --data imagefolder:../shared/data/cifar10/train --epochs 150 --lr 1e-4
          --schedule step --milestones 90,120,135 --learn-threshold --learn-leak --augment
        """
        from snnconvert.cli.app import _emit_json, _guard, _load_input, console

        def body() -> None:
            from snnconvert.distributed import DistContext
            from snnconvert.finetune import FinetuneConfig, finetune
            from snnconvert.finetune.methods import methods_from_flags
            from snnconvert.pipeline import save
            from snnconvert.workspace import new_artifact_path

            config = FinetuneConfig(
                epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer, momentum=momentum,
                weight_decay=weight_decay, schedule=schedule, milestones=_milestones(milestones), gamma=gamma,
                warmup_epochs=warmup_epochs, threshold_lr=threshold_lr, leak_lr=leak_lr, surrogate=surrogate,
                learn_threshold=learn_threshold, learn_leak=learn_leak, per_channel=per_channel, loss=loss,
                augment=augment, seed=seed, val_limit=val_limit, checkpoint_time=checkpoint_time, device=device,
                max_batches_per_epoch=max_batches, time_budget_s=time_budget, allow_class_mismatch=allow_class_mismatch,
                grad_clip=grad_clip if grad_clip != 0 else None, distill=distill,
                distill_temperature=distill_temperature, distill_weight=distill_weight,
                distill_standardize=distill_standardize, reinit_dead=reinit_dead,
                methods=methods_from_flags(method + (["adaptive_bits"] if adaptive_bits or target_bits else [])
                                           + (["dtss"] if dtss else []),
                                           method_option + ([f"adaptive_bits.target_bits={target_bits}"]
                                                            if target_bits else [])
                                           + _shortcut_options("dtss", t_max=t_max, lambda_m=lambda_m,
                                                               groups=dtss_groups, min_steps=dtss_min_steps)),
            )
            config.validate()
            path, q, snn = _load_input(input_path, ("snn",), None)
            if snn is None:
                raise SnnConvertError(f"{path} holds no SNN; run `snnconvert to-snn` first")
            directory = out or path.parent
            work = directory / f"finetune-{path.stem}"
            result = finetune(q, snn, config, data=data, val_data=val_data, out_dir=work,
                              show_progress=not as_json, resume=resume)
            if not DistContext.from_env().is_main:  # under torchrun only rank 0 writes and reports
                return
            target = new_artifact_path(directory, "snn", f"{snn.coding}-finetuned")
            written = save(target, q, result.snn, extra={"finetuned_from": str(path)})
            last = result.history[-1] if result.history else {}
            seconds = sum(r["seconds"] for r in result.history)
            images = sum(r["images"] for r in result.history)
            summary = {
                "artifact": str(written), "finetuned_from": str(path), "epochs": len(result.history),
                "train_top1": last.get("train_top1"), "val_top1": last.get("val_top1"),
                "images_per_s": images / seconds if seconds > 0 else None, "stopped": result.stopped,
                "log": str(result.log_path) if result.log_path else None,
                "plot": str(result.plot_path) if result.plot_path else None,
                "checkpoint": str(result.checkpoint_path) if result.checkpoint_path else None,
                "history": result.history,
            }
            if as_json:
                _emit_json(summary)
                return
            from snnconvert.cli.render import finetune_summary

            finetune_summary(console, result, written)

        _guard(body)


def _shortcut_options(method: str, **given: object) -> list[str]:
    """Shortcut flags of a training method's options as ``--method-option`` texts (given ones only)."""
    return [f"{method}.{key}={value}" for key, value in given.items() if value is not None]
