"""The command line through Typer's CliRunner: the whole chain and its error messages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from snnconvert.cli.app import app
from snnconvert.models import cifar_resnet

runner = CliRunner()


def _ok(args: list[str]):
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return result


def _fails(args: list[str], *needles: str) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code != 0
    message = result.output.strip()
    for needle in needles:
        assert needle in message, message
    assert "Traceback" not in message
    return message


def test_version_and_help() -> None:
    assert "snnconvert 0.1.0" in _ok(["--version"]).output
    help_text = _ok(["quantize", "--help"]).output
    assert "Examples" in help_text and "--bits" in help_text


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run")
    _ok(["quantize", "lenet5", "--data", "digits", "--calib-limit", "256", "--eval-limit", "200", "--out", str(out)])
    return out


def test_chain_quantize_to_snn_evaluate(run_dir: Path) -> None:
    files = list(run_dir.glob("quantized-*.snnc"))
    assert len(files) == 1
    result = _ok(["to-snn", "--coding", "sws", "--Tc", "8", "--Ts", "2", "--input", str(run_dir), "--json"])
    info = json.loads(result.output)["info"]
    assert info["T_inf"] == 8 + 2 * 6 and info["Tc"] == 8
    result = _ok(["evaluate", "--input", str(run_dir), "--limit", "100", "--json", "--report", "all"])
    report = json.loads(result.output)
    scores = {s["model"]: s["top1"] for s in report["accuracy"]["scores"]}
    assert set(scores) == {"float ANN", "quantized ANN", "SNN"}
    assert scores["SNN"] > 0.9 and report["accuracy"]["images"] == 100
    assert report["ops"]["delta"] > 0 and report["ops"]["opf"] > report["ops"]["synaptic_ops"]
    assert len(report["residual"]) == 4 and len(report["rates"]) == 7


def test_evaluate_tables_plots_and_sweep(run_dir: Path, tmp_path: Path) -> None:
    result = _ok(["evaluate", "--input", str(run_dir), "--limit", "60", "--sweep", "Ts=0,8", "--plots", str(tmp_path)])
    assert "accuracy" in result.output and "sweep" in result.output and "T_inf" in result.output
    for name in ("residuals.png", "spike_rates.png", "accuracy_vs_latency.png"):
        assert (tmp_path / name).stat().st_size > 1000


def test_info_prints_the_manifest(run_dir: Path) -> None:
    path = sorted(run_dir.glob("*.snnc"))[0]
    assert "lenet5" in _ok(["info", str(path)]).output
    manifest = json.loads(_ok(["info", str(path), "--json"]).output)
    assert manifest["model"]["name"] == "lenet5" and manifest["quantize"]["bits"] == 8


def test_missing_file() -> None:
    _fails(["info", "does-not-exist.snnc"], "artifact not found")
    _fails(["to-snn", "--input", "nope.snnc"], "artifact not found")


def test_corrupt_checkpoint(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00garbage" * 10)
    _fails(["quantize", "resnet20", "--weights", str(bad), "--out", str(tmp_path)], "bad.pt")
    assert not list(tmp_path.glob("*.snnc"))


def test_checkpoint_with_wrong_keys(tmp_path: Path) -> None:
    state = cifar_resnet("resnet20", 10).state_dict()
    state["extra.weight"] = torch.zeros(1)
    del state["linear.bias"]
    path = tmp_path / "ckpt.pt"
    torch.save({"state_dict": state}, path)
    _fails(["quantize", "resnet20", "--weights", str(path), "--out", str(tmp_path)], "linear.bias", "extra.weight")


def test_unknown_model_name() -> None:
    _fails(["quantize", "resnet21"], "resnet21", "snnconvert models")


def test_impossible_options(run_dir: Path) -> None:
    _fails(["quantize", "lenet5", "--bits", "0"], "--bits 0")
    _fails(["to-snn", "--input", str(run_dir), "--coding", "sws", "--Tc", "4"], "--Tc 4")
    _fails(["to-snn", "--input", str(run_dir), "--coding", "sws", "--S", "3"], "--S is not an option of coding sws")
    _fails(["to-snn", "--input", str(run_dir), "--coding", "nope"], "unknown coding 'nope'")
    _fails(["evaluate", "--input", str(run_dir), "--report", "speed"], "unknown report")


def test_invalid_recipe_key_names_the_key_and_line(tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: lenet5\nquantize:\n  bits: 8\n  bitz: 4\n")
    _fails(["run", str(recipe)], "r.yaml:4", "quantize.bitz")
    recipe.write_text("model: lenet5\nconvert:\n  coding: sws\n  Tc: eight\n")
    _fails(["run", str(recipe)], "r.yaml:4", "Tc")
    recipe.write_text("model: lenet5\nflavour: vanilla\n")
    _fails(["run", str(recipe)], "r.yaml:2", "flavour")


def test_bundled_recipes_validate() -> None:
    from snnconvert.recipe import load_recipe

    root = Path(__file__).resolve().parents[1] / "recipes"
    recipes = sorted(root.glob("*.yaml"))
    assert {"demo.yaml", "resnet20-cifar10-sws.yaml"} <= {r.name for r in recipes}
    for path in recipes:
        load_recipe(path)


def test_models_lists_bundled_and_torchvision() -> None:
    out = json.loads(_ok(["models", "--json"]).output)
    names = {m["name"] for m in out}
    assert {"lenet5", "resnet20", "resnet110", "resnet18", "vgg16"} <= names


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    result = _ok(["demo", "--out", str(tmp_path), "--json"])
    report = json.loads(result.output)
    scores = {s["model"]: s["top1"] for s in report["accuracy"]["scores"]}
    assert scores["float ANN"] >= 0.97 and abs(scores["SNN"] - scores["quantized ANN"]) < 0.01
    assert report["snn_info"]["T_inf"] == 20
