"""Atomic file writes: a temporary file in the target's folder, renamed over the target.

Guarantees:

- A failed or interrupted write (an exception, Ctrl-C, SIGTERM) leaves the target as it was and
  no temporary file behind: while a write is in progress in the main thread, SIGTERM raises
  ``SystemExit(143)`` (unless the program installed its own handler), so the cleanup runs.
- SIGKILL cannot be caught: it may leave a temporary file ``.<name>.<pid>.<random>.tmp``. Such
  files are hidden (dot files, which nothing in snnconvert reads) and are removed by the next
  write into the same folder once their process ``<pid>`` no longer runs.
- Files get the permissions ``open()`` would give (``0666`` minus the umask), not ``0600``.
- ``exclusive=True`` never replaces a file another process created meanwhile: the target is
  published with a no-clobber link, and if its name is taken, the next free name
  ``<stem>-1<suffix>``, ``<stem>-2<suffix>``... is used. The path written is returned.
- :func:`reserve_name` picks a new file name atomically for a write that comes later: it
  creates the hidden marker ``.<name>.reserved`` (published with a no-clobber link, so it holds
  the owner's pid and start time from its first instant), so two processes never pick the same
  name; the write of ``<name>`` removes the marker. A marker whose process no longer runs (or
  whose pid now belongs to a later process) is stale: reservations take its name again, and
  :func:`remove_stale_temporaries` (run by every write, every reservation and every listing of
  artifacts) removes it, like temporary files. Nothing stale outlives the next look at a folder.
- A write that fails for a reason of the file system (disk full, read-only mount, a parent that
  is a file, a file size limit, a name too long, no permission) raises :class:`WriteError`, one
  line such as ``no space left on device: PATH``, also when the writer (``torch.save``) hides the
  operating system's error behind its own; the temporary file, the name reservation and the
  folders this write created are removed first, so nothing is left behind.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import secrets
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from snnconvert.errors import SnnConvertError
from snnconvert.limits import shorten

_TMP_PATTERN = re.compile(r"^\..+\.(\d+)\.[^.]+\.tmp$")
RESERVED_SUFFIX = ".reserved"
MAX_NAME_TRIES = 10_000


MAX_TEMP_STEM = 100
"""Characters of the target's name kept in a temporary file's name (a 250-character target must
not give a temporary name past the file system's 255)."""

_WRITE_PROBLEMS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.ENAMETOOLONG: "file name too long",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EFBIG: "file size limit exceeded",
    errno.EISDIR: "is a directory",
    errno.ENOTDIR: "not a directory",
    errno.EEXIST: "not a directory",  # mkdir of a folder whose name a file holds
    errno.ELOOP: "too many levels of symbolic links",
    errno.EMFILE: "too many open files",
    errno.ENFILE: "too many open files",
    errno.EIO: "input/output error",
}


class WriteError(SnnConvertError, OSError):
    """A write that failed in the file system: one line ``<problem>: PATH`` (``no space left on
    device``, ``read-only file system``, ``file name too long``, ``permission denied``, ``not a
    directory``, ``file size limit exceeded``...). Also an :class:`OSError` with the original
    ``errno`` (and ``strerror`` the problem's words), so callers that skip optional writes still
    catch it."""

    def __init__(self, message: str, code: int | None = None, problem: str = "",
                 filename: str | None = None) -> None:
        super().__init__(message)
        self.errno, self.strerror, self.filename = code, problem or None, filename

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def _blocking_file(folder: Path) -> Path | None:
    """The nearest of ``folder`` and its ancestors that exists, if it is not a folder."""
    for candidate in (folder, *folder.parents):
        try:
            if candidate.exists():
                return None if candidate.is_dir() else candidate
        except OSError:
            return None
    return None


def write_error(exc: OSError, path: str | Path) -> WriteError:
    """The one-line :class:`WriteError` for ``exc``, raised while writing the file ``path``; a
    parent that is a file is named instead of ``path``."""
    if isinstance(exc, WriteError):
        return exc
    path = Path(path)
    code = exc.errno
    problem = _WRITE_PROBLEMS.get(code) if code is not None else None
    shown = path
    if code in (errno.ENOTDIR, errno.EEXIST):
        shown = _blocking_file(path.parent) or path
    if problem is None:
        problem = (exc.strerror or type(exc).__name__).lower()
    return WriteError(f"{problem}: {shorten(str(shown), 200)}", code, problem, str(shown))


class _Recorder:
    """A writable handle that passes everything to ``handle`` and keeps the first OSError of a
    write, so a writer that turns it into its own error (torch.save: "unexpected pos") is
    reported with the real cause."""

    def __init__(self, handle: IO[bytes]) -> None:
        self._handle = handle
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        try:
            return self._handle.write(data)
        except OSError as exc:
            self.error = self.error or exc
            raise

    def flush(self) -> None:
        try:
            self._handle.flush()
        except OSError as exc:
            self.error = self.error or exc
            raise

    def writable(self) -> bool:
        return True

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)


def _missing_folders(folder: Path) -> list[Path]:
    """``folder`` and its ancestors that do not exist yet, innermost first."""
    missing = []
    for candidate in (folder, *folder.parents):
        try:
            if candidate.exists() or candidate.is_symlink():
                break
        except OSError:
            break
        missing.append(candidate)
    return missing


def _make_folder(folder: Path, target: Path) -> list[Path]:
    """Create ``folder`` with its parents for the file ``target``; returns the folders created
    (innermost first). A failure is a :class:`WriteError` and removes what this call created."""
    made = _missing_folders(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        _remove_folders(made)
        raise write_error(exc, target) from None
    return made


def _remove_folders(made: list[Path]) -> None:
    """Remove ``made`` (innermost first) while they are empty."""
    for folder in made:
        try:
            folder.rmdir()
        except OSError:
            break


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux), else via os.umask."""
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """Turn SIGTERM into ``SystemExit(143)`` for the duration (main thread, default handler only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    try:
        previous = signal.getsignal(signal.SIGTERM)
    except (ValueError, OSError):
        previous = None
    if previous not in (signal.SIG_DFL, None):
        yield  # the program handles SIGTERM itself (it must raise for the cleanup to run)
        return

    def handler(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _pid_running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError, OverflowError):
        return True  # exists but belongs to someone else, or cannot be asked: keep the file
    return True


def _start_time(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, ``/proc``); None where unknown."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return fields[19]  # field 22 of stat(5); the first two (pid, comm) were cut off
    except (OSError, IndexError, ValueError):
        return None


def _marker(path: Path) -> Path:
    return path.with_name(f".{path.name}{RESERVED_SUFFIX}")


STALE_EMPTY_MARKER_S = 60.0
"""Age after which a marker without a readable owner counts as stale (only a process killed while
creating one without hard links leaves it empty)."""


def _marker_text(marker: Path) -> str | None:
    try:
        return marker.read_text(encoding="ascii").strip()
    except (OSError, UnicodeError):
        return None


def _parse_owner(text: str | None) -> tuple[int, str | None] | None:
    """``(pid, start time)`` from a marker's text (``"<pid> <start>"``, or ``"<pid>"`` alone)."""
    parts = (text or "").split()
    if not parts or not parts[0].isdigit() or len(parts) > 2:
        return None
    return int(parts[0]), parts[1] if len(parts) == 2 else None


def _marker_owner(marker: Path) -> int | None:
    """The pid in a reservation marker; None while it is being written or unreadable."""
    owner = _parse_owner(_marker_text(marker))
    return owner[0] if owner else None


def _owner_gone(text: str | None, marker: Path) -> bool:
    """Whether the reservation with marker text ``text`` is stale: its process no longer runs, its
    pid belongs to a later process now, or it has had no readable owner for a minute."""
    owner = _parse_owner(text)
    if owner is None:
        try:
            return time.time() - marker.stat().st_mtime > STALE_EMPTY_MARKER_S
        except OSError:
            return False
    pid, started = owner
    if pid == os.getpid():
        return False
    if not _pid_running(pid):
        return True
    now = _start_time(pid)
    return started is not None and now is not None and now != started


def _remove_stale_marker(marker: Path) -> bool:
    """Remove ``marker`` if it is stale; True when removed. Race-safe: the marker is first renamed
    to a private name and checked again there, and a live one that a concurrent reservation
    created meanwhile is linked back (no-clobber) instead of lost."""
    text = _marker_text(marker)
    if not _owner_gone(text, marker):
        return False
    private = marker.with_name(f"{marker.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        os.rename(marker, private)
    except OSError:
        return False  # gone already (another cleaner) or not ours to move
    try:
        if _marker_text(private) != text or not _owner_gone(text, private):
            with contextlib.suppress(OSError):
                os.link(private, marker)  # a fresh reservation: put it back
            return False
        return True
    finally:
        with contextlib.suppress(OSError):
            os.unlink(private)


def _create_marker(marker: Path) -> bool:
    """Create ``marker`` holding this process's pid and start time, atomically (False if taken).
    A failure (disk full) leaves neither the marker nor its temporary file."""
    started = _start_time(os.getpid())
    text = f"{os.getpid()} {started}\n" if started else f"{os.getpid()}\n"
    fd, tmp = tempfile.mkstemp(prefix=f"{marker.name[:MAX_TEMP_STEM]}.{os.getpid()}.", suffix=".tmp",
                               dir=marker.parent)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(text)
        try:
            os.link(tmp, marker)
            return True
        except FileExistsError:
            return False
        except OSError:  # no hard links on this file system: O_EXCL, then the pid
            try:
                fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            try:
                with os.fdopen(fd, "w", encoding="ascii") as handle:
                    handle.write(text)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(marker)
                raise
            return True
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def reserve_name(candidates: Iterable[Path]) -> Path:
    """The first of ``candidates`` that neither exists nor is reserved by a running process,
    reserved for this process (atomically: two processes never get the same name). A later
    :func:`write_atomically` of that path (or :func:`release_name`) removes the reservation;
    stale reservations in the folder are removed first. A file-system failure is a
    :class:`WriteError` and leaves nothing behind (no marker, no folder this call made)."""
    cleaned: set[Path] = set()
    made: list[Path] = []
    path = None
    try:
        for path in candidates:
            if path.parent not in cleaned:
                made += _make_folder(path.parent, path)
                remove_stale_temporaries(path.parent)
                cleaned.add(path.parent)
            marker = _marker(path)
            if not _create_marker(marker) and not (_remove_stale_marker(marker) and _create_marker(marker)):
                continue
            if path.exists():  # published by a writer that has released its reservation
                release_name(path)
                continue
            return path
    except OSError as exc:
        _remove_folders(made)
        raise write_error(exc, path if path is not None else ".") from None
    raise FileExistsError("no free file name")


def release_name(path: str | Path) -> None:
    """Drop this process's reservation of ``path`` (if any)."""
    marker = _marker(Path(path))
    if _marker_owner(marker) == os.getpid():
        with contextlib.suppress(FileNotFoundError):
            os.unlink(marker)


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete temporary files and name reservations left in ``folder`` by writers that were
    killed (their process no longer runs); returns them."""
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        path = Path(folder) / name
        if name.startswith(".") and name.endswith(RESERVED_SUFFIX):
            if _remove_stale_marker(path):
                removed.append(path)
            continue
        match = _TMP_PATTERN.match(name)
        if match is None or _pid_running(int(match.group(1))):
            continue
        with contextlib.suppress(OSError):
            os.unlink(path)
            removed.append(path)
    return removed


def _candidates(path: Path) -> Iterator[Path]:
    yield path
    for n in range(1, MAX_NAME_TRIES):
        yield path.with_name(f"{path.stem}-{n}{path.suffix}")


def _publish_exclusive(tmp: str, path: Path) -> Path:
    """Give ``tmp`` the first free name of ``path``'s candidates without replacing any file."""
    for candidate in _candidates(path):
        try:
            os.link(tmp, candidate)
        except FileExistsError:
            continue
        except OSError:  # no hard links on this file system: reserve the name, then replace it
            try:
                os.close(os.open(candidate, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
            except FileExistsError:
                continue
            os.replace(tmp, candidate)
            return candidate
        os.unlink(tmp)
        return candidate
    raise FileExistsError(f"no free file name like {path}")


def write_atomically(path: str | Path, write: Callable[[IO[bytes]], None], *, suffix: str = ".tmp",
                     exclusive: bool = False) -> Path:
    """Create ``path`` (and its folder) with the bytes ``write(handle)`` produces, atomically.

    With ``exclusive``, an existing file is never replaced: the next free name is used instead.
    Returns the path written. A failure of the file system is a one-line :class:`WriteError`;
    whatever the failure, nothing of this write is left behind."""
    path = requested = Path(path)
    made = _make_folder(path.parent, path)
    recorder: _Recorder | None = None
    try:
        remove_stale_temporaries(path.parent)
        with _sigterm_raises():
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name[:MAX_TEMP_STEM]}.{os.getpid()}.", suffix=suffix,
                                       dir=path.parent)
            try:
                with contextlib.suppress(OSError):  # file systems without modes (vfat) refuse it
                    os.fchmod(fd, 0o666 & ~current_umask())
                with os.fdopen(fd, "wb") as handle:
                    recorder = _Recorder(handle)
                    write(recorder)  # type: ignore[arg-type]
                    handle.flush()
                    os.fsync(handle.fileno())
                if exclusive:
                    path = _publish_exclusive(tmp, path)
                else:
                    os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                release_name(path)
                raise
    except Exception as exc:
        _remove_folders(made)
        cause = recorder.error if recorder is not None and recorder.error is not None else exc
        if isinstance(cause, OSError) and cause.errno is not None and not isinstance(exc, SnnConvertError):
            raise write_error(cause, path) from None
        raise
    except BaseException:
        _remove_folders(made)
        raise
    release_name(requested)
    return path


def write_json_atomically(path: str | Path, data: Any) -> Path:
    """``data`` as indented JSON (values JSON cannot hold are written as strings)."""
    text = json.dumps(data, indent=2, default=str).encode()
    return write_atomically(path, lambda handle: handle.write(text))
