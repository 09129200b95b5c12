"""The command line through Typer's CliRunner: the whole chain and its error messages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import snnconvert
from snnconvert.cli.app import app
from snnconvert.models import cifar_resnet

runner = CliRunner()


def _ok(args: list[str], width: int | None = None):
    result = runner.invoke(app, args, env={"COLUMNS": str(width)} if width else None)
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
    from snnconvert._version import __version__

    assert f"snnconvert {__version__}" in _ok(["--version"]).output
    help_text = _ok(["quantize", "--help"]).output
    assert "Examples" in help_text and "--bits" in help_text


def test_to_snn_help_lists_every_codings_options_from_the_table() -> None:
    from snnconvert.codings import codings

    help_text = _ok(["to-snn", "--help"], width=200).output
    for coding in codings().values():
        for f in coding.options():
            assert f"--{f.name.replace('_', '-')}" in help_text, f.name
    assert "sws options" in help_text and "mlif options" in help_text  # one panel per coding
    assert "Silent period" in help_text  # the field's help text, not a hand-written one


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
    assert len(report["coding_reports"]["residual"]) == 4 and len(report["rates"]) == 7


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
    _fails(["to-snn", "--input", str(run_dir), "--coding", "sws", "--set", "beta=../../x"], "beta", "sws")
    _fails(["to-snn", "--input", str(run_dir), "--coding", "sws", "--Ts", "fast"], "--Ts 'fast'")
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
    from snnconvert.assets import demo_recipe_path
    from snnconvert.recipe import load_recipe

    root = Path(__file__).resolve().parents[1] / "recipes"
    recipes = sorted(root.glob("*.yaml")) + [demo_recipe_path()]
    assert {"demo.yaml", "resnet20-cifar10-sws.yaml"} <= {r.name for r in recipes}
    for path in recipes:
        load_recipe(path).validate()


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


def test_sweep_of_an_auto_network_reconverts_with_calibration(tmp_path: Path) -> None:
    """Regression: an SWS network built with --Ts auto and swept over Tc failed with "--Ts auto
    needs calibration data" because the sweep decided calibration from the swept values only."""
    out = tmp_path / "auto"
    _ok(["quantize", "lenet5", "--data", "digits", "--calib-limit", "128", "--eval-limit", "0", "--out", str(out)])
    _ok(["to-snn", "--input", str(out), "--coding", "sws", "--Tc", "8", "--Ts", "auto", "--set", "auto_limit=64"])
    report = json.loads(_ok(["evaluate", "--input", str(out), "--limit", "40", "--report", "accuracy",
                             "--sweep", "Tc=8", "--json"]).output)
    (row,) = report["sweep"]
    assert row["setting"] == {"Tc": 8} and row["agreement"] >= 0.95


def test_demo_follows_its_recipe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: demo ignored the recipe's weights and calib_split (it re-implemented the
    pipeline); it now runs the recipe through pipeline.run like `run` does."""
    import snnconvert.cli.app as cli
    from snnconvert.recipe import load_recipe

    recipe = tmp_path / "demo.yaml"
    recipe.write_text("model: lenet5\nweights: random\ndata: digits\ncalib_split: 0.5\n"
                      "quantize: {bits: 8, calib_limit: 64}\nconvert: {coding: sws, Tc: 8, Ts: 8}\n"
                      "evaluate: {limit: 30, reports: [accuracy]}\n")
    monkeypatch.setattr(cli, "demo_recipe", lambda: load_recipe(recipe))
    report = json.loads(_ok(["demo", "--out", str(tmp_path / "run"), "--json"]).output)
    snapshot = snnconvert.load(sorted((tmp_path / "run").glob("snn-*.snnc"))[0])[0]
    assert snapshot.calibration.calib_split == 0.5
    assert "random" in snapshot.info.source
    assert report["accuracy"]["scores"][0]["top1"] < 0.5  # random weights, not the bundled LeNet-5


def test_run_recipe_with_finetune_stage(tmp_path: Path) -> None:
    recipe = tmp_path / "ft.yaml"
    recipe.write_text("model: lenet5\ndata: digits\nquantize: {bits: 8, calib_limit: 64}\n"
                      "convert: {coding: mlif, S: 3, T: 1}\n"
                      "finetune: {data: digits, epochs: 1, max_batches_per_epoch: 2, batch_size: 16, val_limit: 20}\n"
                      "evaluate: {limit: 30, reports: [accuracy]}\n"
                      f"out: {tmp_path / 'run'}\n")
    output = _ok(["run", str(recipe)]).output
    assert "fine-tune for 1 epoch(s) on digits" in output and "fine-tuned mlif SNN" in output
    tuned = sorted((tmp_path / "run").glob("snn-mlif-finetuned-*.snnc"))
    assert len(tuned) == 1
    manifest = json.loads(_ok(["info", str(tuned[0]), "--json"]).output)
    history = manifest["snn"]["info"]["finetune"]["history"]
    assert len(history) == 1 and history[0]["images"] == 32
    assert manifest["finetuned_from"].endswith(".snnc")


def test_quantize_prints_and_records_how_the_weights_were_found(tmp_path: Path) -> None:
    state = {"module." + k: v for k, v in cifar_resnet("resnet20", 10).state_dict().items()}
    path = tmp_path / "dp.th"
    torch.save({"state_dict": state}, path)
    out = _ok(["quantize", "resnet20", "--weights", str(path), "--calib-limit", "16", "--eval-limit", "0",
               "--data", "digits", "--resize-data", "--out", str(tmp_path)]).output  # 8x8 digits: resized on request
    assert "stripped key prefix 'module.'" in out
    artifact = sorted(tmp_path.glob("quantized-*.snnc"))[0]
    manifest = json.loads(_ok(["info", str(artifact), "--json"]).output)
    assert "stripped key prefix 'module.' from checkpoint dp.th" in manifest["model"]["notes"]


def test_evaluate_on_cpu_device_equals_the_default(run_dir: Path) -> None:
    args = ["evaluate", "--input", str(run_dir), "--limit", "40", "--report", "accuracy,rates", "--json"]
    default = json.loads(_ok(args).output)
    on_cpu = json.loads(_ok([*args, "--device", "cpu"]).output)
    assert on_cpu["accuracy"] == default["accuracy"] and on_cpu["rates"] == default["rates"]
    _fails([*args, "--device", "tpu"], "device 'tpu' is not possible")
