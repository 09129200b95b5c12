"""The Python API behind every CLI command: quantize -> to_snn -> evaluate, plus save/load.

Each function takes and returns ordinary ``nn.Module`` s and dataclasses::

    import snnconvert
    q = snnconvert.quantize("lenet5", data="digits")            # QuantizedModel
    snn = snnconvert.to_snn(q, coding="sws", Tc=8, Ts=2)        # SpikingNetwork (nn.Module)
    report = snnconvert.evaluate(q, snn, data="digits")          # EvaluationReport
    snnconvert.save("run.snnc", q, snn)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from snnconvert.core import (
    AccuracyPair,
    CalibrationRecord,
    ModelInfo,
    QuantizedModel,
    check_data_matches,
    conversion_inputs,
    data_geometry,
    eval_split,
    from_artifact,
    load,
    quantized_manifest,
    save,
    top1,
)
from snnconvert.errors import SnnConvertError
from snnconvert.evaluate import EvaluationReport, evaluate, save_evaluation
from snnconvert.finetune import finetune
from snnconvert.options import opt
from snnconvert.recipe import Recipe
from snnconvert.simulate.network import SpikingNetwork
from snnconvert.stages import (
    check_weights,
    coding_config,
    convert_with,
    data_for,
    ingest_class_check,
    quantize,
    quantized_from_onnx,
    to_snn,
)

__all__ = [
    "AccuracyPair", "CalibrationRecord", "ModelInfo", "QuantizedModel", "RunResult", "StageEvent", "check_data_matches",
    "check_weights", "coding_config", "conversion_inputs", "convert_with", "data_for", "data_geometry", "eval_split",
    "from_artifact", "ingest_class_check", "load", "quantize", "quantized_from_onnx", "quantized_manifest", "run",
    "save", "to_snn", "top1",
]


@dataclass
class StageEvent:
    """What :func:`run` reports to ``on_stage``: a stage starting (``result`` None) or done."""

    stage: str  # "quantize" | "convert" | "finetune" | "evaluate"
    index: int  # 1-based position among the stages this run executes
    total: int
    description: str
    result: Any = None
    path: Path | None = None

    @property
    def done(self) -> bool:
        return self.result is not None


@dataclass
class RunResult:
    """Everything one :func:`run` produced."""

    quantized: QuantizedModel
    quantized_path: Path | None
    snn: SpikingNetwork | None = None
    snn_path: Path | None = None
    report: EvaluationReport | None = None
    directory: Path | None = None
    report_path: Path | None = None  # the evaluation's JSON in ``directory``
    written: list[Path] = field(default_factory=list)  # every file and folder published, in order


STAGING_PREFIX = ".staging-"
"""A run writes into ``<run dir>/.staging-<pid>-<random>/`` and publishes at the end."""


def _staging_pid(path: Path) -> int | None:
    head = path.name[len(STAGING_PREFIX):].split("-", 1)[0]
    return int(head) if head.isdigit() else None


def remove_stale_staging(directory: Path) -> None:
    """Remove staging folders of runs whose process no longer exists (a SIGKILLed run)."""
    import os
    import shutil

    for folder in directory.glob(f"{STAGING_PREFIX}*"):
        pid = _staging_pid(folder)
        if pid is None or pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except OSError:
            pass


def _publish(staging: Path, directory: Path, order: list[Path]) -> list[Path]:
    """Move ``order`` (paths in ``staging``) into ``directory`` without replacing anything there
    (a taken name gets ``-N``); all or nothing: on any failure what was moved is removed again."""
    import os
    import shutil

    published: list[Path] = []
    try:
        for item in order:
            target = directory / item.name
            n = 1
            while True:
                try:
                    if item.is_dir():
                        if target.exists():
                            raise FileExistsError(target)
                        os.rename(item, target)
                    else:
                        os.link(item, target)  # fails instead of replacing a file another process made
                        os.unlink(item)
                    break
                except FileExistsError:
                    target = directory / f"{item.stem}-{n}{item.suffix}"
                    n += 1
            published.append(target)
    except BaseException:
        for path in published:
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
        raise
    return published


def run(recipe: Recipe, *, on_stage: Callable[[StageEvent], None] | None = None, out: str | Path | None = None,
        save_artifacts: bool = True, show_progress: bool = False) -> RunResult:
    """The whole pipeline of a recipe: quantize -> to-snn -> finetune (if asked) -> evaluate.

    The single implementation behind ``snnconvert run`` and ``snnconvert demo``. Artifacts, the
    fine-tuning folder and the evaluation's JSON go to ``out`` (default: the recipe's ``out``, else
    ``./snnconvert-runs/<model>/``) unless ``save_artifacts`` is False: they are written into a
    hidden staging folder there and published together when every stage has succeeded, so a run
    that fails or is interrupted (Ctrl-C, SIGTERM) leaves no new file (a SIGKILLed run leaves its
    ``.staging-<pid>-*`` folder, removed by the next run into that directory). ``on_stage`` hears
    each stage start and finish (``path``: where the stage's artifact will be published).
    """
    from snnconvert.distributed import process_group

    recipe.validate()
    with process_group(recipe.quantize.device):  # one process group for every stage under torchrun
        return _run_recipe(recipe, on_stage, out, save_artifacts, show_progress)


def _run_recipe(recipe: Recipe, on_stage: Callable[[StageEvent], None] | None, out: str | Path | None,
                save_artifacts: bool, show_progress: bool) -> RunResult:
    import os
    import shutil
    import uuid

    from snnconvert.workspace import run_dir

    stages = ["quantize"] + (["convert"] if recipe.convert else []) + \
        (["finetune"] if recipe.convert and recipe.finetune else []) + \
        (["evaluate"] if recipe.convert and recipe.evaluate else [])
    notify = on_stage or (lambda _event: None)

    def event(stage: str, description: str, result: Any = None, path: Path | None = None) -> StageEvent:
        return StageEvent(stage, stages.index(stage) + 1, len(stages), description, result, path)

    q_text = f"quantize {recipe.model} to {recipe.quantize.bits} bits on {recipe.data}"
    notify(event("quantize", q_text))
    q = quantize(recipe.model, data=recipe.data, config=recipe.quantize, weights=recipe.weights,
                 num_classes=recipe.num_classes, calib_split=recipe.calib_split, show_progress=show_progress)
    directory = run_dir(q.info.name, out or recipe.out) if save_artifacts else None
    if directory is None:
        return _run_stages(recipe, q, None, None, notify, event, q_text, show_progress)
    made = [p for p in (directory, *directory.parents) if not p.exists()]
    staging = directory / f"{STAGING_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        try:
            directory.mkdir(parents=True, exist_ok=True)
            remove_stale_staging(directory)
            staging.mkdir()
        except OSError as exc:
            raise SnnConvertError(f"cannot write into the run directory {directory} ({exc.strerror or exc}); "
                                  f"choose another {opt('run', 'out')}") from None
        result = _run_stages(recipe, q, staging, directory, notify, event, q_text, show_progress)
        order = [p for p in (result.quantized_path, *result.written, result.report_path) if p is not None]
        published = _publish(staging, directory, order)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        for folder in made:  # folders this run created, innermost first, if still empty
            try:
                folder.rmdir()
            except OSError:
                break
        raise
    shutil.rmtree(staging, ignore_errors=True)  # only hidden markers can be left in it
    names = {old.name: new for old, new in zip(order, published, strict=True)}
    result.quantized_path = names.get(result.quantized_path.name) if result.quantized_path else None
    result.snn_path = names.get(result.snn_path.name) if result.snn_path else None
    result.report_path = names.get(result.report_path.name) if result.report_path else None
    result.written = published
    return result


def _run_stages(recipe: Recipe, q: QuantizedModel, staging: Path | None, directory: Path | None,
                notify: Callable[[StageEvent], None], event: Callable[..., StageEvent], q_text: str,
                show_progress: bool) -> RunResult:
    """The stages after quantization; artifacts are saved into ``staging`` (None: not saved) under
    the names they will have in ``directory``."""
    from snnconvert.workspace import new_artifact_path

    def final(path: Path) -> Path:
        return directory / path.name if directory is not None else path

    q_path = save(new_artifact_path(staging, "quantized", f"{recipe.quantize.bits}bit"), q) if staging else None
    notify(event("quantize", q_text, q, final(q_path) if q_path else None))
    result = RunResult(q, q_path, directory=directory)
    if recipe.convert is None:
        return result
    convert = recipe.convert
    settings = ", ".join(f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}"
                         for k, v in convert.options.items())
    c_text = f"convert to an SNN with {convert.coding}" + (f" ({settings})" if settings else "")
    notify(event("convert", c_text))
    snn = to_snn(q, convert.coding, show_progress=show_progress, **convert.options)
    result.snn = snn
    if staging is not None:
        result.snn_path = save(new_artifact_path(staging, "snn", convert.coding), q, snn,
                               extra={"converted_from": str(final(q_path))})
        result.written.append(result.snn_path)
    notify(event("convert", c_text, snn, final(result.snn_path) if result.snn_path else None))
    if recipe.finetune is not None:

        section = recipe.finetune
        f_text = f"fine-tune for {section.config.epochs} epoch(s) on {section.data}"
        notify(event("finetune", f_text))
        out_dir = staging / f"finetune-{result.snn_path.stem}" if staging and result.snn_path else None
        tuned = finetune(q, snn, section.config, data=section.data, val_data=section.val_data, out_dir=out_dir,
                         show_progress=show_progress)
        snn = result.snn = tuned.snn
        if out_dir is not None and out_dir.exists():
            result.written.append(out_dir)
        if staging is not None:
            result.snn_path = save(new_artifact_path(staging, "snn", f"{convert.coding}-finetuned"), q, snn,
                                   extra={"finetuned_from": str(final(result.snn_path))})
            result.written.append(result.snn_path)
        notify(event("finetune", f_text, tuned, final(result.snn_path) if result.snn_path else None))
    if recipe.evaluate is not None:
        e_text = f"evaluate on {recipe.evaluate.data or 'the held-out part of ' + recipe.data}"
        notify(event("evaluate", e_text))
        result.report = evaluate(q, snn, recipe.evaluate, show_progress=show_progress)
        if result.snn_path is not None:
            result.report_path = save_evaluation(result.report, result.snn_path)
        notify(event("evaluate", e_text, result.report))
    return result
