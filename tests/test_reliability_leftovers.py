"""Reliability, the last items of issue 15: ``evaluate`` fits its SNN batch in memory, stale name
reservations of killed processes are never left visible, and ``to-snn`` usage errors are
answered before torch is imported."""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

import snnconvert
from snnconvert import limits
from snnconvert.atomic import RESERVED_SUFFIX, remove_stale_temporaries, reserve_name
from snnconvert.errors import SnnConvertError
from snnconvert.evaluate import EvaluateConfig, evaluate
from snnconvert.quantize import QuantizeConfig
from snnconvert.simulate import memory
from snnconvert.workspace import latest_artifact, new_artifact_path

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    return int(done.stdout)


# ------------------------------------------------------------------ evaluate: the SNN batch fits in memory


@pytest.fixture(scope="module")
def lenet_sws() -> tuple[snnconvert.QuantizedModel, snnconvert.SpikingNetwork]:
    q = snnconvert.quantize("lenet5", data="digits", config=QuantizeConfig(bits=8, calib_limit=64), eval_limit=0)
    return q, snnconvert.to_snn(q, "sws", Tc=8, Ts=2)


def _per_image_bytes(q: snnconvert.QuantizedModel) -> int:
    """By hand: LeNet-5 on 8x8 digits; its largest activation is conv1's output (C x 8 x 8, 'same'
    padding); SWS with Tc=8 folds 8 frames; SWS simulates in float64 (8 bytes, whatever --dtype
    says: Coding.simulation_dtype); 3 copies alive (limits)."""
    conv1 = q.model.get_submodule("conv1")
    largest = conv1.out_channels * 8 * 8
    assert largest == memory.largest_activation(q.model, torch.zeros(1, 1, 8, 8))
    return 8 * largest * 8 * memory.ACTIVATION_COPIES


def test_evaluate_shrinks_a_batch_that_does_not_fit_and_says_so(lenet_sws, monkeypatch, capsys) -> None:
    q, snn = lenet_sws
    config = EvaluateConfig(limit=30, batch_size=100, reports=("accuracy",), device="cpu")
    free = evaluate(q, snn, config)
    assert free.notes == []
    per_image = _per_image_bytes(q)
    # room for 7.5 images at the 80 % share: 7 fit
    monkeypatch.setattr(limits, "available_memory_bytes", lambda: int(7.5 * per_image / limits.MEMORY_SHARE))
    tight = evaluate(q, snn, config, show_progress=True)
    (note,) = tight.notes
    assert "--batch-size 100 does not fit" in note and "runs 7 images per batch" in note and "\n" not in note
    assert f"note: {note}" in capsys.readouterr().err
    assert [s.top1 for s in tight.accuracy.scores] == [s.top1 for s in free.accuracy.scores]  # same result
    assert tight.accuracy.agreement_snn_quantized == free.accuracy.agreement_snn_quantized


def test_evaluate_batch_sizes_chosen_from_the_estimate(lenet_sws, monkeypatch) -> None:
    q, snn = lenet_sws
    per_image = _per_image_bytes(q)
    example = torch.zeros(1, 1, 8, 8)
    for available, batch, expected in ((10**12, 100, 100), (int(40 * per_image / 0.8), 100, 40),
                                       (int(40 * per_image / 0.8), 25, 25), (per_image * 2, 100, 1)):
        assert memory.fit_simulation_batch(q.model, example, 8, batch, element_size=8, available=available) \
            == expected


def test_on_cuda_the_estimate_is_checked_against_free_gpu_memory(lenet_sws, monkeypatch) -> None:
    """The CUDA branch reads the device's free memory (torch.cuda.mem_get_info), not the RAM."""
    q, snn = lenet_sws
    per_image = _per_image_bytes(q)
    evaluate_module = importlib.import_module("snnconvert.evaluate")
    asked = []
    monkeypatch.setattr(torch.cuda, "mem_get_info",
                        lambda device: asked.append(device) or (int(5.5 * per_image / 0.8), 10**12))
    monkeypatch.setattr(limits, "available_memory_bytes", lambda: pytest.fail("RAM asked for a CUDA run"))
    batch, note = evaluate_module.simulation_batch(q, snn, EvaluateConfig(batch_size=64), torch.device("cuda", 0))
    assert batch == 5 and asked == [torch.device("cuda", 0)] and "runs 5 images per batch" in note


def test_evaluate_when_not_even_one_image_fits_is_a_one_line_error(lenet_sws, monkeypatch) -> None:
    q, snn = lenet_sws
    monkeypatch.setattr(limits, "available_memory_bytes", lambda: _per_image_bytes(q))  # 80 % of one image
    with pytest.raises(SnnConvertError) as info:
        evaluate(q, snn, EvaluateConfig(limit=10, reports=("accuracy",), device="cpu"))
    message = str(info.value)
    assert "\n" not in message and "--batch-size 1" in message and "8 time steps" in message, message


def test_evaluate_refuses_before_any_work(lenet_sws, monkeypatch) -> None:
    """The memory check comes before the data is loaded: no images are decoded for a refused run."""
    q, snn = lenet_sws
    evaluate_module = importlib.import_module("snnconvert.evaluate")  # the module (the package exports a function)
    monkeypatch.setattr(limits, "available_memory_bytes", lambda: 1)
    monkeypatch.setattr(evaluate_module, "materialize", lambda *a, **k: pytest.fail("data was loaded"))
    with pytest.raises(SnnConvertError, match="--batch-size 1"):
        evaluate(q, snn, EvaluateConfig(limit=10, reports=("accuracy",), device="cpu"))


# ------------------------------------------------------------------ stale name reservations


def test_marker_of_a_dead_process_is_removed_by_a_listing_and_its_name_reused(tmp_path: Path) -> None:
    target = tmp_path / "snn-x.snnc"
    marker = tmp_path / f".{target.name}{RESERVED_SUFFIX}"
    marker.write_text(f"{_dead_pid()}\n")
    with pytest.raises(SnnConvertError, match="no snn artifact"):
        latest_artifact(("snn",), tmp_path)
    assert os.listdir(tmp_path) == []  # the listing cleaned it
    marker.write_text(f"{_dead_pid()}\n")
    assert reserve_name([target, tmp_path / "snn-x-1.snnc"]) == target  # the stale name is free again
    assert marker.read_text().split()[0] == str(os.getpid())


def test_process_killed_between_reserving_and_saving_leaves_nothing_visible(tmp_path: Path) -> None:
    code = ("import sys, time; from pathlib import Path; from snnconvert.workspace import new_artifact_path; "
            "print(new_artifact_path(Path(sys.argv[1]), 'snn', 'x'), flush=True); time.sleep(60)")
    child = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                             env=ENV, cwd=ROOT)
    try:
        reserved = Path(child.stdout.readline().strip())
        marker = tmp_path / f".{reserved.name}{RESERVED_SUFFIX}"
        assert marker.exists() and marker.read_text().split()[0] == str(child.pid)
        assert remove_stale_temporaries(tmp_path) == []  # its owner still runs: kept
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
    assert os.listdir(tmp_path) == [marker.name]
    with pytest.raises(SnnConvertError, match="no snn artifact"):
        latest_artifact(("snn",), tmp_path)
    assert os.listdir(tmp_path) == []


def test_marker_whose_pid_was_reused_is_stale(tmp_path: Path) -> None:
    """A marker records its owner's start time: the same pid in a later process does not keep it."""
    parent = os.getppid()
    with open(f"/proc/{parent}/stat", encoding="ascii") as handle:
        started = handle.read().rsplit(")", 1)[1].split()[19]
    kept = tmp_path / ".a.snnc.reserved"
    reused = tmp_path / ".b.snnc.reserved"
    kept.write_text(f"{parent} {started}\n")
    reused.write_text(f"{parent} {int(started) + 1}\n")
    assert remove_stale_temporaries(tmp_path) == [reused]
    assert os.listdir(tmp_path) == [kept.name]


def test_empty_marker_is_stale_only_after_a_minute(tmp_path: Path) -> None:
    fresh = tmp_path / ".a.snnc.reserved"
    old = tmp_path / ".b.snnc.reserved"
    fresh.write_text("")
    old.write_text("")
    an_hour_ago = time.time() - 3600
    os.utime(old, (an_hour_ago, an_hour_ago))
    assert remove_stale_temporaries(tmp_path) == [old]


def test_reservations_hold_pid_and_start_time_and_release_cleanly(tmp_path: Path) -> None:
    path = new_artifact_path(tmp_path, "snn", "x")
    (marker,) = os.listdir(tmp_path)
    pid, started = (tmp_path / marker).read_text().split()
    assert int(pid) == os.getpid() and started.isdigit()
    snnconvert.artifact.save_artifact(snnconvert.artifact.Artifact("snn", {}, {"m": nn.Linear(1, 1)}), path)
    assert os.listdir(tmp_path) == [path.name]


# ------------------------------------------------------------------ to-snn usage errors without torch

USAGE_ERRORS = [
    (["--coding", "bogus"], "unknown coding 'bogus'", 1),
    (["--Tc", "100000"], "--Tc 100000 is not possible", 1),
    (["--Tc", "abc"], "--Tc 'abc' is not possible for coding sws", 1),
    (["--Tc", "100", "--Ts", "100"], "more than 2^120", 1),
    (["--beta", "nan"], "--beta nan is not possible", 1),
    (["--coding", "rate", "--Tc", "8"], "--Tc is not an option of coding rate", 1),
    (["--coding", "rate", "--set", "T=x"], "--T 'x' is not possible for coding rate", 1),
    (["--coding=rate", "--T=5000"], "--T 5000 is not possible", 1),
    (["--coding", "mlif", "--T", "0"], "--T 0 is not possible", 1),
    (["--coding", "multibit", "--T", "1,x"], "--T '1,x' is not possible", 1),
    (["--coding", "multibit", "--tau", "0.5"], "tau 0.5 is not possible", 1),
    (["--coding", "rate", "--dtype", "float16"], "--dtype 'float16' is not possible", 1),
    (["--coding", "spquant", "--weight-bits", "3"], "--weight-bits 3 is not possible", 1),
    (["--coding", "sws", "--Ts", "two"], "--Ts 'two' is not possible", 1),
    (["--set", "Tc"], "--set 'Tc': write KEY=VALUE", 1),
    (["--bogus", "3"], "to-snn has no option --bogus", 2),
]


def _run_main(argv: list[str]) -> tuple[int, str, bool]:
    """``snnconvert to-snn ARGV`` through the entry point: exit status, stderr, whether torch loaded."""
    code = (f"import sys; sys.argv = ['snnconvert', 'to-snn', *{argv!r}]\n"
            "from snnconvert.cli.app import main\n"
            "try:\n    main()\nexcept SystemExit as exc:\n    status = exc.code\n"
            "print('STATUS', status, 'TORCH', 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT,
                          env=ENV)
    *_, status, _, torch_loaded = done.stdout.split()
    return int(status), done.stderr.strip(), torch_loaded == "True"


def test_to_snn_usage_errors_answer_without_torch() -> None:
    """All cases in one child process per case would cost seconds each; one child runs them all."""
    code = ("import sys, json\nfrom snnconvert.cli.app import _precheck_to_snn\nout = []\n"
            f"for argv in {[a for a, _, _ in USAGE_ERRORS]!r}:\n"
            "    try:\n        _precheck_to_snn(['to-snn', *argv]); out.append(None)\n"
            "    except SystemExit as exc:\n        out.append(exc.code)\n"
            "print(json.dumps(out)); print('TORCH', 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT,
                          env=ENV)
    assert done.returncode == 0, done.stderr
    statuses, torch_line = done.stdout.strip().splitlines()
    assert torch_line == "TORCH False"
    assert statuses == str([status for _, _, status in USAGE_ERRORS]).replace("'", '"')
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == len(USAGE_ERRORS), done.stderr  # one line each
    for line, (_, needle, _) in zip(lines, USAGE_ERRORS, strict=True):
        assert line.startswith("error: ") and needle in line, line


def test_to_snn_usage_error_through_the_entry_point() -> None:
    status, stderr, torch_loaded = _run_main(["--Tc", "100000"])
    assert status == 1 and not torch_loaded
    assert stderr.splitlines() == ["error: --Tc 100000 is not possible: give an integer 1..4096 time steps"]


@pytest.mark.parametrize(("argv", "needle", "status"), USAGE_ERRORS)
def test_precheck_errors_are_the_ones_the_full_path_gives(argv: list[str], needle: str, status: int) -> None:
    """The same arguments through the loaded coding table (torch present) fail the same way."""
    from typer.testing import CliRunner

    from snnconvert.cli.app import app

    result = CliRunner().invoke(app, ["to-snn", *argv, "--input", str(ROOT / "no-such-artifact.snnc")])
    assert result.exit_code == status
    if status == 1:
        from snnconvert.cli.usage import precheck_to_snn

        with pytest.raises(SnnConvertError) as info:
            precheck_to_snn(argv)
        full = _full_path_error(argv)
        assert full is not None and str(info.value) == full


def _full_path_error(argv: list[str]) -> str | None:
    """The error of the regular path (torch loaded): the coding's flags and ``--set`` items parsed
    with :func:`coding_options`, the config built and validated; None when they pass."""
    import typing

    from snnconvert.cli.coding_options import coding_options
    from snnconvert.codings import build_config, codings, get_coding

    words = [w for a in argv for w in (a.split("=", 1) if a.startswith("--") and "=" in a else [a])]
    bools = {f"--{p}{f.name.replace('_', '-')}": (f.name, p == "")
             for c in codings().values() for f in c.options()
             if typing.get_type_hints(c.config)[f.name] is bool for p in ("", "no-")}
    coding, given, sets = "sws", {}, []
    i = 0
    while i < len(words):
        flag = words[i]
        if flag in bools:
            given[bools[flag][0]] = bools[flag][1]
        elif flag != "--json":
            value = words[i + 1]
            i += 1
            if flag == "--coding":
                coding = value
            elif flag == "--set":
                sets.append(value)
            elif flag not in ("--input", "--out", "--device"):
                given[flag[2:].replace("-", "_")] = value
        i += 1
    try:
        entry = get_coding(coding)
        build_config(entry, None, **coding_options(entry, given, sets))
    except SnnConvertError as exc:
        return str(exc)
    return None


@pytest.mark.parametrize("argv", [["--Tc", "8", "--Ts", "2"], ["--Ts", "auto"], ["--coding", "rate", "--T", "32"],
                                  ["--coding", "multibit", "--T", "1,2,3", "--per-channel", "--no-encode-input"],
                                  ["--coding", "mlif", "--S", "3", "--T", "2", "--json"],
                                  ["--coding", "spquant", "--weight-bits", "none"],
                                  ["--input", "x.snnc", "--out", "o", "--device", "cpu", "--set", "Tc=6"]])
def test_valid_arguments_pass_the_precheck(argv: list[str]) -> None:
    from snnconvert.cli.usage import precheck_to_snn

    precheck_to_snn(argv)
    assert _full_path_error(argv) is None


def test_what_the_precheck_cannot_decide_is_left_to_the_full_path(monkeypatch) -> None:
    """An argument form it does not read, or any unexpected failure inside it, makes the pre-check
    return quietly: the regular path, with torch, decides."""
    from snnconvert.cli import usage

    assert usage.precheck_to_snn(["positional"]) is None
    assert usage.precheck_to_snn(["--Tc"]) is None  # the value is missing: click says so
    monkeypatch.setattr(usage, "_check", lambda *args: {}["missing"])
    assert usage.precheck_to_snn(["--Tc", "100000"]) is None


def test_the_commands_own_options_come_from_its_signature() -> None:
    """The entry point passes to-snn's declared options: valid ones pass, a missing --coding
    (a signature the pre-check does not know) leaves everything to click."""
    from snnconvert.cli import usage
    from snnconvert.cli.app import _precheck_to_snn

    _precheck_to_snn(["-v", "to-snn", "--json", "--out", "o", "--device", "cpu", "--input", "x.snnc", "--Tc", "8"])
    with pytest.raises(SystemExit):
        _precheck_to_snn(["to-snn", "--Tc", "100000"])
    assert usage.precheck_to_snn(["--Tc", "100000"], value_options={"--input"}) is None


def test_the_torch_free_option_table_is_the_loaded_coding_table() -> None:
    """The pre-check reads each coding's declared options (its method's config module): the same
    config classes and parsers the loaded codings use, and every default config validates."""
    from snnconvert.options import coding_options

    loaded = {name: c for name, c in snnconvert.codings().items() if c.config.__module__.startswith("snnconvert.")}
    table = coding_options()
    assert set(loaded) <= set(table) and len(loaded) >= 5
    for name, coding in loaded.items():
        assert table[name].config is coding.config and table[name].parsers == coding.parsers, name
        assert coding.config.__module__ == f"snnconvert.methods.{name}.config", name
        table[name].config().validate()


def test_coding_options_import_without_torch() -> None:
    code = ("import sys\nfrom snnconvert.options import coding_options\nnames = sorted(coding_options())\n"
            "print(names, 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT,
                          env=ENV)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("] ")[1].strip() == "False" and "'sws'" in done.stdout
