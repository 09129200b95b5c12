"""Reliability under bad input, races and interruption (issue 15, inputs and files half).

Every bad input is a one-line :class:`SnnConvertError`; artifacts carry a SHA-256 of their tensor
data; names are reserved atomically; files honour the umask; interrupted writes leave nothing."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from snnconvert.artifact import FORMAT, FORMAT_VERSION, Artifact, load_artifact, save_artifact, tensors_digest
from snnconvert.atomic import write_atomically
from snnconvert.cli.coding_options import coding_options
from snnconvert.codings import build_config, get_coding
from snnconvert.errors import SnnConvertError
from snnconvert.ingest.checkpoint import read_checkpoint
from snnconvert.ingest.loader import load_model
from snnconvert.limits import (
    MAX_TIME_STEPS,
    require_regular_file,
    shorten,
    time_steps_of,
)
from snnconvert.recipe import load_recipe
from snnconvert.simulate.memory import check_simulation_memory
from snnconvert.workspace import latest_artifact, new_artifact_path

ROOT = Path(__file__).resolve().parents[1]


def one_line_error(call, *needles: str) -> str:
    """Run ``call``; it must raise SnnConvertError with a short one-line message containing ``needles``."""
    with pytest.raises(SnnConvertError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message and len(message) < 400, message
    for needle in needles:
        assert needle in message, message
    return message


def _small_artifact(path: Path) -> Path:
    torch.manual_seed(0)
    model = torch.fx.symbolic_trace(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)))
    return save_artifact(Artifact("quantized", {"model": {"name": "tiny"}}, {"float": model},
                                  {"ints": torch.arange(6)}), path)


def _payload(**changes) -> dict:
    """A valid v2 payload (checksums filled in) with ``changes`` applied afterwards."""
    model = nn.Linear(2, 2)
    spec = json.dumps({"type": "Linear", "config": {"in_features": 2, "out_features": 2, "bias": True}})
    tensors = {f"float/{k}": v for k, v in model.state_dict().items()}
    from snnconvert.artifact import _specs_digest

    manifest = {"kind": "quantized", "tensors_sha256": tensors_digest(tensors),
                "models_sha256": _specs_digest({"float": spec}.items())}
    payload = {"format": FORMAT, "version": FORMAT_VERSION, "manifest": json.dumps(manifest),
               "models": {"float": spec}, "tensors": tensors}
    payload.update(changes)
    return payload


# ------------------------------------------------------------------------------- artifacts


def test_checksum_detects_a_flipped_byte_in_tensor_data(tmp_path: Path) -> None:
    path = tmp_path / "a.snnc"
    marker = torch.full((16,), 0.123456789, dtype=torch.float64)
    save_artifact(Artifact("quantized", {}, {"float": nn.Linear(2, 2)}, {"marker": marker}), path)
    assert torch.equal(load_artifact(path).extra_tensors["marker"], marker)
    data = bytearray(path.read_bytes())
    offset = data.find(marker.numpy().tobytes())
    assert offset > 0
    data[offset + 3] ^= 0x01  # one bit of one stored float
    path.write_bytes(bytes(data))
    one_line_error(lambda: load_artifact(path), "a.snnc", "SHA-256")


def test_manifest_records_the_sha256_of_the_tensor_data(tmp_path: Path) -> None:
    loaded = load_artifact(_small_artifact(tmp_path / "a.snnc"))
    tensors = {f"float/{k}": v for k, v in loaded.models["float"].state_dict().items()}
    tensors["extra/ints"] = loaded.extra_tensors["ints"]
    assert loaded.manifest["tensors_sha256"] == tensors_digest(tensors)
    assert len(loaded.manifest["tensors_sha256"]) == 64


@pytest.mark.parametrize("version", [0, -1, True, "1", 1.0, None])
def test_impossible_format_versions_are_refused(tmp_path: Path, version) -> None:
    path = tmp_path / "v.snnc"
    torch.save(_payload(version=version), path)
    one_line_error(lambda: load_artifact(path), "v.snnc", "version")


@pytest.mark.parametrize("changes", [
    {"manifest": None}, {"manifest": 5}, {"manifest": "[1, 2]"}, {"manifest": "{not json"},
    {"models": [1]}, {"models": {"float": 3}}, {"tensors": []}, {"tensors": {"float/weight": 1}},
    {"models": {"float": json.dumps({"config": {}})}},
    {"models": {"float": json.dumps({"type": "Linear", "config": [1]})}},
    {"models": {"float": json.dumps({"type": "GraphModule", "graph": 3, "modules": {}})}},
    {"models": {"float": json.dumps({"type": "GraphModule", "graph": [{"op": "call_module"}], "modules": {}})}},
    {"models": {"float": json.dumps({"type": "Linear", "config": {"in_features": "x"}})}},
    {"models": {"float": "[" * 50_000 + "]" * 50_000}},
    {"models": {"float": json.dumps({"type": "Linear", "children": {"a": {"type": "Linear"}}, "config": {}})}},
])
def test_missing_or_mistyped_fields_are_one_line_errors(tmp_path: Path, changes: dict) -> None:
    path = tmp_path / "f.snnc"
    payload = _payload()
    payload.update(changes)
    payload["version"] = 1  # no checksum to keep consistent: the structure checks run alone
    torch.save(payload, path)
    one_line_error(lambda: load_artifact(path, allow_unchecked=True), "f.snnc")


def test_missing_checksum_in_a_v2_artifact_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "n.snnc"
    torch.save(_payload(manifest=json.dumps({"kind": "quantized"})), path)
    one_line_error(lambda: load_artifact(path), "checksum")


def test_module_configs_are_bounded_before_any_allocation(tmp_path: Path) -> None:
    """A stored Linear(10^6, 10^6) would allocate 4 TB: the meta-device dry run refuses it first."""
    path = tmp_path / "huge.snnc"
    spec = json.dumps({"type": "Linear", "config": {"in_features": 10**6, "out_features": 10**6, "bias": True}})
    torch.save(_payload(version=1, models={"float": spec}, tensors={}), path)
    start = time.perf_counter()
    one_line_error(lambda: load_artifact(path, allow_unchecked=True), "would allocate", "MiB")
    assert time.perf_counter() - start < 5
    spec = json.dumps({"type": "TSANeuron", "config": {"Tc": 8, "Ts": 2, "residual_bins": 2_000_000_000}})
    torch.save(_payload(version=1, models={"float": spec}, tensors={}), path)
    one_line_error(lambda: load_artifact(path, allow_unchecked=True), "would allocate")
    spec = json.dumps({"type": "TSANeuron", "config": {"Tc": 8, "Ts": 10**12}})
    torch.save(_payload(version=1, models={"float": spec}, tensors={}), path)
    one_line_error(lambda: load_artifact(path, allow_unchecked=True), "integer")
    spec = json.dumps({"type": "IFNeuron", "config": {"T": MAX_TIME_STEPS + 1}})
    torch.save(_payload(version=1, models={"float": spec}, tensors={}), path)
    one_line_error(lambda: load_artifact(path, allow_unchecked=True), "time steps")


def _save_at(directory: str, start: float) -> None:
    time.sleep(max(0.0, start - time.time()))
    path = new_artifact_path(Path(directory), "quantized", "8bit")
    save_artifact(Artifact("quantized", {}, {"float": nn.Linear(2, 2)}), path)


def test_processes_saving_at_the_same_instant_never_share_a_name(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    start = time.time() + 1.0
    workers = [context.Process(target=_save_at, args=(str(tmp_path), start)) for _ in range(12)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    assert [w.exitcode for w in workers] == [0] * 12
    names = sorted(os.listdir(tmp_path))
    assert len(names) == 12 and all(n.endswith(".snnc") and not n.startswith(".") for n in names), names
    for name in names:
        load_artifact(tmp_path / name)


def test_explicit_path_is_replaced_but_a_concurrently_created_name_is_not(tmp_path: Path) -> None:
    first = _small_artifact(tmp_path / "x.snnc")
    assert _small_artifact(first) == first  # re-saving an existing file replaces it
    assert sorted(os.listdir(tmp_path)) == ["x.snnc"]
    target = tmp_path / "y.snnc"
    write = write_atomically
    seen = []

    def racing_write(path, fn, **kwargs):  # another process creates y.snnc while we write
        target.write_bytes(b"theirs")
        seen.append(kwargs.get("exclusive"))
        return write(path, fn, **kwargs)

    import snnconvert.artifact as artifact_module

    artifact_module.write_atomically = racing_write
    try:
        written = _small_artifact(target)
    finally:
        artifact_module.write_atomically = write
    assert seen == [True] and written.name == "y-1.snnc" and target.read_bytes() == b"theirs"


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_files_honour_the_umask(tmp_path: Path, umask: int, mode: int) -> None:
    previous = os.umask(umask)
    try:
        path = _small_artifact(tmp_path / "m.snnc")
        other = write_atomically(tmp_path / "r.json", lambda h: h.write(b"{}"))
    finally:
        os.umask(previous)
    assert path.stat().st_mode & 0o777 == mode
    assert other.stat().st_mode & 0o777 == mode


_WRITER = """
import sys, time
from snnconvert.atomic import write_atomically
def slow(handle):
    handle.write(b"x" * 1000)
    handle.flush()
    print("ready", flush=True)
    time.sleep(60)
write_atomically(sys.argv[1], slow)
"""


def _default_signals() -> None:
    """In the child: SIGTERM and SIGINT at their defaults, whatever the test runner inherited."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _interrupted_writer(tmp_path: Path, sig: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path / "a.snnc")], cwd=ROOT,
                            preexec_fn=_default_signals,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    assert any(n.endswith(".tmp") for n in os.listdir(tmp_path))
    proc.send_signal(sig)
    proc.wait(30)
    return proc


def test_sigterm_during_a_write_leaves_no_temporary_file(tmp_path: Path) -> None:
    proc = _interrupted_writer(tmp_path, signal.SIGTERM)
    assert proc.returncode == 128 + signal.SIGTERM
    assert os.listdir(tmp_path) == []


def test_sigkill_leftovers_are_invisible_and_cleaned_at_the_next_write(tmp_path: Path) -> None:
    _interrupted_writer(tmp_path, signal.SIGKILL)
    (left,) = os.listdir(tmp_path)
    assert left.startswith(".a.snnc.") and left.endswith(".tmp")  # hidden
    one_line_error(lambda: latest_artifact(("quantized",), tmp_path), "no quantized artifact")
    _small_artifact(tmp_path / "quantized-b.snnc")
    assert os.listdir(tmp_path) == ["quantized-b.snnc"]


def test_a_failed_save_releases_its_reserved_name(tmp_path: Path) -> None:
    path = new_artifact_path(tmp_path, "snn", "x")
    assert [n for n in os.listdir(tmp_path)] == [f".{path.name}.reserved"]
    with pytest.raises(SnnConvertError):
        save_artifact(Artifact("snn", {}, {"float": nn.GRU(2, 2)}), path)  # not serializable
    assert os.listdir(tmp_path) == []


# ------------------------------------------------------------------------------- files


@pytest.mark.parametrize("kind", ["fifo", "dir", "device"])
def test_non_regular_files_are_refused_without_opening(tmp_path: Path, kind: str) -> None:
    if kind == "fifo":
        path = tmp_path / "pipe.pt"
        os.mkfifo(path)
        word = "named pipe"
    elif kind == "dir":
        path = tmp_path / "folder.pt"
        path.mkdir()
        word = "directory"
    else:
        path = Path("/dev/zero")
        word = "device"
    for call in (lambda: read_checkpoint(path), lambda: load_artifact(path), lambda: load_recipe(path),
                 lambda: require_regular_file(path, "event file")):
        one_line_error(call, word)


def test_fifo_as_weights_does_not_hang(tmp_path: Path) -> None:
    pipe = tmp_path / "w.pt"
    os.mkfifo(pipe)
    start = time.perf_counter()
    one_line_error(lambda: load_model("lenet5", str(pipe)), "named pipe")
    assert time.perf_counter() - start < 10


@pytest.mark.parametrize("value,word", [(float("nan"), "NaN"), (float("inf"), "inf"), (1e30, "magnitude")])
def test_damaged_weights_are_refused_before_calibration(tmp_path: Path, value: float, word: str) -> None:
    model = load_model("lenet5", "random").module
    state = model.state_dict()
    key = next(k for k in state if k.endswith("weight"))
    state[key] = state[key].clone()
    state[key].view(-1)[3] = value
    path = tmp_path / "w.pt"
    torch.save(state, path)
    one_line_error(lambda: load_model("lenet5", str(path)), word, key)


def test_histogram_refuses_overflowing_activations() -> None:
    from snnconvert.quantize.histogram import RangeDoublingHistogram

    histogram = RangeDoublingHistogram(1)
    one_line_error(lambda: histogram.update(torch.tensor([[1.0, float("inf")]])), "overflow")
    one_line_error(lambda: histogram.update(torch.tensor([[float("nan")]])), "overflow")


def test_long_strings_are_cut_in_error_messages() -> None:
    name = "x" * 10_000_000
    message = one_line_error(lambda: load_model(name), "10000000 characters")
    assert len(message) < 200
    one_line_error(lambda: load_model("lenet5", "w" * 100_000), "--weights")
    assert shorten("a" * 1000) == "a" * 77 + "..." and shorten("a\nb") == "a\\nb"


# ------------------------------------------------------------------------------- recipes


@pytest.mark.parametrize("content,needle", [
    (b"model: caf\xe9\n", "not UTF-8"),
    (b"model: " + b"[" * 2000 + b"]" * 2000 + b"\n", "nested deeper"),
    (b"model: lenet5\nmodel: resnet20\n", "duplicate key 'model'"),
    (b"model: !!python/object/apply:os.system ['touch pwned']\n", "not allowed"),
    (b"model: !custom x\n", "not allowed"),
    (b"model: &a [*a]\n", "refers to itself"),
    (b"model: lenet5\n? [a, b]\n: 3\n", "plain names"),
    (b"", "empty"),
    (b"model: [" + b",".join([b"1"] * 600_000) + b"]\n", "bytes"),
    (b"model: lenet5\nquantize: {bits: '" + b"x" * 100_000 + b"'}\n", "quantize.bits"),
    (b"model: lenet5\n\tbad: [\n", "not valid YAML"),
    (b'model: lenet5\nconvert: {coding: rate, T: "8"}\n', "must be int, got '8'"),
])
def test_recipes_are_bounded(tmp_path: Path, content: bytes, needle: str) -> None:
    path = tmp_path / "r.yaml"
    path.write_bytes(content)
    one_line_error(lambda: load_recipe(path), needle)
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()


def test_alias_bomb_is_refused_before_expansion(tmp_path: Path) -> None:
    lines = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")  # 9^9 = 387 million strings
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\nmodel: lenet5\n")
    start = time.perf_counter()
    one_line_error(lambda: load_recipe(path), "expands to more than")
    assert time.perf_counter() - start < 5


def test_a_good_recipe_still_loads() -> None:
    recipe = load_recipe(ROOT / "snnconvert" / "assets" / "demo.yaml")
    assert recipe.model == "lenet5" and recipe.convert is not None and recipe.convert.coding == "sws"


# ------------------------------------------------------------------------------- options


@pytest.mark.parametrize("coding,items,needle", [
    ("sws", ["beta=nan"], "beta"),
    ("sws", ["beta=inf"], "beta"),
    ("sws", ["beta=../../x"], "expected float"),
    ("sws", ["Tc=100000"], "Tc 100000"),
    ("sws", ["Ts=100000"], "Ts 100000"),
    ("sws", ["Tc=100", "Ts=100"], "2^120"),
    ("rate", ["T=100000"], "T 100000"),
    ("rate", ["T=abc"], "expected int"),
    ("rate", ["T=1.5"], "expected int"),
    ("mlif", ["T=100000"], "T 100000"),
    ("mlif", ["S=three"], "expected int"),
])
def test_impossible_coding_options_are_one_line_errors(coding: str, items: list[str], needle: str) -> None:
    entry = get_coding(coding)
    one_line_error(lambda: build_config(entry, **coding_options(entry, {}, items)), needle)


def test_time_steps_are_bounded_by_a_memory_estimate() -> None:
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 2))
    example = torch.zeros(1, 1, 4, 4)
    # largest activation: 8 x 4 x 4 = 128 elements; 1000 steps x 128 x 8 bytes x 3 copies = 3,072,000 bytes
    assert check_simulation_memory(model, example, 1000, available=10**9) == 1000 * 128 * 8 * 3
    one_line_error(lambda: check_simulation_memory(model, example, 1000, available=3_000_000),
                   "1000 time steps", "fewer time steps")
    sws = build_config(get_coding("sws"), Tc=8, Ts=[1, 3])
    assert time_steps_of(sws) == 11
    assert time_steps_of(build_config(get_coding("rate"), T=64)) == 64


# ------------------------------------------------------------------------------- command line


def test_command_line_gives_one_line_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from snnconvert.cli.app import app

    runner = CliRunner()

    def fails(args: list[str], *needles: str) -> None:
        result = runner.invoke(app, args)
        lines = [line for line in result.output.strip().splitlines() if line.strip()]
        assert result.exit_code == 1 and len(lines) == 1 and lines[0].startswith("error:"), result.output
        assert "Traceback" not in result.output and all(n in result.output for n in needles), result.output

    monkeypatch.chdir(tmp_path)  # short relative paths: the console wraps lines past 200 characters
    tmp_path = Path(".")
    artifact = _small_artifact(tmp_path / "a.snnc")
    data = bytearray(artifact.read_bytes())
    loaded = load_artifact(artifact)
    needle = loaded.models["float"].state_dict()["0.bias"].numpy().tobytes()
    offset = data.find(needle)
    data[offset] ^= 0x40
    artifact.write_bytes(bytes(data))
    fails(["info", str(artifact)], "a.snnc", "SHA-256")
    pipe = tmp_path / "w.pt"
    os.mkfifo(pipe)
    fails(["quantize", "lenet5", "--weights", str(pipe), "--out", str(tmp_path / "out")], "named pipe")
    fails(["quantize", "m" * 1_000_000, "--out", str(tmp_path / "out")], "1000000 characters")
    bomb = tmp_path / "r.yaml"
    bomb.write_text("model: lenet5\nmodel: lenet5\n")
    fails(["run", str(bomb)], "duplicate key")
    assert not (tmp_path / "out").exists()


def test_run_directory_that_is_a_file_is_a_one_line_error(tmp_path: Path) -> None:
    blocker = tmp_path / "out"
    blocker.write_text("a file")
    one_line_error(lambda: new_artifact_path(blocker, "quantized", "8bit"), "is a file", "folder with out")  # API name


def test_stale_cleanup_keeps_files_of_running_writers(tmp_path: Path) -> None:
    from snnconvert.atomic import remove_stale_temporaries

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    live = tmp_path / f".a.snnc.{os.getpid()}.abc123.tmp"
    stale = tmp_path / f".a.snnc.{dead_pid}.abc123.tmp"
    stale_marker = tmp_path / ".b.snnc.reserved"
    for path in (live, stale):
        path.write_bytes(b"partial")
    stale_marker.write_text(f"{dead_pid}\n")
    assert sorted(remove_stale_temporaries(tmp_path)) == sorted([stale, stale_marker])
    assert os.listdir(tmp_path) == [live.name]


def test_image_that_is_a_named_pipe_is_refused_not_read(tmp_path: Path) -> None:
    import numpy as np

    from snnconvert.data.datasets import FileImageDataset

    (tmp_path / "cat").mkdir()
    os.mkfifo(tmp_path / "cat" / "x.png")
    dataset = FileImageDataset(tmp_path, ["cat/x.png"], np.zeros(1, dtype=np.int64), lambda image: image)
    one_line_error(lambda: dataset.pixels(0), "x.png", "named pipe")


def test_to_snn_checks_its_memory_estimate_before_any_work(monkeypatch: pytest.MonkeyPatch) -> None:
    import snnconvert.limits as limits
    import snnconvert.stages as pipeline
    from snnconvert.quantize import QuantizeConfig

    q = pipeline.quantize("lenet5", weights="random", data="digits", config=QuantizeConfig(calib_limit=32),
                          eval_limit=0)
    monkeypatch.setattr(limits, "available_memory_bytes", lambda: 10 * 2**20)  # 10 MiB
    started = []
    monkeypatch.setattr(pipeline, "conversion_inputs", lambda *a, **k: started.append(1))
    # the bundled lenet5 on 8x8 digits: largest activation conv1's 16 x 8 x 8 = 1024 values per image, so
    # 4096 steps x 1024 x 8 B x 3 copies = 96 MiB > 80 % of 10 MiB
    one_line_error(lambda: pipeline.to_snn(q, "rate", T=4096), "4096 time steps", "96 MiB")
    assert started == []
