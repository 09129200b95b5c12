"""The ``snnconvert`` command line: thin commands over the Python API in :mod:`snnconvert.pipeline`."""

from __future__ import annotations

import sys

try:  # only light modules here: torch and torchvision are imported inside the commands (fast --help)
    import contextlib
    import dataclasses
    import json
    import os
    import signal
    import tempfile
    import traceback
    from collections.abc import Callable
    from pathlib import Path
    from typing import TYPE_CHECKING, Any

    import click
    import typer
    from rich.console import Console
    from typer.core import TyperCommand, TyperGroup, TyperOption

    from snnconvert._version import __version__
    from snnconvert.allocator import tune_allocator
    from snnconvert.cli.coding_options import DynamicCommand
    from snnconvert.cli.config_flags import ConfigCommand, cli_message, config_flags, config_from_flags
    from snnconvert.configs.evaluate import EvaluateConfig
    from snnconvert.configs.quantize import QuantizeConfig
    from snnconvert.errors import SnnConvertError, UnsupportedGraphError
    from snnconvert.limits import shorten
    from snnconvert.manifest_check import safe_text
except KeyboardInterrupt:  # Ctrl-C while the command line itself loads: no traceback
    sys.stderr.write("interrupted: nothing was written\n")
    raise SystemExit(130) from None

if TYPE_CHECKING:
    from snnconvert.evaluate import EvaluationReport
    from snnconvert.pipeline import QuantizedModel, StageEvent
    from snnconvert.recipe import Recipe
    from snnconvert.simulate.network import SpikingNetwork


def _no_type(ctx: Any = None) -> None:
    """An on/off flag takes no value: its help shows no type."""
    return None


def _untyped_flags(command: click.Command, ctx: click.Context) -> None:
    """Help without a type after on/off flags (Typer 0.29 shows ``<bool>``): only this command's
    own option objects change, nothing in Typer itself."""
    for param in command.get_params(ctx):
        if isinstance(param, TyperOption) and param.is_flag:
            param.display_type_rich = _no_type  # type: ignore[method-assign]


class _FlagHelpCommand(TyperCommand):
    """A command whose help shows no type after on/off flags."""

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        _untyped_flags(self, ctx)
        super().format_help(ctx, formatter)


class _FlagHelpGroup(TyperGroup):
    """The command group, whose help shows no type after on/off flags."""

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        _untyped_flags(self, ctx)
        super().format_help(ctx, formatter)


class _Typer(typer.Typer):
    """The snnconvert app: every command is a :class:`_FlagHelpCommand` unless it names its own class."""

    def command(self, name: str | None = None, *, cls: type[TyperCommand] | None = None,
                **kwargs: Any) -> Any:
        return super().command(name, cls=cls or _FlagHelpCommand, **kwargs)


app = _Typer(
    cls=_FlagHelpGroup,
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
_state: dict[str, Any] = {"verbose": False, "written": []}


def _version(value: bool) -> None:
    if value:
        console.print(f"snnconvert {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show tracebacks and details."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
    allow_unchecked: bool = typer.Option(
        False, "--allow-unchecked-artifacts",
        help="Read format v1 artifacts, which carry no checksums (only files you trust)."),
) -> None:
    """snnconvert command line."""
    _state["verbose"] = verbose
    _state["allow_unchecked"] = allow_unchecked


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that partial writes are cleaned up like on Ctrl-C."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Terminated


def wrote(path: Path) -> Path:
    """Record a file a command published (what an interruption message reports)."""
    _state["written"].append(Path(path))
    return path


def _interrupted(what: str, code: int) -> typer.Exit:
    written = _state["written"]
    done = "nothing was written" if not written else "it had written " + safe_text(", ".join(str(p) for p in written))
    err_console.print(f"[red]{what}[/red]: {done}", highlight=False, soft_wrap=True)
    _state["reported"] = True
    return typer.Exit(code)


def _ignore_late_signals() -> None:
    """The command's work is published: a Ctrl-C or SIGTERM during the interpreter's exit has
    nothing left to interrupt, so the process ends with the command's own status (0). Only in
    the ``snnconvert`` process itself (``main``), never when the app runs inside another program
    (tests, notebooks): ignored signals would be inherited by every process it starts later."""
    if not _state.get("owns_process"):
        return
    with contextlib.suppress(ValueError, OSError):  # not the main thread
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _guard(fn: Callable[[], None]) -> None:
    """Run a command body; user errors become one red line and exit code 1; Ctrl-C and SIGTERM
    say truthfully what had been written (code 130 / 143)."""
    _state["written"] = []
    try:
        fn()
        _ignore_late_signals()
    except UnsupportedGraphError as exc:
        summary = getattr(exc, "summary", None)
        if _state["verbose"] or not summary:
            lines = "\n".join(safe_text(line) for line in str(exc).split("\n"))  # one problem per line
            err_console.print(f"[red]error:[/red] {lines}", markup=True, highlight=False, soft_wrap=True)
        else:
            err_console.print(f"[red]error:[/red] {safe_text(summary)} (-v lists every node with its source line)",
                              markup=True, highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except SnnConvertError as exc:
        if _state["verbose"]:
            traceback.print_exc()
        err_console.print(f"[red]error:[/red] {safe_text(cli_message(exc))}", markup=True, highlight=False,
                          soft_wrap=True)
        raise typer.Exit(1) from None
    except OSError as exc:  # a path the file system cannot even look up (Path.exists raises for these)
        import errno

        if exc.errno != errno.ENAMETOOLONG:
            raise
        shown = safe_text(str(exc.filename or ""), 120)
        err_console.print(f"[red]error:[/red] file name too long: {shown}", markup=True, highlight=False,
                          soft_wrap=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        raise _interrupted("interrupted", 130) from None
    except Terminated:
        raise _interrupted("terminated", 143) from None


def check_output_dir(path: Path | None, flag: str) -> None:
    """Fail before any work when ``path`` (an output folder, created if missing) cannot be written:
    it is a file, lies under a file, or its nearest existing folder refuses a new file."""
    if path is None:
        return
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise SnnConvertError(f"{flag} {path} is a file, not a directory; give a directory")
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise SnnConvertError(f"{flag} {path}: {probe} is a file, so no directory can be made there")
    try:  # an anonymous temporary file: removed by the OS, whatever happens
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as exc:
        raise SnnConvertError(f"{flag} {path} is not writable ({exc.strerror or exc}); choose another directory") \
            from None


def check_new_output_file(path: Path | None, flag: str, *inputs: Path, writable: bool = True) -> None:
    """Fail before any work when ``path`` (a new output file) is a directory, has a name the file
    system cannot hold, is one of the command's ``inputs`` (symlinks resolved), or (``writable``)
    lies in a folder that refuses new files."""
    if path is None:
        return
    path = Path(path)
    shown = shorten(str(path), 200)
    if any(len(os.fsencode(part)) > 255 for part in path.parts):
        raise SnnConvertError(f"file name too long: {shown}")
    try:
        if path.is_dir():
            raise SnnConvertError(f"{flag} {shown} is a directory; give the name of a file to write (inside it)")
        for source in inputs:
            if path.exists() and os.path.samefile(path, source):
                raise SnnConvertError(f"{flag} {shown} is the command's input; commands never overwrite their "
                                      "input, give another file name")
    except OSError as exc:
        raise SnnConvertError(f"{flag} {shown} cannot be checked ({exc.strerror or type(exc).__name__})") from None
    if writable:
        check_output_dir(path.parent if str(path.parent) else Path("."), flag)


def _emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


# ------------------------------------------------------------------------------------- quantize


def quantize_cmd(
    model: str = typer.Argument(..., help="Model name (see `snnconvert models`)."),
    weights: str | None = typer.Option(None, "--weights", help="DEFAULT / an enum name / random / a checkpoint FILE."),
    data: str | None = typer.Option(None, "--data", help="Calibration data: digits, imagefolder:PATH, "
                                    "cifar10:PATH, imagenet:PATH (default: the data the model's bundled weights were "
                                    "trained on; lenet5: digits)."),
    resize_data: bool = typer.Option(False, "--resize-data", help="Calibrate on data whose images do not match "
                                     "the model's input, resized to it (otherwise an error)."),
    allow_class_mismatch: bool = typer.Option(False, "--allow-class-mismatch", help="Calibrate on class folders "
                                              "that differ from the model's classes (otherwise an error)."),
    calib_split: float = typer.Option(0.2, "--calib-split", help="Share of a single-folder data set used "
                                                                 "for calibration (the rest stays for evaluation)."),
    num_classes: int | None = typer.Option(None, "--num-classes", help="Build the model with this many classes."),
    eval_limit: int = typer.Option(1000, "--eval-limit", help="Held-out images for the float vs quantized check "
                                                              "(0 skips it)."),
    out: Path | None = typer.Option(None, "--out", help="Run directory (default ./snnconvert-runs/<model>/)."),
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON instead of tables."),
    given: dict[str, dict[str, Any]] | None = None,
) -> None:
    """Calibrate and quantize MODEL; writes a quantized artifact.

    Examples:

      snnconvert quantize lenet5

      snnconvert quantize resnet20 --weights ../shared/data/resnet20-cifar10.th
      --data imagefolder:../shared/data/cifar10/train-subset --bits 8

      snnconvert quantize resnet50 --weights DEFAULT --data imagenet:/data/imagenet --qat-epochs 12
    """

    def body() -> None:
        from snnconvert.pipeline import quantize, save
        from snnconvert.workspace import DEFAULT_ROOT, run_dir, save_new_artifact

        check_output_dir(out or DEFAULT_ROOT, "--out")
        config = config_from_flags(QuantizeConfig, config_flags(QuantizeConfig), (given or {}).get("quantize", {}))
        q = quantize(model, data=data, config=config, weights=weights, num_classes=num_classes,
                     calib_split=calib_split, eval_limit=eval_limit or 0, show_progress=not as_json,
                     resize_data=resize_data, allow_class_mismatch=allow_class_mismatch)
        from snnconvert.distributed import DistContext

        if not DistContext.from_env().is_main:  # under torchrun (QAT) only rank 0 writes
            return
        path = wrote(save_new_artifact(run_dir(q.info.name, out), "quantized", f"{config.bits}bit",
                                       lambda target: save(target, q)))
        if as_json:
            from snnconvert.pipeline import quantized_manifest

            _emit_json({"artifact": str(path), **quantized_manifest(q)})
        else:
            from snnconvert.cli.render import quantize_tables

            quantize_tables(console, q, path)

    _guard(body)


QUANTIZE = ConfigCommand(quantize_cmd, lambda: {"quantize": lambda: config_flags(QuantizeConfig)},
                         {"quantize": "Quantization options (QuantizeConfig)"})
app.command("quantize")(QUANTIZE)


# ------------------------------------------------------------------------------------- to-snn


def _load_input(
    input_path: Path | None, stages: tuple[str, ...], directory: Path | None, **nir: Any
) -> tuple[Path, QuantizedModel, SpikingNetwork | None]:
    """The artifact (or, with ``nir`` options, also a ``.nir`` file) ``--input`` names."""
    from snnconvert.nir_in import load_input
    from snnconvert.pipeline import load
    from snnconvert.workspace import latest_artifact

    if input_path is not None and input_path.is_dir():
        input_path, directory = None, input_path
    path = input_path or latest_artifact(stages, directory)
    allow_unchecked = _state.get("allow_unchecked", False)
    q, snn = load_input(path, allow_unchecked=allow_unchecked, **nir) if nir else load(path,
                                                                                       allow_unchecked=allow_unchecked)
    return path, q, snn


def _to_snn(
    input_path: Path | None = typer.Option(
        None, "--input", help="Quantized artifact, or a run directory to take the latest from (default: latest run)."
    ),
    coding: str = typer.Option("sws", "--coding", help="The coding (see `snnconvert codings`)."),
    extra: list[str] = typer.Option([], "--set", help="Any coding option as KEY=VALUE."),
    device: str = typer.Option("cpu", "--device", help="Where calibration passes of the conversion run "
                                                       "(statistics, --Ts auto): cpu, auto, cuda or cuda:N."),
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
        from snnconvert.cli.coding_options import coding_options as coding_options_from_cli
        from snnconvert.codings import get_coding
        from snnconvert.pipeline import save, to_snn
        from snnconvert.workspace import save_new_artifact

        check_output_dir(out, "--out")
        entry = get_coding(coding)
        options = coding_options_from_cli(entry, coding_options or {}, extra)
        path, q, _ = _load_input(input_path, ("quantized",), out)
        check_output_dir(out or path.parent, "--out" if out else "the input's directory")
        snn = to_snn(q, coding, show_progress=not as_json, device=device, **options)
        tag = f"{coding}-" + "-".join(f"{k}{v}" for k, v in options.items() if not isinstance(v, list))
        written = wrote(save_new_artifact(out or path.parent, "snn", tag.rstrip("-"),
                                          lambda target: save(target, q, snn, extra={"converted_from": str(path)})))
        if as_json:
            _emit_json({"artifact": str(written), "coding": coding, "info": snn.info})
        else:
            from snnconvert.cli.render import snn_summary

            snn_summary(console, snn, written)

    _guard(body)


TO_SNN = DynamicCommand(_to_snn)
app.command("to-snn")(TO_SNN)


@app.command("codings")
def codings_cmd(as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON.")) -> None:
    """List the codings, their options and their extra reports."""

    def body() -> None:
        from snnconvert.codings import codings

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
        listed = [v for v in values.split(",") if v.strip()]
        if not key.strip() or not listed:
            raise SnnConvertError(f"--sweep {shorten(item, 60)}: give a key and at least one value, "
                                  "KEY=V1,V2,... (e.g. --sweep Ts=0,1,2,3)")
        sweep[key.replace("-", "_")] = listed  # read by each option's type
    return sweep


def show_report(report: EvaluationReport, *, as_json: bool, plots: Path | None, saved: Path | None = None) -> None:
    """Print an evaluation (tables or JSON) and write its plots; ``saved`` is its JSON file."""
    written = []
    if plots is not None:
        from snnconvert.atomic import _missing_folders, _remove_folders
        from snnconvert.reports.plots import write_plots

        made = _missing_folders(Path(plots))
        before = set(Path(plots).glob("*.png")) if not made else set()
        try:
            written = [wrote(p) for p in write_plots(report, plots)]
        except BaseException:  # a plot failed (disk full...): remove the ones this call wrote
            for p in set(Path(plots).glob("*.png")) - before:
                p.unlink(missing_ok=True)
            _remove_folders(made)
            raise
    if as_json:
        _emit_json({**report.as_dict(), "plots": [str(p) for p in written],
                    "saved": str(saved) if saved else None})
    else:
        from snnconvert.cli.render import evaluation_tables

        evaluation_tables(console, report)
        for p in [*written, *([saved] if saved else [])]:
            console.print(f"[green]wrote[/green] {safe_text(p)}")


def evaluate_cmd(
    input_path: Path | None = typer.Option(None, "--input", help="SNN or quantized artifact, a .nir graph, or a run "
                                           "directory (default: the latest)."),
    sweep: list[str] = typer.Option([], "--sweep", help="KEY=V1,V2,... re-converts and evaluates each setting."),
    plots: Path | None = typer.Option(None, "--plots", help="Write PNG plots into this directory."),
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
    out: Path | None = typer.Option(None, "--out", help="Write the evaluation JSON to this new file (default: "
                                    "evaluation-<artifact>-<time>.json beside the artifact, which is never modified)."),
    given: dict[str, dict[str, Any]] | None = None,
) -> None:
    """Accuracy of the float ANN, the quantized ANN and the SNN on the same images, plus latency,
    OPF, energy, spike rates and residuals.

    Examples:

      snnconvert evaluate --report energy

      snnconvert evaluate --data imagefolder:../shared/data/cifar10/test --limit 2000 --plots plots/

      snnconvert evaluate --sweep Ts=0,1,2,3 --plots plots/
    """

    def body() -> None:
        from snnconvert.evaluate import (
            evaluate,
            evaluation_input,
            require_snn_reports,
            save_evaluation,
        )
        from snnconvert.nir_in import load_input

        check_output_dir(plots, "--plots")
        config = config_from_flags(EvaluateConfig, config_flags(EvaluateConfig), (given or {}).get("evaluate", {}),
                                   sweep=_parse_sweep(sweep))
        config.validate()
        chosen = evaluation_input(input_path)
        if out is None:
            check_output_dir(chosen.path.parent, "the run directory (where the evaluation's JSON goes)")
        else:
            check_new_output_file(out, "--out", chosen.path)
        q, snn = load_input(chosen.path, allow_unchecked=_state.get("allow_unchecked", False), nir=config)
        require_snn_reports(config, snn, chosen.path.name)
        if chosen.note:
            err_console.print(f"[yellow]note:[/yellow] {safe_text(chosen.note)}", highlight=False, soft_wrap=True)
        if snn is None:
            err_console.print(f"[yellow]note:[/yellow] {safe_text(chosen.path.name)} is a quantized artifact: only "
                              "the ANNs are scored (`snnconvert to-snn` converts it for the SNN reports)",
                              highlight=False, soft_wrap=True)
        result = evaluate(q, snn, config, show_progress=not as_json)
        from snnconvert.distributed import DistContext

        if not DistContext.from_env().is_main:  # under torchrun every rank has the report; rank 0 shows it
            return
        saved = save_evaluation(result, chosen.path, out)
        try:
            show_report(result, as_json=as_json, plots=plots, saved=wrote(saved))
        except BaseException:  # the plots failed: the command leaves nothing, not half its output
            saved.unlink(missing_ok=True)
            _state["written"] = [p for p in _state["written"] if p != saved]
            raise

    _guard(body)


EVALUATE = ConfigCommand(evaluate_cmd, lambda: {"evaluate": lambda: config_flags(EvaluateConfig)},
                         {"evaluate": "Evaluation options (EvaluateConfig)"})
app.command("evaluate")(EVALUATE)


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
        console.rule(f"[bold]snnconvert demo: {safe_text(recipe.model)} on {safe_text(recipe.data)}")
    from snnconvert.pipeline import run as pipeline_run
    from snnconvert.workspace import DEFAULT_ROOT

    check_output_dir(Path(out or recipe.out or DEFAULT_ROOT), "--out" if out else "the recipe's out")
    result = pipeline_run(recipe, on_stage=on_stage, out=out, show_progress=not as_json)
    for path in result.written:
        wrote(path)
        if not as_json and path != result.report_path:
            console.print(f"[green]published[/green] {safe_text(path)}")
    if result.report is not None:
        show_report(result.report, as_json=as_json, plots=plots, saved=result.report_path)
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

        check_output_dir(plots, "--plots")
        run_recipe(load_recipe(recipe), as_json=as_json, plots=plots)

    _guard(body)


def demo_recipe() -> Recipe:
    """The bundled demo recipe (LeNet-5 on scikit-learn's digits)."""
    from snnconvert.assets import demo_recipe_path
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

    def body() -> None:
        check_output_dir(out, "--out")
        check_output_dir(plots, "--plots")
        run_recipe(demo_recipe(), as_json=as_json, plots=plots, out=out, banner=True)

    _guard(body)


# ------------------------------------------------------------------------------------- models / info


@app.command("models")
def models_cmd(
    check: bool = typer.Option(False, "--check", help="Also try to convert each architecture (random weights, "
                               "a tiny input, no downloads) and show which codings it converts with; results "
                               "are cached per version."),
    check_codings: str = typer.Option("rate,sws", "--codings", help="Codings --check tries (comma list)."),
    names: str | None = typer.Option(None, "--only", help="Only these models (comma list)."),
    refresh: bool = typer.Option(False, "--refresh", help="With --check: recompute instead of using the cache."),
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
) -> None:
    """List the models snnconvert can ingest by name, which weights are available offline and,
    with --check, which codings each one converts with."""

    def body() -> None:
        from snnconvert.ingest import list_models

        entries = list_models()
        if names:
            wanted = [n.strip().lower() for n in names.split(",") if n.strip()]
            unknown = [n for n in wanted if n not in {e.name for e in entries}]
            if unknown:
                raise SnnConvertError(f"--only: unknown model(s) {', '.join(unknown)[:200]}; see `snnconvert models`")
            entries = [e for e in entries if e.name in wanted]
        checks = None
        if check:
            from snnconvert.codings import get_coding
            from snnconvert.models.check import check_models
            from snnconvert.progress import Progress

            wanted_codings = tuple(c.strip() for c in check_codings.split(",") if c.strip())
            for coding in wanted_codings:
                get_coding(coding)
            with Progress("checking conversions", total=len(entries), show=not as_json) as progress:
                checks = {c.name: c for c in check_models([e.name for e in entries], wanted_codings, refresh=refresh,
                                                           on_model=lambda i, n, name: progress.update(i - 1, name))}
        else:
            from snnconvert.models.check import cached_checks

            checks = cached_checks() or None  # what an earlier --check found, shown without recomputing
        if as_json:
            _emit_json([{**dataclasses.asdict(e),
                         **({"check": dataclasses.asdict(checks[e.name])} if checks and e.name in checks else {})}
                        for e in entries])
        else:
            from snnconvert.cli.render import models_table

            models_table(console, entries, checks)

    _guard(body)


@app.command("info")
def info_cmd(
    artifact: Path = typer.Argument(..., help="An .snnc artifact."),
    as_json: bool = typer.Option(False, "--json", help="Print the manifest as JSON."),
) -> None:
    """Show what an artifact holds: model, versions, quantization, calibration, coding, metrics."""

    def body() -> None:
        from snnconvert.artifact import load_artifact
        from snnconvert.evaluate import evaluations_beside

        loaded = load_artifact(artifact, allow_unchecked=_state.get("allow_unchecked", False))
        stored = loaded.manifest.get("evaluations")  # artifacts of earlier releases recorded them inside
        stored = stored if isinstance(stored, list) else []
        known = {e.get("report") for e in stored if isinstance(e, dict)}
        loaded.manifest["evaluations"] = [*stored, *(e for e in evaluations_beside(artifact)
                                                     if e["report"] not in known)]
        if as_json:
            _emit_json(loaded.manifest)
        else:
            from snnconvert.cli.render import info_tables

            info_tables(console, artifact, loaded)

    _guard(body)


def _register_more_commands() -> None:
    from snnconvert.cli.export_cmd import register as register_export
    from snnconvert.cli.finetune_cmd import register

    register(app)
    register_export(app)


_register_more_commands()


def _command_in(argv: list[str]) -> str | None:
    """The subcommand named on the command line (global options take no values)."""
    return next((arg for arg in argv if not arg.startswith("-")), None)


def _precheck_to_snn(argv: list[str]) -> None:
    """Usage errors of ``to-snn`` (unknown coding or option, a bad value, impossible time steps)
    answered before torch loads (:mod:`snnconvert.cli.usage`); exit 1 (2 for an unknown option)."""
    import inspect

    from snnconvert.cli.usage import precheck_to_snn

    values, flags = set(), {"--help"}
    for parameter in inspect.signature(_to_snn, eval_str=True).parameters.values():
        names = getattr(parameter.default, "param_decls", None) or ()
        (flags if parameter.annotation is bool else values).update(n for n in names if n.startswith("--"))
    try:
        precheck_to_snn(argv[argv.index("to-snn") + 1:], value_options=values, flag_options=flags)
    except SnnConvertError as exc:
        err_console.print(f"[red]error:[/red] {safe_text(cli_message(exc))}", markup=True, highlight=False,
                          soft_wrap=True)
        raise SystemExit(getattr(exc, "exit_code", 1)) from None


def main() -> None:
    """The ``snnconvert`` entry point: the coding table (and torch) is loaded only for ``to-snn``;
    SIGTERM cleans up like Ctrl-C; glibc keeps freed memory (:mod:`snnconvert.allocator`)."""
    TO_SNN.generate = _command_in(sys.argv[1:]) == "to-snn"
    _state["owns_process"] = True
    tune_allocator()  # the command owns the process: reuse freed tensor memory (SNNCONVERT_MALLOC=default: off)
    with contextlib.suppress(ValueError, OSError):  # not the main thread
        signal.signal(signal.SIGTERM, _on_sigterm)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # past RLIMIT_FSIZE a write fails (EFBIG): one line
    try:
        if TO_SNN.generate:
            _precheck_to_snn(sys.argv[1:])
        app()
    except SystemExit as exc:  # Typer turns Ctrl-C outside a command body into a silent exit 130
        if exc.code == 130 and not _state.get("reported"):
            sys.stderr.write("interrupted: nothing was written\n")
        raise
    except KeyboardInterrupt:
        sys.stderr.write("interrupted: nothing was written\n")
        raise SystemExit(130) from None
    except Terminated:
        sys.stderr.write("terminated: nothing was written\n")
        raise SystemExit(143) from None


if __name__ == "__main__":
    main()
