"""Fuzzing helpers: hypothesis profiles, the per-case checks of :func:`attempt` and the table printed
at the end of the run (issue 29, "must show").

``SNNCONVERT_FUZZ=ci`` (default) fits CI; ``SNNCONVERT_FUZZ=large`` (``make fuzz``) tries many more
inputs with fresh random seeds. Every fuzz case goes through :func:`attempt`, which checks, per case:

- **tracebacks**: anything but success or a one-line :class:`SnnConvertError` (CLI: exit 0, or an
  ``error:`` line with exit 1 / a usage error with exit 2, never "Traceback" in the output);
- **hangs**: a 60 s cap (``ITIMER_REAL`` in the main thread raises :class:`Hang`);
- **memory runaway**: ``RLIMIT_AS`` lowered to the case's start size + 2 GiB; a ``MemoryError`` or a
  torch allocation failure anywhere in the error chain counts;
- **code executed**: the payloads of :func:`payloads` create :data:`MARKER` or print ``49zq``;
- **files left**: new paths in the watched folders after a refusal (and hidden temporaries always);
- **inputs changed**: SHA-256, symlink-ness and link target of every input file before and after;
- **silent wrong results**: a case whose correct outcome is a refusal (``expect="refuse"``) that
  was accepted (``expect="refuse_or_warn"`` also accepts a one-line ``warning``).
"""

from __future__ import annotations

import hashlib
import os
import re
import resource
import shutil
import signal
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis.configuration import set_hypothesis_home_dir

from snnconvert.errors import SnnConvertError

set_hypothesis_home_dir(os.path.join(tempfile.gettempdir(), "snnconvert-hypothesis"))  # nothing in the tree
_COMMON = {"deadline": None, "database": None, "suppress_health_check": list(HealthCheck)}
settings.register_profile("ci", max_examples=int(os.environ.get("SNNCONVERT_FUZZ_EXAMPLES", "40")),
                          derandomize=True, **_COMMON)
settings.register_profile("large", max_examples=int(os.environ.get("SNNCONVERT_FUZZ_EXAMPLES", "1500")), **_COMMON)
PROFILE = os.environ.get("SNNCONVERT_FUZZ", "ci")
settings.load_profile(PROFILE)
LARGE = PROFILE == "large"

MAX_MESSAGE = 400
CASE_SECONDS = 60
MEMORY_HEADROOM = 2 * 2**30

ARTIFACTS = "crafted / corrupt artifacts"
CHECKPOINTS = "checkpoints"
ONNX = "ONNX files"
RECIPES = "YAML recipes"
FLAGS = "flag values"
DATA = "data folders"
WRITES = "write failures"
MISMATCH = "data not matching the model"
CATEGORIES = (ARTIFACTS, CHECKPOINTS, ONNX, RECIPES, FLAGS, DATA, WRITES, MISMATCH)
COLUMNS = ("cases", "tracebacks", "hangs", "memory runaway", "code executed", "files left", "inputs changed",
           "silent wrong results")
STATS: dict[str, dict[str, int]] = {c: dict.fromkeys(COLUMNS, 0) for c in CATEGORIES}

MARKER = Path(tempfile.gettempdir()) / f"snnc-fuzz-marker-{os.getpid()}"
TEMPLATE_RESULT = "49zq"


def payloads(marker: Path = MARKER) -> list[str]:
    """Strings that create ``marker`` (or print :data:`TEMPLATE_RESULT`) if anything evaluates them."""
    code = f"__import__('pathlib').Path({str(marker)!r}).touch()"
    return [code, f"x={code}", f"_m = {code}; _m", f"$(touch {marker})", f"'; touch {marker} #",
            f"`touch {marker}`", "{{7*7}}zq"]


PAYLOADS = payloads()


class Hang(BaseException):
    """Raised by the per-case timer (a BaseException so that no ``except Exception`` swallows it)."""


class CaseFailed(AssertionError):
    """One or more checks of a case failed."""


@contextmanager
def workdir() -> Iterator[Path]:
    """A fresh folder for one input, removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="snnc-fuzz-"))
    try:
        yield folder
    finally:
        _force_remove(folder)


def _force_remove(folder: Path) -> None:
    for root, dirs, _ in os.walk(folder):  # a test may have made folders unreadable
        for name in dirs:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                os.chmod(path, 0o755)
    shutil.rmtree(folder, ignore_errors=True)


def _fingerprint(path: Path) -> tuple:
    """What must not change about an input: symlink-ness, link target, and the bytes of every file."""
    link = os.readlink(path) if path.is_symlink() else None
    if path.is_dir() and not path.is_symlink():
        return ("dir", link, tuple((p.relative_to(path).as_posix(), _fingerprint(p)) for p in sorted(path.iterdir())))
    if path.is_file():
        stat = path.stat()
        if stat.st_size > 64 << 20:  # large (often sparse) files: metadata plus both ends
            with open(path, "rb") as handle:
                head = handle.read(1 << 20)
                handle.seek(-(1 << 20), os.SEEK_END)
                tail = handle.read()
            return ("file", link, (stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino,
                                   hashlib.sha256(head + tail).hexdigest()))
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        return ("file", link, digest.hexdigest())
    return ("other", link, path.exists())


def _listing(folder: Path) -> set[str]:
    found = set()
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            found.add(os.path.relpath(os.path.join(root, name), folder))
    return found


def _vm_size() -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def _is_allocation_failure(exc: BaseException | None) -> bool:
    seen = 0
    while exc is not None and seen < 20:
        if isinstance(exc, MemoryError):
            return True
        text = str(exc)
        if isinstance(exc, RuntimeError) and ("can't allocate memory" in text or "not enough memory" in text):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def _has_hang(exc: BaseException | None) -> bool:
    seen = 0
    while exc is not None and seen < 20:
        if isinstance(exc, Hang):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def _on_alarm(signum: int, frame: Any) -> None:
    raise Hang(f"case ran past {CASE_SECONDS} s")


@contextmanager
def caps(seconds: float = CASE_SECONDS, headroom: int = MEMORY_HEADROOM) -> Iterator[None]:
    """The per-case time and address-space caps, restored afterwards."""
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = _vm_size() + headroom
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
        signal.signal(signal.SIGALRM, previous)


class Refused(SnnConvertError):
    """A CLI command ended with a clean error line (exit 1) or a usage error (exit 2)."""


class Crashed(Exception):
    """A CLI command ended with a traceback or an unexpected exit."""


def cli(args: list[str], *, warned: list[str] | None = None) -> str:
    """Run the CLI in-process; returns its output on exit 0, raises :class:`Refused` on a clean
    error and :class:`Crashed` on anything else. Hangs and allocation failures pass through."""
    from typer.testing import CliRunner

    from snnconvert.cli.app import app

    result = CliRunner().invoke(app, args)
    output = result.output
    exc = result.exception
    if exc is not None and not isinstance(exc, SystemExit):
        if isinstance(exc, Hang) or _is_allocation_failure(exc):
            raise exc
        raise Crashed(f"{type(exc).__name__}: {str(exc)[:300]}") from exc
    if "Traceback" in output:
        raise Crashed(f"traceback in output: {output[-600:]!r}")
    if TEMPLATE_RESULT in output:
        raise CodeExecuted(f"a template payload was evaluated: {output[-300:]!r}")
    if result.exit_code == 0:
        if warned is not None:
            warned.extend(line for line in output.splitlines() if line.lower().startswith("warning"))
        return output
    lines = [line for line in output.strip().splitlines() if line.strip()]
    if result.exit_code == 1 and lines and lines[-1].startswith("error:"):
        errors = [line for line in lines if line.startswith("error:")]
        raise Refused(errors[0][len("error:"):].strip() if len(errors) == 1 else "\n".join(errors))
    if result.exit_code == 2 and ("Usage" in output or "Error" in output or "Invalid" in output):
        raise Refused("usage error")
    raise Crashed(f"exit {result.exit_code}: {output[-600:]!r}")


class CodeExecuted(Exception):
    """A payload ran."""


def attempt(call: Callable[[], Any], folder: Path | None = None, keep: tuple[str, ...] = (), *,
            category: str = ARTIFACTS, inputs: Iterable[Path] = (), expect: str = "any",
            watch: Iterable[Path] = (), outputs_ok: bool = True, seconds: float = CASE_SECONDS) -> Any:
    """Run one fuzz case through every check (see the module docstring); raises :class:`CaseFailed`
    naming what went wrong. ``folder``/``watch``: where new files must not be left (``keep`` names
    files of ``folder`` that may stay); ``inputs``: files or folders that must stay unchanged;
    ``expect``: ``any``, ``refuse`` or ``refuse_or_warn``; ``outputs_ok``: new files are fine after
    a success (a command's outputs). Returns the call's result (None after a refusal)."""
    row = STATS[category]
    row["cases"] += 1
    inputs = [Path(p) for p in inputs]
    watched = [Path(p) for p in ([folder] if folder is not None else []) + list(watch)]
    before = {p: _fingerprint(p) for p in inputs}
    listed = {p: _listing(p) for p in watched}
    MARKER.unlink(missing_ok=True)
    problems: list[tuple[str, str]] = []
    result = None
    accepted = False
    warned: list[str] = []
    try:
        with caps(seconds):
            result = call()
        accepted = True
        if isinstance(result, str):
            warned = [line for line in result.splitlines() if line.lower().startswith("warning")]
    except Hang as exc:
        problems.append(("hangs", str(exc)))
    except CodeExecuted as exc:
        problems.append(("code executed", str(exc)))
    except SnnConvertError as exc:
        message = str(exc)
        if _is_allocation_failure(exc):
            problems.append(("memory runaway", f"allocation failure behind the error: {message[:200]!r}"))
        elif _has_hang(exc):
            problems.append(("hangs", f"timer fired behind the error: {message[:200]!r}"))
        elif "\n" in message or len(message) > MAX_MESSAGE:
            problems.append(("tracebacks", f"error is not one short line: {message[:600]!r}"))
    except BaseException as exc:  # noqa: BLE001 - every other outcome is a finding
        if isinstance(exc, KeyboardInterrupt):
            raise
        if _is_allocation_failure(exc):
            problems.append(("memory runaway", f"{type(exc).__name__}: {str(exc)[:200]}"))
        else:
            problems.append(("tracebacks", f"{type(exc).__name__}: {str(exc)[:400]}"))
    if MARKER.exists():
        MARKER.unlink()
        problems.append(("code executed", f"a payload created {MARKER}"))
    if accepted and expect == "refuse":
        problems.append(("silent wrong results", "accepted an input it must refuse"))
    if accepted and expect == "refuse_or_warn" and not warned:
        problems.append(("silent wrong results", "accepted without a warning an input it must refuse or warn on"))
    for path, fingerprint in before.items():
        if _fingerprint(path) != fingerprint:
            problems.append(("inputs changed", f"{path} changed"))
    for path, names in listed.items():
        now = _listing(path) - names - set(keep)
        left = sorted(n for n in now if not accepted or not outputs_ok
                      or re.search(r"(^|/)\.[^/]*(\.tmp|\.reserved)$", n))
        if left:
            problems.append(("files left", f"in {path}: {left[:5]}"))
    for column, _ in problems:
        row[column] += 1
    if problems:
        raise CaseFailed("; ".join(f"{column}: {detail}" for column, detail in problems))
    return result


def table() -> list[str]:
    """The counts as a Markdown table, one row per category and a total."""
    head = "| category | " + " | ".join(COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 1)]
    total = dict.fromkeys(COLUMNS, 0)
    for category in CATEGORIES:
        row = STATS[category]
        for column in COLUMNS:
            total[column] += row[column]
        lines.append(f"| {category} | " + " | ".join(str(row[c]) for c in COLUMNS) + " |")
    lines.append("| **total** | " + " | ".join(str(total[c]) for c in COLUMNS) + " |")
    return lines


@contextmanager
def tmpfs(where: Path, size: str, *, read_only: bool = False) -> Iterator[Path]:
    """A small tmpfs mounted at ``where`` (root only); skips the test when it cannot be mounted."""
    import subprocess

    import pytest

    where.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode(errors='replace').strip()[:120]}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def fill(folder: Path, leave: int = 0) -> Path:
    """Fill the file system of ``folder`` up to ``leave`` free bytes with one file; returns it."""
    filler = folder / "filler"
    with open(filler, "wb") as handle:
        try:
            while True:
                free = shutil.disk_usage(folder).free
                if free <= leave:
                    break
                handle.write(b"\0" * min(1 << 16, max(1, free - leave)))
                handle.flush()
        except OSError:
            pass
    return filler
