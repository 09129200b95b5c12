"""SIGINT, SIGTERM and SIGKILL sent to ``quantize``, ``run`` and ``evaluate`` at several points
(while the CLI loads, right after the first progress line, during the work), as real
subprocesses. After SIGINT/SIGTERM: exit 130/143 (or 0 when the command had already finished;
a SIGTERM before the CLI has loaded ends the process at once), one clean line that says
truthfully what had been written, no traceback, and no new file beyond those it names. After
SIGKILL (which cannot be caught) only the documented leftovers may remain: hidden
``.<name>.<pid>.<random>.tmp`` / ``.<name>.reserved`` files of an atomic write and a run's
``.staging-<pid>-*`` folder (and the folders holding them), all removed by the next write or
run into that folder. An existing file changes only when the message names it (``evaluate``
records its report in the artifact's manifest).

Each case starts a Python process that imports torch, so the module is marked slow except the
import-time interruption.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LEFTOVER = re.compile(r"^(\..+\.\d+\.[^.]+\.tmp|\..+\.reserved|\.staging-\d+-[0-9a-f]+)$")
"""What a SIGKILL may leave (hidden, cleaned by the next write or run into the folder)."""


def default_signals() -> None:
    """In the child before exec: SIGINT and SIGTERM at their defaults, whatever the test runner
    inherited (a shell's background job ignores SIGINT, and ignored signals pass to children)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


class _Command:
    """A ``python -m snnconvert`` subprocess whose stderr lines are collected as they come."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1", COLUMNS="200")
        self.proc = subprocess.Popen([sys.executable, "-m", "snnconvert", *args], cwd=cwd, env=env,
                                     preexec_fn=default_signals,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def wait_for_line(self, timeout: float = 120.0) -> bool:
        """Until the first stderr line (a progress line: the work has started)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end and self.proc.poll() is None:
            if self.lines:
                return True
            time.sleep(0.02)
        return bool(self.lines)

    def finish(self, timeout: float = 120.0) -> tuple[int, str, str]:
        assert self.proc.stdout is not None
        out = self.proc.stdout.read()  # stderr belongs to the reader thread
        self.proc.wait(timeout=timeout)
        self.reader.join(timeout=10)
        return self.proc.returncode, out or "", "\n".join(self.lines)


def _snapshot(directory: Path) -> dict[Path, str]:
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in directory.rglob("*")} if directory.exists() else {}


def _check_after(before: dict[Path, str], directory: Path, sig: int, code: int, err: str) -> None:
    after = _snapshot(directory)
    changed = {path for path, digest in before.items() if after.get(path) != digest}
    new = sorted(set(after) - set(before))
    if code == 0:  # finished before the signal arrived: it may have published its results
        return
    if sig == signal.SIGKILL:
        assert code == -signal.SIGKILL
        for path in [p for p in changed if p.suffix == ".snnc" and p.is_file()]:  # replaced atomically (evaluate
            import snnconvert  # records its report in the manifest): the whole new version, which loads

            snnconvert.load(path)
            changed.discard(path)
        assert not changed, f"changed or vanished after SIGKILL: {changed}"
        files = [p for p in new if p.is_file()]  # folders it created may stay, holding only leftovers
        bad = [p for p in files if not any(LEFTOVER.match(part) for part in p.relative_to(directory).parts)]
        for path in [p for p in bad if p.suffix == ".snnc"]:  # killed after its atomic write: complete
            import snnconvert

            snnconvert.load(path)
            bad.remove(path)
        for path in [p for p in bad if p.suffix == ".json"]:  # a report published by an atomic write: complete
            import json

            json.loads(path.read_text())
            bad.remove(path)
        assert not bad, f"undocumented leftovers after SIGKILL: {bad}"
        return
    if sig == signal.SIGTERM and code == -signal.SIGTERM:  # before the CLI installed its handler: ended at once
        assert not new, f"new files after an early SIGTERM: {new}"
        return
    assert "Traceback" not in err, err
    expected = {signal.SIGINT: (130, "interrupted"), signal.SIGTERM: (143, "terminated")}[sig]
    assert code in (expected[0], -sig), (code, err)  # -SIGINT: Python re-raised it at exit after our message
    said = re.search(rf"^{expected[1]}: (nothing was written|it had written (.+))$", err, re.MULTILINE)
    assert said, err
    listed = {Path(p).resolve() for p in said.group(2).split(", ")} if said.group(2) else set()
    assert {p.resolve() for p in new if p.is_file()} <= listed, f"new files not reported: {new} vs {listed}"
    assert {p.resolve() for p in changed} <= listed, f"changed files not reported: {changed} vs {listed}"


def _interrupt(args: list[str], cwd: Path, watched: Path, sig: int, when: str) -> str:
    """Run ``args``, send ``sig`` at ``when``, check what it left in ``watched``; returns stderr."""
    before = _snapshot(watched)
    command = _Command(args, cwd)
    if when == "loading":
        time.sleep(0.4)
    elif when == "first-line":
        command.wait_for_line()
    else:  # during the work, a while after it started
        command.wait_for_line()
        time.sleep(1.5)
    if command.proc.poll() is None:
        command.proc.send_signal(sig)
    code, _, err = command.finish()
    _check_after(before, watched, sig, code, err)
    return err


def test_sigint_while_the_cli_loads_prints_no_traceback(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _interrupt(["quantize", "lenet5", "--out", str(out)], tmp_path, tmp_path, signal.SIGINT, "loading")
    assert not out.exists()


def test_in_process_commands_leave_signal_handlers_alone() -> None:
    """Run inside another program (here pytest), a finished command must not ignore SIGINT or
    SIGTERM: the processes that program starts later would inherit the ignored signals."""
    from typer.testing import CliRunner

    from snnconvert.cli.app import app

    before = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))
    result = CliRunner().invoke(app, ["codings", "--json"])
    assert result.exit_code == 0, result.output
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


SIGNALS = [signal.SIGINT, signal.SIGTERM, signal.SIGKILL]


@pytest.mark.slow
@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: signal.Signals(s).name)
@pytest.mark.parametrize("when", ["loading", "first-line", "working"])
def test_quantize(tmp_path: Path, sig: int, when: str) -> None:
    args = ["quantize", "lenet5", "--qat-epochs", "12", "--qat-batches", "20", "--eval-limit", "1000",
            "--out", str(tmp_path / "out")]
    _interrupt(args, tmp_path, tmp_path, sig, when)


@pytest.mark.slow
@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: signal.Signals(s).name)
@pytest.mark.parametrize("when", ["first-line", "working"])
def test_run(tmp_path: Path, sig: int, when: str) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: lenet5\ndata: digits\n"  # QAT keeps it busy well past the signal
                      "quantize: {bits: 8, calib_limit: 256, qat_epochs: 12, qat_batches_per_epoch: 20}\n"
                      "convert: {coding: sws, Tc: 8, Ts: 2}\nevaluate: {reports: [all]}\n"
                      f"out: {tmp_path / 'out'}\n")
    _interrupt(["run", str(recipe)], tmp_path, tmp_path / "out", sig, when)


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("converted") / "run"
    for args in (["quantize", "lenet5", "--calib-limit", "128", "--eval-limit", "0", "--out", str(out)],
                 ["to-snn", "--input", str(out), "--coding", "sws", "--Tc", "8", "--Ts", "2"]):
        done = subprocess.run([sys.executable, "-m", "snnconvert", *args], cwd=ROOT, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stderr
    return out


@pytest.mark.slow
@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: signal.Signals(s).name)
@pytest.mark.parametrize("when", ["first-line", "working"])
def test_evaluate(converted: Path, tmp_path: Path, sig: int, when: str) -> None:
    # the sweep (36 settings, about 6 s on 2 cores) keeps it busy well past the signal
    args = ["evaluate", "--input", str(converted), "--report", "all", "--sweep", "Ts=0,1,2,3,4,5,6,7,8",
            "--sweep", "Tc=8,10", "--sweep", "beta=2,3", "--plots", str(tmp_path / "plots")]
    err = _interrupt(args, tmp_path, converted, sig, when)
    leftovers = [p for p in converted.iterdir() if p.name.startswith(".")]
    for path in leftovers:  # what a SIGKILL left: removed by the next write into the folder
        assert LEFTOVER.match(path.name), path
    plots = sorted((tmp_path / "plots").glob("*")) if (tmp_path / "plots").exists() else []
    if sig != signal.SIGKILL:  # a plot on disk is one the command said it had written (or it finished)
        assert all(str(p) in err for p in plots) or "interrupted" not in err and "terminated" not in err, err
