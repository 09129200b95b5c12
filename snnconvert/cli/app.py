"""The ``snnconvert`` command line: thin commands over the Python API in :mod:`snnconvert.pipeline`."""

from __future__ import annotations

import dataclasses
import json
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console

from snnconvert._version import __version__
from snnconvert.artifact import load_artifact
from snnconvert.assets import demo_recipe_path
from snnconvert.cli.coding_options import DynamicCommand
from snnconvert.cli.coding_options import coding_options as coding_options_from_cli
from snnconvert.codings import codings, get_coding
from snnconvert.errors import SnnConvertError
from snnconvert.evaluate import REPORTS, EvaluateConfig, EvaluationReport, evaluate
from snnconvert.ingest import list_models
from snnconvert.pipeline import QuantizedModel, StageEvent, load, quantize, save, to_snn
from snnconvert.pipeline import run as pipeline_run
from snnconvert.quantize import QuantizeConfig
from snnconvert.simulate.network import SpikingNetwork
from snnconvert.workspace import latest_artifact, new_artifact_path, run_dir

if TYPE_CHECKING:
    from snnconvert.recipe import Recipe

app = typer.Typer(
    name="snnconvert",
    help="Convert trained neural networks into accurate low-latency spiking neural networks.\n\n"
    "Pipeline: snnconvert quantize MODEL -> snnconvert to-snn -> snnconvert evaluate.\n"
    "Each stage writes an artifact to ./snnconvert-runs/<model>/ and the next stage picks up the latest one.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
)
console = Console(width=None if sys.stdout.isatty() else 120)  # pipes and logs get room for the tables
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 200)
_state = {"verbose": False}


def _version(value: bool) -> None:
    if value:
        console.print(f"snnconvert {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show tracebacks and details."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """snnconvert command line."""
    _state["verbose"] = verbose


def _guard(fn: Callable[[], None]) -> None:
    """Run a command body; user errors become one red line and exit code 1."""
    try:
        fn()
    except SnnConvertError as exc:
        if _state["verbose"]:
            traceback.print_exc()
        err_console.print(f"[red]error:[/red] {exc}", markup=True, highlight=False)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        err_console.print("[red]interrupted[/red]: nothing was written")
        raise typer.Exit(130) from None


def _emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


# ------------------------------------------------------------------------------------- quantize


@app.command("quantize")
def quantize_cmd(
    model: str = typer.Argument(..., help="Model name (see `snnconvert models`)."),
    weights: str | None = typer.Option(None, "--weights", help="DEFAULT / an enum name / random / a checkpoint FILE."),
    data: str = typer.Option("digits", "--data", help="Calibration data: digits, imagefolder:PATH, cifar10:PATH, "
                                                      "imagenet:PATH."),
    bits: int = typer.Option(8, "--bits", help="Activation bits (8, 6, 4, ...)."),
    weight_bits: int | None = typer.Option(None, "--weight-bits", help="Weight bits (default: --bits)."),
    method: str = typer.Option("percentile", "--method", help="Clip range: max, percentile or mse."),
    percentile: float = typer.Option(99.99, "--percentile", help="Percentile for --method percentile."),
    per_channel: bool = typer.Option(False, "--per-channel", help="Per-channel activation ranges."),
    calib_limit: int = typer.Option(1024, "--calib-limit", help="Calibration images (stratified sample)."),
    calib_split: float = typer.Option(0.2, "--calib-split", help="Share of a single-folder data set used "
                                                                 "for calibration (the rest stays for evaluation)."),
    qat_epochs: int = typer.Option(0, "--qat-epochs", help="Quantization-aware fine-tuning epochs."),
    qat_batches: int | None = typer.Option(None, "--qat-batches", help="Batches per QAT epoch (default: all)."),
    qat_lr: float = typer.Option(1e-4, "--qat-lr", help="QAT learning rate (SGD, momentum 0.9)."),
    num_classes: int | None = typer.Option(None, "--num-classes", help="Build the model with this many classes."),
    eval_limit: int = typer.Option(1000, "--eval-limit", help="Held-out images for the float vs quantized check "
                                                              "(0 skips it)."),
    out: Path | None = typer.Option(None, "--out", help="Run directory (default ./snnconvert-runs/<model>/)."),
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON instead of tables."),
) -> None:
    """Calibrate and quantize MODEL; writes a quantized artifact.

    Examples:

      snnconvert quantize lenet5

      snnconvert quantize resnet20 --weights ../shared/data/resnet20-cifar10.th
      --data imagefolder:../shared/data/cifar10/train-subset --bits 8

      snnconvert quantize resnet50 --weights DEFAULT --data imagenet:/data/imagenet --qat-epochs 12
    """

    def body() -> None:
        config = QuantizeConfig(bits=bits, weight_bits=weight_bits, method=method, percentile=percentile,
                                per_channel=per_channel, calib_limit=calib_limit, qat_epochs=qat_epochs,
                                qat_batches_per_epoch=qat_batches, qat_lr=qat_lr)
        q = quantize(model, data=data, config=config, weights=weights, num_classes=num_classes,
                     calib_split=calib_split, eval_limit=eval_limit or 0, show_progress=not as_json)
        path = save(new_artifact_path(run_dir(q.info.name, out), "quantized", f"{bits}bit"), q)
        if as_json:
            from snnconvert.pipeline import quantized_manifest

            _emit_json({"artifact": str(path), **quantized_manifest(q)})
        else:
            from snnconvert.cli.render import quantize_tables

            quantize_tables(console, q, path)

    _guard(body)


# ------------------------------------------------------------------------------------- to-snn


def _load_input(
    input_path: Path | None, stages: tuple[str, ...], directory: Path | None
) -> tuple[Path, QuantizedModel, SpikingNetwork | None]:
    if input_path is not None and input_path.is_dir():
        input_path, directory = None, input_path
    path = input_path or latest_artifact(stages, directory)
    q, snn = load(path)
    return path, q, snn


def _to_snn(
    input_path: Path | None = typer.Option(
        None, "--input", help="Quantized artifact, or a run directory to take the latest from (default: latest run)."
    ),
    coding: str = typer.Option("sws", "--coding", help="The coding (see `snnconvert codings`)."),
    extra: list[str] = typer.Option([], "--set", help="Any coding option as KEY=VALUE."),
    out: Path | None = typer.Option(None, "--out", help="Run directory (default: the input's directory)."),
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
    coding_options: dict[str, Any] | None = None,
) -> None:
    """Convert the quantized model into a spiking network; writes an SNN artifact.

    Each coding's options are listed below in its own panel.

    Examples:

      snnconvert to-snn --coding sws --Tc 8 --Ts 2

      snnconvert to-snn --coding sws --Tc 8 --Ts auto

      snnconvert to-snn --coding rate --T 128 --percentile 99.9
    """

    def body() -> None:
        entry = get_coding(coding)
        options = coding_options_from_cli(entry, coding_options or {}, extra)
        path, q, _ = _load_input(input_path, ("quantized",), out)
        snn = to_snn(q, coding, show_progress=not as_json, **options)
        tag = f"{coding}-" + "-".join(f"{k}{v}" for k, v in options.items() if not isinstance(v, list))
        target = new_artifact_path(out or path.parent, "snn", tag.rstrip("-"))
        written = save(target, q, snn, extra={"converted_from": str(path)})
        if as_json:
            _emit_json({"artifact": str(written), "coding": coding, "info": snn.info})
        else:
            from snnconvert.cli.render import snn_summary

            snn_summary(console, snn, written)

    _guard(body)


app.command("to-snn")(DynamicCommand(_to_snn))


@app.command("codings")
def codings_cmd(as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON.")) -> None:
    """List the codings, their options and their extra reports."""

    def body() -> None:
        table = codings()
        if as_json:
            _emit_json({name: {"summary": c.summary, "options": [f.name for f in c.options()],
                               "reports": [r.name for r in c.reports], "sweep": list(c.sweep_keys)}
                        for name, c in table.items()})
        else:
            from snnconvert.cli.render import codings_table

            codings_table(console, table)

    _guard(body)


# ------------------------------------------------------------------------------------- evaluate


def _parse_sweep(items: list[str]) -> dict[str, list[Any]]:
    sweep: dict[str, list[Any]] = {}
    for item in items:
        if "=" not in item:
            raise SnnConvertError(f"--sweep {item!r}: write KEY=V1,V2,... (e.g. --sweep Ts=0,1,2,3)")
        key, values = item.split("=", 1)
        sweep[key.replace("-", "_")] = [v for v in values.split(",") if v]  # read by each option's type
    return sweep


def _parse_reports(text: str) -> tuple[str, ...]:
    return tuple(r.strip() for r in text.split(",") if r.strip())


def show_report(report: EvaluationReport, *, as_json: bool, plots: Path | None) -> None:
    """Print an evaluation (tables or JSON) and write its plots."""
    written = []
    if plots is not None:
        from snnconvert.reports.plots import write_plots

        written = write_plots(report, plots)
    if as_json:
        _emit_json({**report.as_dict(), "plots": [str(p) for p in written]})
    else:
        from snnconvert.cli.render import evaluation_tables

        evaluation_tables(console, report)
        for p in written:
            console.print(f"[green]wrote[/green] {p}")


@app.command("evaluate")
def evaluate_cmd(
    input_path: Path | None = typer.Option(None, "--input", help="SNN or quantized artifact, or a run directory "
                                           "(default: the latest)."),
    data: str | None = typer.Option(None, "--data", help="Evaluation data (default: the held-out part of the "
                                                         "calibration data)."),
    limit: int | None = typer.Option(None, "--limit", help="Evaluate on a stratified sample of N images."),
    report: str = typer.Option("all", "--report", help=f"Comma list of {', '.join(REPORTS)}, a coding's own "
                               "report (e.g. residual for sws; see `snnconvert codings`) or all."),
    sweep: list[str] = typer.Option([], "--sweep", help="KEY=V1,V2,... re-converts and evaluates each setting."),
    plots: Path | None = typer.Option(None, "--plots", help="Write PNG plots into this directory."),
    dtype: str = typer.Option("float32", "--dtype", help="float32 or float64 simulation."),
    batch_size: int = typer.Option(100, "--batch-size", help="Images per batch."),
    e_mac: float = typer.Option(4.6, "--e-mac", help="Energy per MAC in pJ."),
    e_ac: float = typer.Option(0.9, "--e-ac", help="Energy per accumulate in pJ."),
    device: str = typer.Option("auto", "--device", help="auto (CUDA when available), cpu, cuda or cuda:N."),
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
) -> None:
    """Accuracy of the float ANN, the quantized ANN and the SNN on the same images, plus latency,
    OPF, energy, spike rates and residuals.

    Examples:

      snnconvert evaluate --report energy

      snnconvert evaluate --data imagefolder:../shared/data/cifar10/test --limit 2000 --plots plots/

      snnconvert evaluate --sweep Ts=0,1,2,3 --plots plots/
    """

    def body() -> None:
        _, q, snn = _load_input(input_path, ("snn", "quantized"), None)
        config = EvaluateConfig(data=data, limit=limit, reports=_parse_reports(report), sweep=_parse_sweep(sweep),
                                dtype=dtype, batch_size=batch_size, e_mac_pj=e_mac, e_ac_pj=e_ac, device=device)
        show_report(evaluate(q, snn, config, show_progress=not as_json), as_json=as_json, plots=plots)

    _guard(body)


# ------------------------------------------------------------------------------------- run / demo


def run_recipe(recipe: Recipe, *, as_json: bool, plots: Path | None, out: Path | None = None,
               banner: bool = False) -> None:
    """``run`` and ``demo``: :func:`snnconvert.pipeline.run`, rendered stage by stage."""
    from snnconvert.cli.render import stage_line, stage_result

    def on_stage(event: StageEvent) -> None:
        if as_json:
            return
        if not event.done:
            stage_line(console, event)
        else:
            stage_result(console, event)

    if banner and not as_json:
        console.rule(f"[bold]snnconvert demo: {recipe.model} on {recipe.data}")
    result = pipeline_run(recipe, on_stage=on_stage, out=out, show_progress=not as_json)
    if result.report is not None:
        show_report(result.report, as_json=as_json, plots=plots)
    elif as_json:
        _emit_json({"artifact": str(result.quantized_path), "snn_artifact": str(result.snn_path)})


@app.command("run")
def run_cmd(
    recipe: Path = typer.Argument(..., help="YAML recipe (see recipes/)."),
    plots: Path | None = typer.Option(None, "--plots", help="Write PNG plots into this directory."),
    as_json: bool = typer.Option(False, "--json", help="Print the evaluation as JSON."),
) -> None:
    """Run a whole pipeline from a YAML recipe (validated first).

    Example:

      snnconvert run recipes/resnet20-cifar10-sws.yaml
    """

    def body() -> None:
        from snnconvert.recipe import load_recipe

        run_recipe(load_recipe(recipe), as_json=as_json, plots=plots)

    _guard(body)


def demo_recipe() -> Recipe:
    """The bundled demo recipe (LeNet-5 on scikit-learn's digits)."""
    from snnconvert.recipe import load_recipe

    return load_recipe(demo_recipe_path())


@app.command("demo")
def demo_cmd(
    out: Path | None = typer.Option(None, "--out", help="Run directory (default ./snnconvert-runs/lenet5/)."),
    plots: Path | None = typer.Option(None, "--plots", help="Write PNG plots into this directory."),
    as_json: bool = typer.Option(False, "--json", help="Print the evaluation as JSON."),
) -> None:
    """The whole pipeline on the bundled LeNet-5 and digits data: quantize (8-bit) -> SWS SNN
    (Tc=8, Ts=2) -> evaluate with every report. No arguments, no downloads."""
    _guard(lambda: run_recipe(demo_recipe(), as_json=as_json, plots=plots, out=out, banner=True))


# ------------------------------------------------------------------------------------- models / info


@app.command("models")
def models_cmd(as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON.")) -> None:
    """List the models snnconvert can ingest by name, and which weights are available offline."""

    def body() -> None:
        entries = list_models()
        if as_json:
            _emit_json([dataclasses.asdict(e) for e in entries])
        else:
            from snnconvert.cli.render import models_table

            models_table(console, entries)

    _guard(body)


@app.command("info")
def info_cmd(
    artifact: Path = typer.Argument(..., help="An .snnc artifact."),
    as_json: bool = typer.Option(False, "--json", help="Print the manifest as JSON."),
) -> None:
    """Show what an artifact holds: model, versions, quantization, calibration, coding, metrics."""

    def body() -> None:
        loaded = load_artifact(artifact)
        if as_json:
            _emit_json(loaded.manifest)
        else:
            from snnconvert.cli.render import info_tables

            info_tables(console, artifact, loaded)

    _guard(body)


def _register_more_commands() -> None:
    from snnconvert.cli.finetune_cmd import register

    register(app)


_register_more_commands()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
