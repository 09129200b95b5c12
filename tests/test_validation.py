"""Typed, ranged validation of manifest fields and option values (issue 29, item 4).

Every case is a hand-written hostile value: a crafted manifest field, an option, a crafted
fine-tuning checkpoint, a quantized or sparse tensor in a weights file, a 300-character file name,
an export target that is a directory. Each must be a one-line error naming the field, and the CLI
must exit non-zero without a traceback. Stored names are printed as text, never as rich markup,
and never as more than one line."""

from __future__ import annotations

import inspect
import json
import math
import warnings
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from snnconvert import artifact as artifact_module
from snnconvert.cli.app import app
from snnconvert.errors import SnnConvertError
from snnconvert.evaluate import EvaluateConfig
from snnconvert.finetune.checkpoint import FORMAT, check_checkpoint, load_checkpoint, restore_training
from snnconvert.finetune.config import FinetuneConfig
from snnconvert.manifest_check import check_snn_info, one_line, safe_text, validate_manifest
from snnconvert.quantize import QuantizeConfig

runner = CliRunner()
LOADS_VALIDATE = "validate_manifest" in inspect.getsource(artifact_module.load_artifact)
"""Whether ``load_artifact`` runs :func:`validate_manifest` (the CLI-level manifest cases need it)."""
needs_load_check = pytest.mark.skipif(not LOADS_VALIDATE, reason="load_artifact does not call validate_manifest yet")


def one_line_error(call, *needles: str) -> str:
    with pytest.raises(SnnConvertError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message and len(message) < 500, message
    for needle in needles:
        assert needle in message, message
    return message


def cli_fails(args: list[str], *needles: str) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code not in (0, None), result.output
    assert "Traceback" not in result.output, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, result.output
    for needle in needles:
        assert needle in result.output.replace("\n", ""), result.output
    return errors[0]


def good_manifest() -> dict:
    """A complete manifest of the shape ``snnconvert quantize`` + ``to-snn`` write."""
    ref = {"name": "relu1_quant", "scale": 0.0124, "zero_point": 0.0, "per_channel": False}
    return {
        "kind": "snn", "created": "2026-01-01T00:00:00+00:00",
        "versions": {"snnconvert": "0.1.0", "torch": "2.14.1"},
        "model": {"name": "lenet5", "source": "bundled:lenet5",
                  "input_spec": {"channels": 1, "size": [8, 8], "resize": None, "mean": [0.3], "std": [0.4]},
                  "num_classes": 10, "default_data": "digits", "notes": []},
        "quantize": {"bits": 8, "weight_bits": None, "method": "percentile", "percentile": 99.99,
                     "per_channel": False, "calib_limit": 128, "qat_epochs": 0, "qat_batches_per_epoch": None,
                     "qat_lr": 1e-4, "qat_momentum": 0.9, "batch_size": 64, "seed": 0, "device": "auto"},
        "calibration": {"spec": "digits", "limit": 128, "seed": 0, "calib_split": 0.2, "images": 128,
                        "description": "digits train: 128 images", "fingerprint": "ed23deb4796a4f09"},
        "layers": [{"name": "conv1", "op": "QConv2d", "weight_bits": 8, "weight_scale_min": 0.008,
                    "weight_scale_max": 0.015, "weight_zero_point": 0, "inputs": [dict(ref)], "output": dict(ref),
                    "act_bits": 8}],
        "clip_stats": [{"name": "relu1_quant", "clip_low": 0.0, "clip_high": 3.1, "observed_max": 3.3,
                        "clipped_share": 1e-4, "method": "percentile"}],
        "accuracy": {"float_top1": 1.0, "quantized_top1": 0.99, "images": 100, "data": "digits test"},
        "qat_history": [{"epoch": 1, "loss": 0.3, "bn_frozen": 0.0, "quant_frozen": 1.0}],
        "snn": {"coding": "spquant", "info": {"coding": "spquant", "latency": 2, "frames": 2, "e_add_pj": 0.16,
                                              "e_mul_pj": 0.34, "latency_terms": "T = 2", "warnings": []}},
        "converted_from": "/runs/quantized.snnc",
        "tensors_sha256": "a" * 64, "models_sha256": "b" * 64,
    }


def crafted(path: list, value) -> dict:
    """:func:`good_manifest` with the field at ``path`` (keys and indices) set to ``value``."""
    manifest = good_manifest()
    target = manifest
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return manifest


def test_the_manifests_snnconvert_writes_pass() -> None:
    validate_manifest(good_manifest(), "a.snnc")
    validate_manifest({}, "a.snnc")  # partial manifests load; missing fields are reported by their readers
    validate_manifest({"model": {"name": "tiny"}, "metrics": {"top1": 0.5}}, "a.snnc")


# ------------------------------------------------------------------------------- manifest fields


@pytest.mark.parametrize(("path", "value", "needle"), [
    (["quantize", "bits"], 99, "quantize.bits = 99"),
    (["quantize", "bits"], 1, "quantize.bits = 1"),
    (["quantize", "bits"], "8", "quantize.bits = '8'"),
    (["quantize", "bits"], 8.0, "quantize.bits = 8.0"),
    (["quantize", "weight_bits"], 0, "quantize.weight_bits = 0"),
    (["layers", 0, "weight_bits"], 64, "layers[0].weight_bits = 64"),
    (["layers", 0, "act_bits"], True, "layers[0].act_bits = True"),
])
def test_bits_are_integers_in_range(path: list, value, needle: str) -> None:
    one_line_error(lambda: validate_manifest(crafted(path, value), "a.snnc"), "a.snnc", needle, "expected an integer")


@pytest.mark.parametrize(("value", "shown"), [(1e9, "1000000000.0"), (1_000_000_000, "1000000000"), (-3, "-3"),
                                              (0, "0"), ("ten", "'ten'"), (None, "None")])
def test_num_classes_is_a_bounded_positive_integer(value, shown: str) -> None:
    one_line_error(lambda: validate_manifest(crafted(["model", "num_classes"], value), "a.snnc"),
                   f"model.num_classes = {shown} is not possible", "1..100000")


@pytest.mark.parametrize(("path", "value", "needle"), [
    (["model", "input_spec", "channels"], 0, "input_spec.channels = 0"),
    (["model", "input_spec", "channels"], "3", "input_spec.channels = '3'"),
    (["model", "input_spec", "channels"], 1 << 40, "input_spec.channels"),
    (["model", "input_spec", "size"], [0, 8], "input_spec.size[0] = 0"),
    (["model", "input_spec", "size"], [8, 100_000], "input_spec.size[1] = 100000"),
    (["model", "input_spec", "size"], [8], "input_spec.size = [8]"),
    (["model", "input_spec", "size"], [16_000, 16_000], "values per image"),
    (["model", "input_spec", "resize"], -1, "input_spec.resize = -1"),
])
def test_input_size_and_channels_are_bounded(path: list, value, needle: str) -> None:
    one_line_error(lambda: validate_manifest(crafted(path, value), "a.snnc"), needle)


@pytest.mark.parametrize(("key", "values", "needle"), [
    ("mean", [math.nan], "input_spec.mean[0] = nan"),
    ("mean", [math.inf], "input_spec.mean[0] = inf"),
    ("std", [0.0], "input_spec.std[0] = 0.0"),
    ("std", [-0.5], "input_spec.std[0] = -0.5"),
    ("std", [math.nan], "input_spec.std[0] = nan"),
    ("std", [0.2, 0.2, 0.2], "one number per channel"),
])
def test_normalization_is_finite_and_std_positive(key: str, values: list, needle: str) -> None:
    one_line_error(lambda: validate_manifest(crafted(["model", "input_spec", key], values), "a.snnc"), needle)


@pytest.mark.parametrize("kind", ["evil", "", 3, None])
def test_kind_is_quantized_or_snn(kind) -> None:
    one_line_error(lambda: validate_manifest(crafted(["kind"], kind), "a.snnc"), "manifest field kind")


@pytest.mark.parametrize(("path", "value"), [
    (["model", "name"], "lenet5\nerror: forged"), (["model", "name"], "x\x1b[2J"), (["model", "name"], ""),
    (["layers", 0, "name"], "conv1\r\nerror: forged"), (["snn", "coding"], "sws\u2028error: forged"),
])
def test_stored_names_are_one_line(path: list, value: str) -> None:
    message = one_line_error(lambda: validate_manifest(crafted(path, value), "a.snnc"), "one-line name")
    assert "\x1b" not in message and "\u2028" not in message


@pytest.mark.parametrize(("path", "value", "needle"), [
    (["snn", "info", "e_add_pj"], math.nan, "snn.info.e_add_pj = nan"),
    (["snn", "info", "e_mul_pj"], math.inf, "snn.info.e_mul_pj = inf"),
    (["accuracy", "float_top1"], 1.5, "accuracy.float_top1 = 1.5"),
    (["quantize", "qat_lr"], math.inf, "quantize.qat_lr = inf"),
    (["quantize", "percentile"], 1e-9, "quantize.percentile = 1e-09"),
    (["calibration", "calib_split"], math.nan, "calibration.calib_split = nan"),
    (["clip_stats", 0, "clip_high"], -math.inf, "clip_stats[0].clip_high = -inf"),
    (["qat_history", 0, "loss"], math.nan, "qat_history[0].loss = nan"),
    (["layers", 0, "inputs", 0, "scale"], math.nan, "layers[0].inputs[0].scale = nan"),
])
def test_non_finite_numbers_are_refused(path: list, value, needle: str) -> None:
    one_line_error(lambda: validate_manifest(crafted(path, value), "a.snnc"), needle, "finite")


def test_stored_network_info_is_checked_like_the_manifests() -> None:
    check_snn_info({"coding": "spquant", "e_add_pj": 0.16, "latency": 2}, "a.snnc", "models.snn.info",
                   "stored network field")
    one_line_error(lambda: check_snn_info({"nested": [{"x": math.nan}]}, "a.snnc", "models.snn.info",
                                          "stored network field"),
                   "stored network field models.snn.info.nested[0].x = nan")


@pytest.mark.parametrize(("path", "value", "needle"), [
    (["quantize", "seed"], 1 << 64, "quantize.seed = 18446744073709551616"),
    (["calibration", "seed"], -1, "calibration.seed = -1"),
    (["snn", "info", "latency"], -1, "snn.info.latency = -1"),
    (["model", "notes"], ["n"] * 100_000, "a list of 100000 entries"),
    (["tensors_sha256"], "z" * 64, "tensors_sha256"),
    (["versions"], {"torch": 5}, "versions.torch = 5"),
])
def test_seeds_lists_and_digests_are_bounded(path: list, value, needle: str) -> None:
    one_line_error(lambda: validate_manifest(crafted(path, value), "a.snnc"), needle)


# ------------------------------------------------------------------------------- CLI: crafted artifacts


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A quantized and an SNN artifact of LeNet-5 on digits (small calibration, no evaluation)."""
    out = tmp_path_factory.mktemp("run")
    for args in (["quantize", "lenet5", "--data", "digits", "--calib-limit", "64", "--eval-limit", "0",
                  "--out", str(out)],
                 ["to-snn", "--coding", "rate", "--T", "8", "--input", str(out), "--out", str(out)]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
    return out


def _with_manifest(source: Path, target: Path, change) -> Path:
    """A copy of artifact ``source`` whose manifest ``change`` edited (the checksums cover tensors
    and model structures, not the manifest, so the copy stays valid otherwise)."""
    payload = torch.load(source, weights_only=True)
    manifest = json.loads(payload["manifest"])
    change(manifest)
    payload["manifest"] = json.dumps(manifest, allow_nan=True)
    torch.save(payload, target)
    return target


def _snn(run: Path) -> Path:
    return next(run.glob("snn-*.snnc"))


@needs_load_check
@pytest.mark.parametrize(("change", "needle"), [
    (lambda m: m["model"].update(num_classes=10**9), "model.num_classes"),
    (lambda m: m["model"].update(num_classes="ten"), "model.num_classes"),
    (lambda m: m["quantize"].update(bits=99), "quantize.bits"),
    (lambda m: m["model"]["input_spec"].update(std=[0.0]), "input_spec.std[0]"),
    (lambda m: m["model"]["input_spec"].update(mean=[math.nan]), "input_spec.mean[0]"),
    (lambda m: m.update(kind="evil"), "manifest field kind"),
    (lambda m: m["snn"]["info"].update(e_ac_pj=math.inf), "snn.info.e_ac_pj"),
])
def test_cli_refuses_crafted_manifests(run: Path, tmp_path: Path, change, needle: str) -> None:
    crafted_path = _with_manifest(_snn(run), tmp_path / "crafted.snnc", change)
    for command in (["info", str(crafted_path)], ["evaluate", "--input", str(crafted_path), "--limit", "10"]):
        cli_fails(command, needle, "is not possible")


def test_stored_markup_and_newlines_are_printed_as_text(run: Path, tmp_path: Path) -> None:
    forged = "[red]x[/red]\nerror: forged line"

    def change(m: dict) -> None:
        m["model"]["notes"] = [forged]
        m["calibration"]["description"] = "[bold]cal[/bold]\rerror: forged"
        m["model"]["name"] = "[blink]lenet5[/blink]"  # one line: allowed, shown literally

    crafted_path = _with_manifest(_snn(run), tmp_path / "marked.snnc", change)
    result = runner.invoke(app, ["info", str(crafted_path)], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    assert not any(line.lstrip("│ ").startswith("error:") for line in result.output.splitlines()), result.output
    assert "[red]x[/red]\\nerror: forged line" in result.output
    assert "[blink]lenet5[/blink]" in result.output


def test_stored_name_cannot_forge_an_error_line_in_evaluate(run: Path, tmp_path: Path) -> None:
    def change(m: dict) -> None:
        m["model"]["name"] = "lenet5\nerror: forged"

    crafted_path = _with_manifest(_snn(run), tmp_path / "forged.snnc", change)
    result = runner.invoke(app, ["evaluate", "--input", str(crafted_path), "--limit", "10", "--report", "accuracy"],
                           env={"COLUMNS": "300"})
    assert "error: forged" not in result.output.splitlines()
    assert not any(line.startswith("error: forged") for line in result.output.splitlines()), result.output
    assert "Traceback" not in result.output


def test_error_messages_escape_markup_and_control_characters(tmp_path: Path) -> None:
    name = tmp_path / "[red]x[/red]\x1b[2J.snnc"
    line = cli_fails(["info", str(name)], "[red]x[/red]")
    assert "\x1b" not in line


def test_safe_text() -> None:
    assert one_line("a\nb\r\x1b\u2028\u202e") == "a\\nb\\r\\x1b\\u2028\\u202e"
    assert safe_text("[bold]x[/bold]\nerror: y") == "\\[bold]x\\[/bold]\\nerror: y"
    assert safe_text("plain text (ok)") == "plain text (ok)"
    assert len(safe_text("x" * 1000, 50)) == 50


# ------------------------------------------------------------------------------- option values


@pytest.mark.parametrize(("args", "needle"), [
    (["quantize", "lenet5", "--percentile", "1e-9"], "--percentile 1e-09 is not possible"),
    (["quantize", "lenet5", "--percentile", "nan"], "--percentile nan is not possible"),
    (["quantize", "lenet5", "--qat-lr", "inf"], "--qat-lr inf is not possible"),
    (["quantize", "lenet5", "--bits", "40"], "--bits 40 is not possible"),
    (["evaluate", "--e-mac", "nan"], "--e-mac nan is not possible"),
    (["evaluate", "--e-ac", "inf"], "--e-ac inf is not possible"),
    (["evaluate", "--limit", "0"], "--limit 0 is not possible"),
    (["finetune", "--data", "digits", "--epochs", "1", "--lr", "inf"], "lr inf is not possible"),
    (["finetune", "--data", "digits", "--epochs", "1", "--seed", str(1 << 64)],
     "seed 18446744073709551616 is not possible"),
    (["finetune", "--data", "digits", "--epochs", "1", "--weight-decay", "inf"], "--weight-decay inf"),
])
def test_cli_refuses_impossible_options_before_any_work(tmp_path: Path, args: list[str], needle: str) -> None:
    cli_fails([*args, *(["--out", str(tmp_path / "out")] if args[0] == "quantize" else [])], needle)


@pytest.mark.parametrize("change", [dict(seed=1 << 64), dict(seed=-1), dict(percentile=1e-9), dict(percentile=49.9),
                                    dict(percentile=math.nan), dict(qat_lr=math.inf), dict(qat_lr=0.0),
                                    dict(bits=8.0), dict(bits=True), dict(batch_size=0), dict(calib_limit=0),
                                    dict(qat_momentum=math.nan)])
def test_quantize_config_ranges(change: dict) -> None:
    one_line_error(lambda: QuantizeConfig(**change).validate(), "is not possible")


def test_quantize_config_accepts_its_documented_range() -> None:
    for p in (50, 90.0, 99.99, 100):
        QuantizeConfig(percentile=p).validate()
    QuantizeConfig(seed=(1 << 64) - 1).validate()


@pytest.mark.parametrize(("change", "needle"), [
    (dict(e_mac_pj=math.nan), "e_mac_pj nan"), (dict(e_ac_pj=math.inf), "e_ac_pj inf"),
    (dict(e_ac_pj=-1.0), "e_ac_pj -1.0"), (dict(seed=1 << 64), "seed 18446744073709551616"),
    (dict(batch_size=2.5), "batch_size 2.5"),
])
def test_evaluate_config_ranges(change: dict, needle: str) -> None:
    one_line_error(lambda: EvaluateConfig(**change).validate(), needle, "is not possible")


@pytest.mark.parametrize(("change", "needle"), [
    (dict(lr=math.inf), "lr inf"), (dict(lr=math.nan), "lr nan"), (dict(threshold_lr=math.inf), "threshold_lr inf"),
    (dict(weight_decay=math.inf), "weight_decay inf"), (dict(seed=1 << 64), "seed 18446744073709551616"),
    (dict(seed=-1), "seed -1"), (dict(time_budget_s=math.inf), "time_budget_s inf"),
    (dict(epochs=10**9), "epochs 1000000000"), (dict(milestones=list(range(10**6))), "milestones"),
])
def test_finetune_config_ranges(change: dict, needle: str) -> None:
    one_line_error(lambda: FinetuneConfig(**change).validate(), needle, "not possible")


# ------------------------------------------------------------------------------- checkpoints


def _resume_state() -> tuple[dict, torch.nn.Module, torch.optim.Optimizer, object, torch.Generator]:
    from snnconvert.finetune.checkpoint import rng_state

    class Schedule:
        epoch = 0

        def state_dict(self) -> dict:
            return {"epoch": self.epoch}

        def load_state_dict(self, state: dict) -> None:
            self.epoch = int(state["epoch"])

    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    generator = torch.Generator().manual_seed(1)
    state = {"format": FORMAT, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "schedule": {"epoch": 1}, "rng": rng_state(generator), "epoch": 1,
             "history": [{"epoch": 1, "train_loss": 0.5}], "config": FinetuneConfig().as_dict()}
    return state, model, optimizer, Schedule(), generator


def _quantized(t: torch.Tensor) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.quantize_per_tensor(t.float(), 0.01, 0, torch.qint8)


@pytest.mark.parametrize(("change", "needle"), [
    (lambda s: s["model"].update(weight=_quantized(s["model"]["weight"])), "model.weight"),
    (lambda s: s["model"].update(weight=s["model"]["weight"].to_sparse()), "sparse_coo"),
    (lambda s: s["model"].update(bias=torch.tensor([math.nan, 0.0])), "NaN or infinite"),
    (lambda s: s["optimizer"]["state"][0].update(exp_avg=s["optimizer"]["state"][0]["exp_avg"].to_sparse()),
     "optimizer.state"),
    (lambda s: s["optimizer"]["param_groups"][0].update(lr=math.inf), "param_groups[0].lr = inf"),
    (lambda s: s.update(epoch=-1), "epoch = -1"),
    (lambda s: s.update(epoch=10**12), "epoch = 1000000000000"),
    (lambda s: s.update(schedule={"epoch": "x"}), "schedule.epoch"),
    (lambda s: s["rng"].update(torch=torch.zeros(3, dtype=torch.uint8)), "rng.torch"),
    (lambda s: s["rng"].update(generator=torch.zeros(5056)), "rng.generator"),
    (lambda s: s.pop("config"), "config = missing"),
    (lambda s: s.update(history="x"), "history"),
    (lambda s: s["history"].append({"train_loss": math.nan}), "history[1].train_loss = nan"),
])
def test_crafted_resume_checkpoints_are_refused(tmp_path: Path, change, needle: str) -> None:
    state = _resume_state()[0]
    check_checkpoint(state, tmp_path / "c.pt")  # the untouched state is fine
    change(state)
    path = tmp_path / "c.pt"
    torch.save(state, path)
    one_line_error(lambda: load_checkpoint(path), needle, "run without resume")  # the API's name


def test_resume_into_another_network_is_one_line(tmp_path: Path) -> None:
    state, model, optimizer, schedule, generator = _resume_state()
    epoch, history = restore_training(state, tmp_path / "c.pt", model, optimizer, schedule, generator)
    assert (epoch, history, schedule.epoch) == (1, [{"epoch": 1, "train_loss": 0.5}], 1)
    other = torch.nn.Linear(3, 4)
    one_line_error(lambda: restore_training(state, tmp_path / "c.pt", other, torch.optim.Adam(other.parameters()),
                                            schedule, generator), "model.weight", "shape (4, 3)")
    state["optimizer"]["state"][0]["exp_avg"] = torch.zeros(7)
    one_line_error(lambda: restore_training(state, tmp_path / "c.pt", model, optimizer, schedule, generator),
                   "optimizer.state.0.exp_avg", "shape (2, 3)")


def test_cli_resume_with_a_crafted_checkpoint(run: Path, tmp_path: Path) -> None:
    source = _snn(run)
    work = tmp_path / f"finetune-{source.stem}"
    work.mkdir()
    state = _resume_state()[0]
    state["model"]["weight"] = _quantized(state["model"]["weight"])
    torch.save(state, work / "finetune-checkpoint.pt")
    import shutil

    shutil.copy(source, tmp_path / source.name)
    cli_fails(["finetune", "--input", str(tmp_path / source.name), "--data", "digits", "--epochs", "1", "--resume",
               "--val-limit", "0", "--max-batches", "1"], "qint8", "run without --resume")


@pytest.mark.parametrize("kind", ["qint8", "sparse"])
def test_quantized_and_sparse_weights_are_refused(tmp_path: Path, kind: str) -> None:
    from snnconvert.ingest.loader import load_model

    state = load_model("lenet5", None).module.state_dict()
    state["conv1.weight"] = _quantized(state["conv1.weight"]) if kind == "qint8" else state["conv1.weight"].to_sparse()
    torch.save(state, tmp_path / "w.pt")
    cli_fails(["quantize", "lenet5", "--weights", str(tmp_path / "w.pt"), "--out", str(tmp_path / "o")],
              "conv1.weight", "qint8" if kind == "qint8" else "sparse_coo", "dense float weights")


# ------------------------------------------------------------------------------- file names and targets


def test_300_character_file_names_are_one_line(run: Path, tmp_path: Path) -> None:
    long = tmp_path / ("a" * 300 + ".snnc")
    cli_fails(["evaluate", "--input", str(long)], "file name too long")
    cli_fails(["export", "--input", str(_snn(run)), "--out", str(tmp_path / ("b" * 300 + ".onnx"))],
              "file name too long")
    cli_fails(["quantize", "lenet5", "--out", str(tmp_path / ("c" * 300))], "file name too long")


def test_export_out_that_is_a_directory_or_the_input(run: Path, tmp_path: Path) -> None:
    cli_fails(["export", "--input", str(_snn(run)), "--out", str(tmp_path)], "is a directory")
    snn = tmp_path / "copy.snnc"
    snn.write_bytes(_snn(run).read_bytes())
    before = snn.read_bytes()
    cli_fails(["export", "--input", str(snn), "--out", str(snn)], "commands never overwrite their input")
    assert snn.read_bytes() == before
