"""``snnconvert finetune``: BPTT fine-tuning of the latest SNN artifact (``register(app)`` adds it)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from snnconvert.cli.config_flags import ConfigCommand, ConfigFlag, config_flags, config_from_flags
from snnconvert.errors import SnnConvertError
from snnconvert.finetune.config import FinetuneConfig
from snnconvert.options import flag_name, training_options


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

    def finetune_cmd(
        input_path: Path | None = typer.Option(None, "--input", help="SNN artifact, a .nir graph, or a run directory "
                                               "to take the latest from (default: the latest SNN artifact)."),
        data: str = typer.Option(..., "--data", help="Training data: digits, imagefolder:PATH, cifar10:PATH, ..."),
        val_data: str | None = typer.Option(None, "--val-data", help="Validation data (default: the held-out part "
                                                                     "of the calibration data)."),
        resume: bool = typer.Option(False, "--resume", help="Continue the interrupted run from its checkpoint."),
        method: list[str] = typer.Option([], "--method", help="Training method to apply (repeatable); "
                                         "`snnconvert methods` lists them."),
        method_option: list[str] = typer.Option([], "--method-option", help="A method's option, "
                                                "NAME.KEY=VALUE (repeatable; switches the method on)."),
        out: Path | None = typer.Option(None, "--out", help="Run directory (default: the input's directory)."),
        as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
        given: dict[str, dict[str, Any]] | None = None,
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
            from snnconvert.finetune import finetune
            from snnconvert.finetune.methods import methods_from_flags
            from snnconvert.nir_in import is_nir_path, save_nir_network
            from snnconvert.pipeline import save
            from snnconvert.workspace import new_artifact_path

            flags = command.flags()
            config = config_from_flags(
                FinetuneConfig, flags["finetune"], (given or {}).get("finetune", {}),
                methods=methods_from_flags(*_method_flags(flags, given or {}, method, method_option)))
            config.validate()
            path, q, snn = _load_input(input_path, ("snn",), None, nir=config, data=data, seed=config.seed,
                                       train_split=config.train_split)
            if snn is None:
                raise SnnConvertError(f"{path} holds no SNN; run `snnconvert to-snn` first")
            directory = out or path.parent
            work = directory / f"finetune-{path.stem}"
            result = finetune(q, snn, config, data=data, val_data=val_data, out_dir=work,
                              show_progress=not as_json, resume=resume)
            if not DistContext.from_env().is_main:  # under torchrun only rank 0 writes and reports
                return
            if is_nir_path(path):  # NIR in, NIR out: there are no ANNs to put in an artifact
                spec = q.info.input_spec
                written = save_nir_network(result.snn, directory, path.stem, (spec.channels, *spec.size))
            else:
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

    command = ConfigCommand(finetune_cmd, _sources, FINETUNE_PANELS)
    app.command("finetune")(command)


def _finetune_flags() -> list[ConfigFlag]:
    return config_flags(FinetuneConfig)


def _method_source(name: str) -> Callable[[], list[ConfigFlag]]:
    """A training method's flags: ``--<method>`` switches it on, ``--<method>-<option>`` (or the
    option's own flag) sets an option and switches it on."""
    def flags() -> list[ConfigFlag]:
        options = training_options().get(name)
        if options is None:  # unregistered since the CLI was built
            return []
        switch = ConfigFlag("on", f"--{flag_name(name)}", True, f"Apply the {name} training method: "
                            f"{options.summary}.", False, False, bool)
        return [switch, *config_flags(options.config, f"{flag_name(name)}-")]
    return flags


def _sources() -> dict[str, Callable[[], list[ConfigFlag]]]:
    return {"finetune": _finetune_flags, **{f"method_{name}": _method_source(name) for name in training_options()}}


def _method_flags(flags: dict[str, list[ConfigFlag]], given: dict[str, dict[str, Any]], method: list[str],
                  method_option: list[str]) -> tuple[list[str], list[str]]:
    """``--method`` names and ``NAME.KEY=VALUE`` items from the generic flags plus each method's
    own switch and option flags (given ones only)."""
    names, items = list(method), list(method_option)
    for source, values in given.items():
        if not source.startswith("method_"):
            continue
        name = source.removeprefix("method_")
        by_field = {f.field: f for f in flags.get(source, [])}
        for field, value in values.items():
            if value is None or field not in by_field:
                continue
            if field == "on":
                if value:
                    names.append(name)
                continue
            shown = str(value).lower() if isinstance(value, bool) else value
            items.append(f"{name}.{field}={shown}")
    return names, items


class _Panels(dict):
    """Help panels: the training options, then one per training method."""

    def get(self, name: str, default: object = None) -> str:  # type: ignore[override]
        if name == "finetune":
            return "Training options (FinetuneConfig)"
        method = name.removeprefix("method_")
        return f"{method} training method (or --method {method} --method-option {method}.KEY=VALUE)"


FINETUNE_PANELS = _Panels()
