"""Bounds on a ``torch.save`` file checked before ``torch.load`` reads or decompresses anything.

A torch file (an ``.snnc`` artifact, a ``.pt``/``.pth``/``.th`` checkpoint) is a zip archive
whose members torch stores uncompressed. :func:`check_torch_zip` reads only the file's size and
the zip's directory (its end record and central directory, each bounded first) and refuses,
with one line: a file that is not a regular file (a named pipe, a device, ``/dev/zero`` behind a
symlink), a zip with too many members or too large a directory, a member whose data lies past
the end of the file, a compressed member that would grow more than
:data:`~snnconvert.limits.MAX_ZIP_RATIO` times (a zip bomb), a pickle record above
:data:`~snnconvert.limits.MAX_PICKLE_BYTES`, and members that would need more memory than
``max_bytes`` (default: :data:`~snnconvert.limits.MEMORY_SHARE` of the available memory).
Files of the legacy (pre-zip) torch format must start with its pickle header (protocol marker and
torch's magic number) and are bounded by their size; any other bytes are refused before torch's
unpickler could read a crafted length and allocate for it.
"""

from __future__ import annotations

import os
import struct
import zipfile
from pathlib import Path

from snnconvert.errors import SnnConvertError
from snnconvert.limits import (
    MAX_PICKLE_BYTES,
    MAX_ZIP_DIRECTORY_BYTES,
    MAX_ZIP_MEMBERS,
    MAX_ZIP_RATIO,
    MEMORY_SHARE,
    available_memory_bytes,
    require_regular_file,
    shorten,
)

_LOCAL_MAGIC = b"PK\x03\x04"
_LEGACY_MAGIC = (0x1950A86A20F9469CFC6C).to_bytes(10, "little")
"""torch's magic number, pickled near the start of every legacy-format file."""
_END = struct.Struct("<4s4H2LH")  # end of central directory record
_END64_LOCATOR = struct.Struct("<4sLQL")
_END64 = struct.Struct("<4sQ2H2L4Q")
_MAX_COMMENT = 0xFFFF
SMALL_MEMBER_BYTES = 1 << 20
"""A compressed member that unpacks to at most this many bytes is never counted as a bomb."""


def memory_cap() -> int | None:
    """Bytes a file read into memory may take: :data:`MEMORY_SHARE` of the available memory
    (None where the available memory cannot be read)."""
    available = available_memory_bytes()
    return None if available is None else int(MEMORY_SHARE * available)


def size_text(n: int) -> str:
    """``n`` bytes for a message: GiB or MiB with one decimal, plain bytes below 1 MiB."""
    if n >= 2**30:
        return f"{n / 2**30:.1f} GiB"
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n} bytes"


class DamagedTorchFile(SnnConvertError):
    """A torch file whose zip structure cannot be read (``detail`` says where); readers may
    reword it in their own terms."""

    def __init__(self, what: str, path: Path, detail: str) -> None:
        super().__init__(f"{what} {shorten(str(path), 200)} is corrupt or truncated ({detail})")
        self.detail = detail


class NotATorchFile(SnnConvertError):
    """Bytes that are neither a torch zip file nor the legacy torch format."""

    def __init__(self, what: str, path: Path) -> None:
        super().__init__(f"{what} {shorten(str(path), 200)} is not a file written by torch.save")


def _refuse(what: str, path: Path, problem: str) -> SnnConvertError:
    return SnnConvertError(f"{what} {shorten(str(path), 200)} {problem}")


def _directory_extent(path: Path, handle, size: int, what: str) -> tuple[int, int, int]:
    """``(members, directory offset, directory size)`` from the zip's end record (zip64 too)."""
    tail_size = min(size, _END.size + _MAX_COMMENT)
    handle.seek(size - tail_size)
    tail = handle.read(tail_size)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or at + _END.size > len(tail):
        raise DamagedTorchFile(what, path, "no zip directory at its end")
    _, _, _, _, members, cd_size, cd_offset, _ = _END.unpack_from(tail, at)
    if members == 0xFFFF or cd_size == 0xFFFFFFFF or cd_offset == 0xFFFFFFFF:
        end_at = size - tail_size + at
        locator_at = end_at - _END64_LOCATOR.size
        if locator_at < 0:
            raise DamagedTorchFile(what, path, "a damaged zip64 directory")
        handle.seek(locator_at)
        signature, _, end64_at, _ = _END64_LOCATOR.unpack(handle.read(_END64_LOCATOR.size))
        if signature != b"PK\x06\x07" or end64_at + _END64.size > size:
            raise DamagedTorchFile(what, path, "a damaged zip64 directory")
        handle.seek(end64_at)
        fields = _END64.unpack(handle.read(_END64.size))
        if fields[0] != b"PK\x06\x06":
            raise DamagedTorchFile(what, path, "a damaged zip64 directory")
        members, cd_size, cd_offset = fields[7], fields[8], fields[9]
    return members, cd_offset, cd_size


def check_torch_zip(path: str | Path, what: str, max_bytes: int | None = None) -> Path:
    """Check the torch file ``path`` (see the module docstring) before ``torch.load`` opens it;
    ``what`` names it in messages (``"artifact"``, ``"checkpoint"``). Returns ``path``; any
    problem is a one-line :class:`SnnConvertError`. Reads at most the zip's end (64 KiB) and its
    central directory (at most :data:`MAX_ZIP_DIRECTORY_BYTES`)."""
    path = require_regular_file(path, what)
    cap = memory_cap() if max_bytes is None else max_bytes
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            head = handle.read(32)
            if not head.startswith(_LOCAL_MAGIC):  # legacy torch format, or not a torch file
                if cap is not None and size > cap:
                    raise _refuse(what, path, f"is {size_text(size)}, more than the {size_text(cap)} of memory "
                                              "it may take to read")
                if not head.startswith(b"\x80") or _LEGACY_MAGIC not in head:
                    raise NotATorchFile(what, path)
                return path
            members, cd_offset, cd_size = _directory_extent(path, handle, size, what)
    except OSError as exc:
        raise _refuse(what, path, f"cannot be read ({shorten(exc.strerror or type(exc).__name__)})") from None
    if members > MAX_ZIP_MEMBERS:
        raise _refuse(what, path, f"declares {members} zip members (at most {MAX_ZIP_MEMBERS}); it is crafted or "
                                  "damaged")
    if cd_size > MAX_ZIP_DIRECTORY_BYTES or cd_offset + cd_size > size:
        raise DamagedTorchFile(what, path, "its zip directory lies outside the file")
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError, struct.error,
            UnicodeDecodeError, NotImplementedError) as exc:
        raise DamagedTorchFile(what, path, shorten(str(exc) or type(exc).__name__)) from None
    total = 0
    for info in infos:
        name = shorten(info.filename, 60)
        if info.header_offset + info.compress_size > size:
            raise DamagedTorchFile(what, path, f"zip member {name} lies past the end of the file")
        if info.compress_type == zipfile.ZIP_STORED and info.file_size != info.compress_size:
            raise _refuse(what, path, f"is crafted or corrupt (stored zip member {name} declares "
                                      f"{info.file_size} bytes but holds {info.compress_size})")
        if info.compress_type != zipfile.ZIP_STORED and info.file_size > SMALL_MEMBER_BYTES \
                and info.file_size > MAX_ZIP_RATIO * info.compress_size:
            raise _refuse(what, path, f"is refused: zip member {name} would unpack {size_text(info.compress_size)} "
                                      f"into {size_text(info.file_size)} (a zip bomb; torch.save never compresses)")
        if info.filename.rsplit("/", 1)[-1] == "data.pkl" and info.file_size > MAX_PICKLE_BYTES:
            raise _refuse(what, path, f"is refused: its pickle record {name} is {size_text(info.file_size)} "
                                      f"(at most {size_text(MAX_PICKLE_BYTES)})")
        total += info.file_size
    if cap is not None and total > cap:
        raise _refuse(what, path, f"would take {size_text(total)} of memory to read, more than the "
                                  f"{size_text(cap)} available")
    return path
