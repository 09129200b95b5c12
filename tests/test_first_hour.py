"""A first hour without surprises (issue 15): every item found by trying snnconvert as a new user,
each with the behaviour it must keep.

Fast tests use the bundled LeNet-5 on digits; the README snippet as written needs ../shared/data
and is marked slow.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torchvision
from helpers import SHARED_DATA
from torch import nn
from typer.testing import CliRunner

import snnconvert
from snnconvert.cli.app import app
from snnconvert.data import InputSpec
from snnconvert.errors import SnnConvertError, UnsupportedGraphError
from snnconvert.evaluate import EvaluateConfig, evaluation_input
from snnconvert.graph import prepare
from snnconvert.graph.passes import remove_noops
from snnconvert.ingest import LoadedModel
from snnconvert.models import cifar_resnet
from snnconvert.pipeline import data_for
from snnconvert.progress import Progress, track

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def _invoke(args: list[str]):
    return runner.invoke(app, args)


def _ok(args: list[str]) -> str:
    result = _invoke(args)
    assert result.exit_code == 0, result.output
    return result.output


def _fails(args: list[str], *needles: str) -> str:
    result = _invoke(args)
    assert result.exit_code != 0, result.output
    message = result.output.strip()
    assert "Traceback" not in message, message
    for needle in needles:
        assert needle in message, message
    return message


def _files(directory: Path) -> set[Path]:
    return {p for p in directory.rglob("*")} if directory.exists() else set()


@pytest.fixture(scope="module")
def lenet_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run directory holding one quantized LeNet-5 artifact (no SNN yet)."""
    out = tmp_path_factory.mktemp("lenet") / "run"
    _ok(["quantize", "lenet5", "--calib-limit", "128", "--eval-limit", "100", "--out", str(out)])
    return out


# ---------------------------------------------------------------------------- lazy imports, --help


def _python(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_cli_module_and_the_package_do_not_import_torch() -> None:
    code = ("import sys, snnconvert, snnconvert.cli.app; "
            "print(sorted(m for m in ('torch', 'torchvision', 'numpy') if m in sys.modules))")
    assert _python(code) == "[]"


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["quantize"], ["quantize", "--help"],
                                  ["evaluate", "--help"], ["run", "--help"], ["bogus-command"]])
def test_help_version_and_usage_errors_need_no_torch(argv: list[str]) -> None:
    """What makes them answer in well under a second: the entry point never loads torch for them."""
    code = (f"import sys; sys.argv = ['snnconvert', *{argv!r}]\n"
            "from snnconvert.cli.app import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print('TORCH', 'torch' in sys.modules)")
    assert _python(code).splitlines()[-1] == "TORCH False"


def test_help_wall_time_is_under_a_second_of_cpu() -> None:
    """CPU time of ``snnconvert --help`` (wall time on a loaded 2-core machine is not the tool's)."""
    start = os.times()
    subprocess.run([sys.executable, "-m", "snnconvert", "--help"], capture_output=True, timeout=60, cwd=ROOT,
                   check=True)
    end = os.times()
    cpu = (end.children_user - start.children_user) + (end.children_system - start.children_system)
    assert cpu < 1.0, f"--help used {cpu:.2f} s of CPU"


def test_help_shows_no_bool_metavar_on_flags() -> None:
    for args in (["--help"], ["quantize", "--help"], ["evaluate", "--help"], ["to-snn", "--help"]):
        assert "<bool>" not in _ok(args)


def test_the_package_api_is_still_there() -> None:
    assert callable(snnconvert.quantize) and callable(snnconvert.finetune) and callable(snnconvert.codings)
    assert "sws" in snnconvert.codings()
    with pytest.raises(AttributeError):
        snnconvert.not_a_thing  # noqa: B018


# ---------------------------------------------------------------------------- evaluate


def test_evaluate_without_an_snn_artifact_fails_and_says_so(lenet_run: Path) -> None:
    message = _fails(["evaluate", "--input", str(lenet_run)], "no SNN artifact", "snnconvert to-snn")
    assert len(message.splitlines()) == 1


@pytest.mark.parametrize("report", ["energy", "latency", "accuracy,energy", "rates", "residual"])
def test_snn_reports_on_a_quantized_artifact_are_errors(lenet_run: Path, report: str) -> None:
    quantized = next(lenet_run.glob("quantized-*.snnc"))
    name = report.split(",")[-1]
    message = _fails(["evaluate", "--input", str(quantized), "--report", report, "--limit", "20"],
                     f"report {name} needs a spiking network")
    assert len(message.splitlines()) == 1


def test_accuracy_of_a_quantized_artifact_is_scored_with_a_note(lenet_run: Path) -> None:
    quantized = next(lenet_run.glob("quantized-*.snnc"))
    out = _ok(["evaluate", "--input", str(quantized), "--report", "accuracy", "--limit", "20"])
    assert "quantized ANN" in out and "│ SNN" not in out and "only the ANNs are scored" in out


def test_the_library_refuses_snn_reports_without_an_snn(lenet_run: Path) -> None:
    q, snn = snnconvert.load(next(lenet_run.glob("quantized-*.snnc")))
    assert snn is None
    with pytest.raises(SnnConvertError, match="energy needs a spiking network"):
        snnconvert.evaluate(q, None, EvaluateConfig(reports=("accuracy", "energy"), limit=10))


def _touch(path: Path, mtime: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    os.utime(path, (mtime, mtime))
    return path


def test_the_latest_artifact_is_picked_per_model_and_stage(tmp_path: Path) -> None:
    """The model last worked on decides the run; in it the newest SNN is evaluated, and a newer
    quantized artifact (re-quantized, not converted yet) is named in the note."""
    root = tmp_path / "snnconvert-runs"
    _touch(root / "resnet20" / "snn-sws-a.snnc", 100)
    _touch(root / "lenet5" / "quantized-8bit-a.snnc", 200)
    snn = _touch(root / "lenet5" / "snn-sws-b.snnc", 300)
    requantized = _touch(root / "lenet5" / "quantized-8bit-b.snnc", 400)
    chosen = evaluation_input(None, root)
    assert chosen.path == snn and not chosen.explicit
    assert requantized.name in chosen.note and snn.name in chosen.note
    # the other model's run, by directory
    assert evaluation_input(root / "resnet20", root).path == root / "resnet20" / "snn-sws-a.snnc"
    # no SNN at all in the newest run: an error naming the model's run and the quantized artifact
    _touch(root / "vgg11" / "quantized-8bit-a.snnc", 500)
    with pytest.raises(SnnConvertError, match=r"no SNN artifact in .*vgg11.*--input .*quantized-8bit-a"):
        evaluation_input(None, root)


def test_evaluate_writes_its_report_into_the_run_and_the_manifest(tmp_path: Path, lenet_run: Path) -> None:
    out = tmp_path / "run"
    source = next(lenet_run.glob("quantized-*.snnc"))
    _ok(["to-snn", "--input", str(source), "--coding", "sws", "--Tc", "8", "--Ts", "2", "--out", str(out)])
    snn_path = next(out.glob("snn-*.snnc"))
    mtime = snn_path.stat().st_mtime_ns
    data = json.loads(_ok(["evaluate", "--input", str(out), "--limit", "30", "--report", "accuracy", "--json"]))
    saved = Path(data["saved"])
    assert saved.parent == out and saved.name.startswith("evaluation-") and saved.is_file()
    stored = json.loads(saved.read_text())
    assert stored["accuracy"] == data["accuracy"] and stored["artifact"] == str(snn_path)
    manifest = json.loads(_ok(["info", str(snn_path), "--json"]))
    record = manifest["evaluations"][-1]
    assert record["report"] == saved.name and record["images"] == 30
    assert record["top1"]["SNN"] == pytest.approx(data["accuracy"]["scores"][2]["top1"], abs=1e-12)
    assert snn_path.stat().st_mtime_ns == mtime  # still the same "latest" artifact
    assert "evaluation" in _ok(["info", str(snn_path)])


# ---------------------------------------------------------------------------- --data follows the model


def _loaded(name: str, spec: InputSpec, source: str, default: str | None = None) -> LoadedModel:
    return LoadedModel(nn.Identity(), name, source, spec, 10, default)


def test_data_defaults_to_the_models_own_data_or_is_required() -> None:
    digits_model = _loaded("lenet5", InputSpec(1, (8, 8)), "bundled:lenet5", "digits")
    assert data_for(digits_model, None) == ("digits", None)
    cifar = _loaded("resnet20", InputSpec(3, (32, 32)), "file:resnet20.th")
    with pytest.raises(SnnConvertError, match=r"resnet20 takes 3x32x32 images and has no default data; give data "):
        data_for(cifar, None)


def test_data_that_does_not_match_the_model_is_an_error_naming_both(tmp_path: Path) -> None:
    cifar = _loaded("resnet20", InputSpec(3, (32, 32)), "file:resnet20.th")
    with pytest.raises(SnnConvertError, match=r"^data digits has 1x8x8 images but resnet20 takes 3x32x32 input"):
        data_for(cifar, "digits")
    imagenet = _loaded("resnet18", InputSpec(3, (224, 224), 256), "torchvision:resnet18/IMAGENET1K_V1")
    with pytest.raises(SnnConvertError, match=r"3x32x32 images but resnet18 takes 3x224x224"):
        data_for(imagenet, "cifar10:/nowhere")
    # an image folder: the first image's size and mode are read (RGB 32x32 here)
    from PIL import Image

    (tmp_path / "cat").mkdir()
    Image.new("RGB", (32, 32)).save(tmp_path / "cat" / "a.png")
    with pytest.raises(SnnConvertError, match=r"3x32x32 images but resnet18"):
        data_for(imagenet, f"imagefolder:{tmp_path}")
    assert data_for(cifar, f"imagefolder:{tmp_path}") == (f"imagefolder:{tmp_path}", None)
    # asked for explicitly, or random weights: resized, with a note
    assert "resized to the 3x32x32 input (--resize-data)" in data_for(cifar, "digits", resize_data=True)[1]
    random = _loaded("resnet20", InputSpec(3, (32, 32)), "bundled:resnet20/random")
    assert "(random weights)" in data_for(random, "digits")[1]


def test_quantize_cli_refuses_digits_for_a_cifar_model(tmp_path: Path) -> None:
    path = tmp_path / "r20.th"
    torch.save(cifar_resnet("resnet20", 10).state_dict(), path)
    args = ["quantize", "resnet20", "--weights", str(path), "--out", str(tmp_path / "out")]
    _fails(args, "resnet20 takes 3x32x32 images and has no default data")
    _fails([*args, "--data", "digits"], "--data digits has 1x8x8 images but resnet20 takes 3x32x32 input")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------- M-LIF defaults


def test_mlif_defaults_warn_on_conversion_and_dead_layers_are_a_table_column(tmp_path: Path, lenet_run: Path) -> None:
    source = next(lenet_run.glob("quantized-*.snnc"))
    calibrated = _ok(["to-snn", "--input", str(source), "--coding", "mlif", "--out", str(tmp_path / "calibrated")])
    assert "proxy before -> after" in calibrated  # the default: calibrated after conversion (issue 24)
    assert not [line for line in calibrated.splitlines() if "near chance" in line]
    out = _ok(["to-snn", "--input", str(source), "--coding", "mlif", "--calibrate", "none", "--out", str(tmp_path)])
    warnings = [line for line in out.splitlines() if line.startswith("warning:")]
    assert warnings and "near chance" in warnings[0] and "snnconvert finetune" in warnings[0]
    report = _ok(["evaluate", "--input", str(tmp_path), "--limit", "50", "--report", "rates"])
    assert "status" in report and "{" not in report and "lane_share" not in report
    q, snn = snnconvert.load(next(tmp_path.glob("snn-*.snnc")))
    silent = snn.info["silent_layers"]
    assert all(isinstance(name, str) for name in silent)
    for name in silent:
        assert re.search(rf"{name}\s.*silent \(dead\)", report) or "never fired" in report


# ---------------------------------------------------------------------------- README snippet, grad mode


def _readme_python() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Python API", 1)[1]
    return section.split("```python", 1)[1].split("```", 1)[0]


def test_readme_snippet_runs_with_lenet_and_digits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The snippet's code path, fast: the same statements with LeNet-5 on digits."""
    code = _readme_python()
    code = (code.replace('"resnet20", weights="../shared/data/resnet20-cifar10.th"', '"lenet5"')
            .replace('data="imagefolder:../shared/data/cifar10/train-subset"', 'data="digits"')
            .replace("QuantizeConfig(bits=8)", "QuantizeConfig(bits=8, calib_limit=64)")
            .replace("torch.rand(8, 3, 32, 32)", "torch.rand(8, 1, 8, 8)")
            .replace('EvaluateConfig(data="imagefolder:../shared/data/cifar10/test", limit=2000)',
                     "EvaluateConfig(limit=50)")
            .replace("resnet20-sws.snnc", "lenet5-sws.snnc"))
    assert "../shared" not in code
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 - the project's own README
    assert namespace["logits"].shape == (8, 10) and namespace["logits"].requires_grad
    assert (tmp_path / "lenet5-sws.snnc").is_file()


@pytest.mark.slow
def test_readme_snippet_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not (SHARED_DATA / "resnet20-cifar10.th").is_file():
        pytest.skip("needs ../shared/data")
    code = _readme_python().replace("../shared/data", str(SHARED_DATA))
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102
    assert namespace["logits"].shape == (8, 10)
    assert namespace["report"].accuracy.images == 2000


def test_every_coding_runs_with_autograd_enabled(lenet_run: Path) -> None:
    q, _ = snnconvert.load(next(lenet_run.glob("quantized-*.snnc")))
    images = torch.rand(3, 1, 8, 8)
    for coding, options in (("sws", {"Tc": 8, "Ts": 2}), ("rate", {"T": 4}), ("mlif", {}), ("multibit", {})):
        snn = snnconvert.to_snn(q, coding, **options)
        with torch.no_grad():
            expected = snn(images)
        got = snn(images)  # grad mode on: the differentiable path, same values
        torch.testing.assert_close(got.detach(), expected, rtol=0, atol=1e-5)


# ---------------------------------------------------------------------------- support check


class _Attention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.act = nn.SiLU()
        self.gate = nn.Sigmoid()
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.conv(x))
        y = y * self.gate(y)
        seq = y.flatten(2).transpose(1, 2)
        return self.attn(seq, seq, seq)[0].mean(1)


def test_support_check_groups_by_cause_and_gives_the_right_hints() -> None:
    with pytest.raises(UnsupportedGraphError) as err:
        prepare(_Attention().eval(), InputSpec(3, (8, 8)))
    summary = err.value.summary
    assert "\n" not in summary and summary.startswith(f"{len(err.value.problems)} unsupported nodes for preparation:")
    assert "1 SiLU" in summary and "1 Sigmoid" in summary and "1 squeeze-excitation / gating product (mul)" in summary
    attention = [p for p in err.value.problems if p.startswith("MultiheadAttention")]
    assert attention and "attention" in attention[0] and "squeeze-excitation" not in attention[0]


def test_cli_prints_one_line_and_the_full_list_with_verbose(tmp_path: Path) -> None:
    args = ["quantize", "efficientnet_b0", "--weights", "random", "--data", "digits", "--out", str(tmp_path)]
    message = _fails(args, "unsupported nodes for preparation:", "SiLU", "-v lists every node")
    assert len(message.splitlines()) == 1 and message.startswith("error: 81 unsupported nodes for preparation: "
                                                                 "49 SiLU, 16 Sigmoid, 16 squeeze-excitation")
    verbose = _fails(["-v", *args], "SiLU at module")
    assert len(verbose.splitlines()) > 81
    assert not list(tmp_path.iterdir())


class _StochasticBlock(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.drop = torchvision.ops.StochasticDepth(0.2, "row")
        self.fc = nn.Linear(3, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        torch._assert(x.shape[2] == 8, "Wrong image height!")
        y = torch.relu(x + self.drop(self.conv(x)))
        y = nn.functional.dropout(y, 0.3, training=self.training)
        return self.fc(y.mean((2, 3)))


def test_noop_pass_removes_stochastic_depth_dropout_and_asserts() -> None:
    model = _StochasticBlock().eval()
    gm = prepare(model, InputSpec(3, (8, 8)))
    names = {getattr(n.target, "__name__", str(n.target)) for n in gm.graph.nodes}
    assert not names & {"stochastic_depth", "_assert", "dropout", "eq"}
    x = torch.rand(2, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(gm(x), model(x), rtol=0, atol=1e-6)
    # traced in training mode stochastic depth is not an identity: it stays (and is flagged)
    kept = remove_noops(torch.fx.symbolic_trace(_StochasticBlock().train()))
    assert any(getattr(n.target, "__name__", "") == "stochastic_depth" for n in kept.graph.nodes)


def test_models_check_reports_which_codings_convert(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from snnconvert.models import check

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    results = check.check_models(["lenet5", "vit_b_16"], ("rate", "sws"))
    lenet, vit = results
    assert lenet.prepares and lenet.converts("rate") and lenet.converts("sws")
    assert not vit.prepares and not vit.converts("rate") and "MultiheadAttention" in vit.reason
    # cached: a second call computes nothing
    monkeypatch.setattr(check, "check_model", lambda *a, **k: pytest.fail("not cached"))
    assert [r.name for r in check.check_models(["lenet5", "vit_b_16"], ("rate", "sws"))] == ["lenet5", "vit_b_16"]
    out = _ok(["models", "--check", "--only", "lenet5,vit_b_16"])
    assert "converts: rate" in out and "2 of 2 models checked" in out and "1 with rate" in out
    plain = _ok(["models", "--only", "lenet5,resnet18"])  # what --check cached is shown without recomputing
    assert "converts: rate" in plain and "not checked yet" in plain and "1 of 2 models checked" in plain


# ---------------------------------------------------------------------------- progress without a terminal


def test_progress_prints_plain_lines_when_not_a_terminal() -> None:
    stream = io.StringIO()
    with Progress("calibrating", total=4, stream=stream, terminal=False, interval=0.0) as progress:
        for _ in range(4):
            progress.advance(loss=0.5)
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("calibrating: 0/4") and "started" in lines[0]
    assert lines[-1].startswith("calibrating: 4/4") and "done" in lines[-1] and "loss 0.5" in lines[-1]
    assert "\x1b" not in stream.getvalue()  # no terminal control codes


def test_plain_progress_is_rate_limited() -> None:
    stream = io.StringIO()
    with Progress("x", total=1000, stream=stream, terminal=False, interval=3600.0) as progress:
        for _ in range(1000):
            progress.advance()
    assert len(stream.getvalue().splitlines()) == 2  # start and end only


def test_track_shows_lines_on_a_pipe(capsys: pytest.CaptureFixture[str]) -> None:
    assert list(track(range(3), "decode", show=True)) == [0, 1, 2]
    err = capsys.readouterr().err
    assert "decode: 0/3" in err and "decode: 3/3" in err
    assert list(track(range(3), "quiet")) == [0, 1, 2] and "quiet" not in capsys.readouterr().err


def test_track_is_done_when_the_caller_stops_after_its_total(capsys: pytest.CaptureFixture[str]) -> None:
    for i, _ in enumerate(track(range(10), "epoch", total=3, show=True)):  # as the QAT loop: 3 of 10 batches
        if i >= 3:
            break
    err = capsys.readouterr().err
    assert "epoch: 3/3" in err and "done" in err and "stopped" not in err
    for i, _ in enumerate(track(range(10), "epoch", total=5, show=True)):
        if i >= 2:
            break  # 2 of 5: the loop really stopped early
    assert "stopped" in capsys.readouterr().err


# ---------------------------------------------------------------------------- outputs and run staging


def test_out_and_plots_that_cannot_be_written_fail_before_any_work(tmp_path: Path, lenet_run: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    start = time.perf_counter()
    message = _fails(["quantize", "lenet5", "--out", str(blocker)], f"--out {blocker} is a file")
    assert len(message.splitlines()) == 1
    _fails(["quantize", "lenet5", "--out", str(blocker / "sub")], "is a file, so no directory can be made")
    _fails(["quantize", "lenet5", "--out", "/proc/snnconvert-test"], "is not writable")
    _fails(["evaluate", "--input", str(lenet_run), "--plots", str(blocker)], f"--plots {blocker} is a file")
    _fails(["demo", "--plots", str(blocker)], "is a file")
    assert time.perf_counter() - start < 60  # none of them calibrated anything
    assert blocker.read_text() == "x"


def _recipe(tmp_path: Path, out: Path) -> Path:
    path = tmp_path / "r.yaml"
    path.write_text("model: lenet5\ndata: digits\nquantize: {bits: 8, calib_limit: 64}\n"
                    "convert: {coding: sws, Tc: 8, Ts: 1}\nevaluate: {limit: 20, reports: [accuracy]}\n"
                    f"out: {out}\n")
    return path


def test_run_publishes_everything_at_the_end(tmp_path: Path) -> None:
    out = tmp_path / "run"
    text = _ok(["run", str(_recipe(tmp_path, out))])
    names = sorted(p.name for p in out.iterdir())
    assert [n.split("-")[0] for n in names] == ["evaluation", "quantized", "snn"], names
    assert "published" in text and "(Tc=8, Ts=1)" in text and "{'Tc'" not in text
    snn_path = next(out.glob("snn-*.snnc"))
    manifest = json.loads(_ok(["info", str(snn_path), "--json"]))
    assert Path(manifest["converted_from"]).parent == out and Path(manifest["converted_from"]).is_file()
    assert manifest["evaluations"][0]["report"] == next(out.glob("evaluation-*.json")).name


@pytest.mark.parametrize("fault", [SnnConvertError("evaluation data is broken"), KeyboardInterrupt()])
def test_a_failed_or_interrupted_run_leaves_no_new_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        fault: BaseException) -> None:
    import importlib

    evaluate_module = importlib.import_module("snnconvert.pipeline")  # the orchestrator's name for the stage

    def broken(*args, **kwargs):
        raise fault

    monkeypatch.setattr(evaluate_module, "evaluate", broken)
    out = tmp_path / "run"
    result = _invoke(["run", str(_recipe(tmp_path, out))])
    assert result.exit_code == (130 if isinstance(fault, KeyboardInterrupt) else 1)
    assert "Traceback" not in result.output
    if isinstance(fault, KeyboardInterrupt):
        assert "interrupted: nothing was written" in result.output
    assert not out.exists()  # not even the run directory it created


def test_a_sigkilled_runs_staging_folder_is_removed_by_the_next_run(tmp_path: Path) -> None:
    from snnconvert.pipeline import remove_stale_staging

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    stale = tmp_path / f".staging-{dead.stdout.strip()}-abcd1234"
    stale.mkdir()
    (stale / "quantized-8bit-x.snnc").write_bytes(b"partial")
    mine = tmp_path / f".staging-{os.getpid()}-abcd1234"
    mine.mkdir()
    remove_stale_staging(tmp_path)
    assert not stale.exists() and mine.exists()


def test_info_names_the_split_it_scored(lenet_run: Path) -> None:
    out = _ok(["info", str(next(lenet_run.glob("quantized-*.snnc")))])
    assert "held-out" not in out and "digits test" in out


class _LayerScale(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.gamma = nn.Parameter(torch.ones(4, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.conv(x) * self.gamma).mean((2, 3))


def test_a_layer_scale_is_not_called_squeeze_excitation() -> None:
    with pytest.raises(UnsupportedGraphError) as err:
        prepare(_LayerScale().eval(), InputSpec(3, (8, 8)))
    assert err.value.summary.endswith("1 layer scale (mul by a parameter)")
    assert "squeeze-excitation" not in str(err.value) and "layer scale" in err.value.problems[0]


def test_residual_plot_names_its_layers_and_shows_all_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """19 layers (ResNet-20): first, middle and last are named in the legend, the rest are mapped by
    the colour bar, and the x range reaches the largest residual (3.0 here, beyond the old cut at 2)."""
    import snnconvert.reports.plots as plots
    from snnconvert.methods.sws.coding import residual_plot

    figures = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: figures.append(fig) or path)
    bins = 40
    rows = [{"name": f"relu{i}", "histogram": [1.0] * bins, "range": 3.0, "max_abs": 3.0 if i == 18 else 0.5}
            for i in range(19)]
    residual_plot(rows, tmp_path, "resnet20 (sws)")
    ax = figures[0].axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["1: relu0", "10: relu9", "19: relu18", "1/2 (rounding bound)"]
    assert ax.get_xlim()[1] >= 3.0
    assert len(figures[0].axes) == 2  # the colour bar


def test_hints_match_whole_op_names() -> None:
    from snnconvert.graph.ops import hint_for

    assert "squeeze-excitation" in hint_for("mul") and "squeeze-excitation" in hint_for("mul_")
    assert "attention" in hint_for("MultiheadAttention") and "squeeze" not in hint_for("MultiheadAttention")
    assert hint_for("silu") == hint_for("SiLU") and "ReLU" in hint_for("gelu")
    assert hint_for("multiply_things") == "this operation is not supported by snnconvert's converters"
