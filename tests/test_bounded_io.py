"""Issue 29, items 3 and 5: bounded reads (zip bombs, ONNX external data past the file's end,
sparse files, named pipes, /dev/zero, manifest lists, YAML aliases of long strings) and write
failures that end in one line and leave nothing behind (full disk, read-only mount, a parent
that is a file, RLIMIT_FSIZE, a name too long)."""

from __future__ import annotations

import io
import os
import re
import resource
import signal
import struct
import subprocess
import sys
import tracemalloc
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

from snnconvert import limits, safe_zip
from snnconvert.artifact import Artifact, save_artifact
from snnconvert.atomic import WriteError, reserve_name, write_atomically
from snnconvert.errors import SnnConvertError
from snnconvert.ingest.checkpoint import load_state_dict_file
from snnconvert.ingest.onnx import read_onnx
from snnconvert.limits import check_manifest_sizes, shorten
from snnconvert.recipe import load_recipe
from snnconvert.safe_zip import check_torch_zip

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}


@pytest.fixture
def no_hang() -> Iterator[None]:
    """A read that blocks (a named pipe opened for reading) is interrupted after 20 s."""
    def on_alarm(signum: int, frame: object) -> None:
        raise TimeoutError("the read blocked")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(20)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _listing(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): (p.read_bytes() if p.is_file() else b"<dir>")
            for p in sorted(folder.rglob("*"))}


def _message(call) -> str:
    with pytest.raises(SnnConvertError) as err:
        call()
    text = str(err.value)
    assert "\n" not in text
    return text


# ---------------------------------------------------------------------------------- zip bombs


def _central_entries(data: bytes) -> Iterator[tuple[int, str]]:
    """(offset, name) of each central-directory entry of a small (non-zip64) zip."""
    end = data.rfind(b"PK\x05\x06")
    _, _, _, _, count, _, offset, _ = struct.unpack_from("<4s4H2LH", data, end)
    for _ in range(count):
        name_len, extra_len, comment_len = struct.unpack_from("<3H", data, offset + 28)
        yield offset, data[offset + 46: offset + 46 + name_len].decode()
        offset += 46 + name_len + extra_len + comment_len


def _bomb(source: Path, target: Path, member_suffix: str, unpacked: int, declared: int | None = None) -> None:
    """``source`` (a torch file) rewritten with member ``*member_suffix`` deflated from ``unpacked``
    zero bytes; ``declared`` patches the size its central directory declares."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = bytes(1 << 20)
    packed = b"".join(compressor.compress(chunk) for _ in range(unpacked >> 20)) + compressor.flush()
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for info in old.infolist():
            if info.filename.endswith(member_suffix):
                bomb = zipfile.ZipInfo(info.filename)
                bomb.compress_type = zipfile.ZIP_DEFLATED
                new.writestr(bomb, b"")  # placeholder, replaced below
            else:
                new.writestr(info, old.read(info.filename))
    # swap the placeholder's data for the real deflate stream (sizes and CRC patched by hand)
    data = bytearray(target.read_bytes())
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
        info = next(i for i in archive.infolist() if i.filename.endswith(member_suffix))
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    crc = zlib.crc32(bytes(unpacked)) if unpacked <= 64 << 20 else 0
    data[start: start + info.compress_size] = packed
    struct.pack_into("<3L", data, info.header_offset + 14, crc, len(packed), unpacked)
    shift = len(packed) - info.compress_size
    end = data.rfind(b"PK\x05\x06")
    cd_size, cd_offset = struct.unpack_from("<2L", data, end + 12)
    struct.pack_into("<L", data, end + 16, cd_offset + shift)
    for offset, name in _central_entries(bytes(data)):
        header_offset = struct.unpack_from("<L", data, offset + 42)[0]
        if name.endswith(member_suffix):
            struct.pack_into("<3L", data, offset + 16, crc, len(packed), declared or unpacked)
        elif header_offset > info.header_offset:
            struct.pack_into("<L", data, offset + 42, header_offset + shift)
    target.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def small_files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("torch_files")
    torch.manual_seed(0)
    model = nn.Linear(8, 4)
    checkpoint = folder / "model.pt"
    torch.save(model.state_dict(), checkpoint)
    artifact = save_artifact(Artifact("quantized", {"notes": ["fine"]}, {"float": model}), folder / "good.snnc")
    return {"checkpoint": checkpoint, "artifact": artifact}


def test_genuine_torch_files_pass_the_zip_check(small_files) -> None:
    for what, path in small_files.items():
        assert check_torch_zip(path, what) == path
    assert set(load_state_dict_file(small_files["checkpoint"])) == {"weight", "bias"}


@pytest.mark.parametrize("declared", [None, (1 << 32) - 2])
def test_zip_bomb_checkpoint_is_refused_before_torch_load(small_files, tmp_path: Path, monkeypatch,
                                                          declared: int | None) -> None:
    """32 MiB of zeros deflate to ~32 KiB (ratio ~1000 > MAX_ZIP_RATIO 100); with ``declared`` the
    directory claims 4 GiB for it. torch.load is never reached."""
    bomb = tmp_path / "bomb.pt"
    _bomb(small_files["checkpoint"], bomb, "data/0", 32 << 20, declared)
    assert bomb.stat().st_size < 200_000
    name = next(n for n in zipfile.ZipFile(bomb).namelist() if n.endswith("data/0"))

    def never(*args, **kwargs):
        raise AssertionError("torch.load ran on a zip bomb")

    monkeypatch.setattr(torch, "load", never)
    message = _message(lambda: load_state_dict_file(bomb))
    packed = zipfile.ZipFile(bomb).getinfo(name).compress_size
    unpacked = declared or 32 << 20
    size = f"{unpacked / 2**30:.1f} GiB" if unpacked >= 2**30 else f"{unpacked / 2**20:.1f} MiB"
    packed_text = f"{packed / 2**20:.1f} MiB" if packed >= 2**20 else f"{packed} bytes"
    assert message == (f"checkpoint {bomb} is refused: zip member {name} would unpack {packed_text} into {size} "
                       "(a zip bomb; torch.save never compresses)")


def test_zip_bomb_artifact_is_refused(small_files, tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.snnc"
    _bomb(small_files["artifact"], bomb, "data/0", 16 << 20, declared=(1 << 32) - 2)
    assert "(a zip bomb; torch.save never compresses)" in _message(lambda: check_torch_zip(bomb, "artifact"))


def test_zip_declaring_more_than_memory_or_members_is_refused(small_files, monkeypatch) -> None:
    path = small_files["artifact"]
    total = sum(i.file_size for i in zipfile.ZipFile(path).infolist())
    assert _message(lambda: check_torch_zip(path, "artifact", max_bytes=total - 1)) == \
        f"artifact {path} would take {total} bytes of memory to read, more than the {total - 1} bytes available"
    assert check_torch_zip(path, "artifact", max_bytes=total) == path
    members = len(zipfile.ZipFile(path).infolist())
    monkeypatch.setattr(safe_zip, "MAX_ZIP_MEMBERS", members - 1)
    assert _message(lambda: check_torch_zip(path, "artifact")) == \
        f"artifact {path} declares {members} zip members (at most {members - 1}); it is crafted or damaged"


def test_zip_member_past_the_end_of_the_file_is_refused(small_files, tmp_path: Path) -> None:
    data = bytearray(small_files["checkpoint"].read_bytes())
    offset, name = next((o, n) for o, n in _central_entries(bytes(data)) if n.endswith("data/0"))
    struct.pack_into("<2L", data, offset + 20, 1 << 30, 1 << 30)  # stored: 1 GiB claimed, 32 bytes there
    crafted = tmp_path / "crafted.pt"
    crafted.write_bytes(bytes(data))
    assert _message(lambda: load_state_dict_file(crafted)) == (
        f"checkpoint {crafted} is truncated or corrupt (zip member {name} lies past the end of the file); "
        "check the file or re-save it with torch.save(model.state_dict(), PATH)")


# ----------------------------------------------------------- sparse files, pipes and devices


@pytest.fixture
def sparse_4gib(tmp_path: Path):
    def make(name: str) -> Path:
        path = tmp_path / name
        with open(path, "wb") as handle:
            handle.truncate(4 << 30)
        if path.stat().st_blocks * 512 > 1 << 20:
            pytest.skip("this file system has no sparse files")
        return path
    return make


def test_sparse_4gib_files_are_refused_by_size(sparse_4gib, no_hang) -> None:
    onnx_file = sparse_4gib("model.onnx")
    assert _message(lambda: read_onnx(onnx_file)) == (
        f"ONNX file {onnx_file} is 4.0 GiB, more than the 2 GiB an ONNX file can hold; keep large weights in "
        "external data files")
    recipe = sparse_4gib("recipe.yaml")
    assert _message(lambda: load_recipe(recipe)) == \
        f"recipe {recipe} is {4 << 30} bytes; recipes are at most {limits.MAX_RECIPE_BYTES} bytes"
    checkpoint = sparse_4gib("model.pt")
    assert _message(lambda: check_torch_zip(checkpoint, "checkpoint", max_bytes=1 << 30)) == \
        f"checkpoint {checkpoint} is 4.0 GiB, more than the 1.0 GiB of memory it may take to read"
    _message(lambda: load_state_dict_file(checkpoint))  # refused by size or as not a checkpoint: one line


def _readers(tmp_path: Path) -> dict[str, tuple]:
    return {
        "model.onnx": (read_onnx, "ONNX file"),
        "model.pt": (load_state_dict_file, "checkpoint"),
        "recipe.yaml": (load_recipe, "recipe"),
        "a.snnc": (lambda p: check_torch_zip(p, "artifact"), "artifact"),
    }


@pytest.mark.parametrize("name", ["model.onnx", "model.pt", "recipe.yaml", "a.snnc"])
def test_named_pipe_is_refused_without_blocking(tmp_path: Path, no_hang, name: str) -> None:
    read, what = _readers(tmp_path)[name]
    pipe = tmp_path / name
    os.mkfifo(pipe)
    assert _message(lambda: read(pipe)) == f"{what} {pipe} is a named pipe, not a regular file; pass the file itself"


@pytest.mark.parametrize("name", ["model.onnx", "model.pt", "recipe.yaml", "a.snnc"])
def test_symlink_to_dev_zero_is_refused(tmp_path: Path, no_hang, name: str) -> None:
    if not os.path.exists("/dev/zero"):
        pytest.skip("no /dev/zero")
    read, what = _readers(tmp_path)[name]
    link = tmp_path / name
    link.symlink_to("/dev/zero")
    assert _message(lambda: read(link)) == f"{what} {link} is a device, not a regular file; pass the file itself"


# ------------------------------------------------------------------------ ONNX external data


def _onnx_with_external(folder: Path, entries: dict[str, str], data: bytes = bytes(32), rows: int = 4,
                        cols: int = 2) -> Path:
    """A MatMul model whose rows x cols float weight (default 32 bytes) lives in ``w.bin`` with ``entries``."""
    import onnx
    from onnx import TensorProto, helper

    weight = TensorProto(name="W", dims=[rows, cols], data_type=TensorProto.FLOAT,
                         data_location=TensorProto.EXTERNAL)
    for key, value in {"location": "w.bin", **entries}.items():
        weight.external_data.add(key=key, value=value)
    graph = helper.make_graph([helper.make_node("MatMul", ["X", "W"], ["Y"])], "g",
                              [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, rows])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, cols])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    (folder / "w.bin").write_bytes(data)
    path = folder / "model.onnx"
    path.write_bytes(model.SerializeToString())
    assert onnx.load(str(path), load_external_data=False).graph.initializer[0].name == "W"
    return path


def test_onnx_external_data_within_the_file_loads(tmp_path: Path) -> None:
    values = torch.arange(8, dtype=torch.float32)
    path = _onnx_with_external(tmp_path, {"offset": "4", "length": "32"}, b"\0" * 4 + values.numpy().tobytes())
    from onnx import numpy_helper

    weight = numpy_helper.to_array(read_onnx(path).graph.initializer[0])
    assert weight.reshape(-1).tolist() == values.tolist()


@pytest.mark.parametrize("entries,asks", [
    ({"length": str(1 << 40)}, f"bytes 0..{1 << 40}"),
    ({"offset": str(1 << 40), "length": "32"}, f"bytes {1 << 40}..{(1 << 40) + 32}"),
    ({"offset": "16", "length": "32"}, "bytes 16..48"),
])
def test_onnx_external_data_past_the_file_end_is_refused(tmp_path: Path, entries: dict, asks: str) -> None:
    path = _onnx_with_external(tmp_path, entries)
    assert _message(lambda: read_onnx(path)) == (
        f"ONNX file {path}: tensor 'W' asks for {asks} of external data file 'w.bin', which holds 32 bytes; "
        "the file is truncated or the model crafted")


def test_onnx_external_data_bad_numbers_and_pipes(tmp_path: Path, no_hang) -> None:
    path = _onnx_with_external(tmp_path, {"length": "-5"})
    assert _message(lambda: read_onnx(path)) == \
        f"ONNX file {path}: tensor 'W' gives its external data the length -5, not a byte count; export it again"
    (tmp_path / "w.bin").unlink()
    os.mkfifo(tmp_path / "w.bin")  # the weights file is a pipe: refused before it is opened
    assert _message(lambda: read_onnx(path)) == (
        f"ONNX file {path}: external data file {(tmp_path / 'w.bin').resolve()} is a named pipe, not a regular "
        "file; pass the file itself")


def test_onnx_external_data_total_is_bounded_by_memory(tmp_path: Path, monkeypatch) -> None:
    import snnconvert.ingest.onnx as onnx_ingest

    path = _onnx_with_external(tmp_path, {}, bytes(128 * 128 * 4), 128, 128)  # 64 KiB of weights
    assert path.stat().st_size < 1000
    monkeypatch.setattr(onnx_ingest, "memory_cap", lambda: 1000)  # the .onnx file fits, its weights do not
    assert _message(lambda: read_onnx(path)) == \
        f"ONNX file {path}: its external data needs 65536 bytes of memory, more than the 1000 bytes available"


# --------------------------------------------------------------------- manifests and YAML


def test_manifest_list_and_string_caps() -> None:
    check_manifest_sizes({"notes": ["x"] * limits.MAX_MANIFEST_ITEMS, "kind": "snn"}, "m")
    assert _message(lambda: check_manifest_sizes({"notes": ["x"] * (limits.MAX_MANIFEST_ITEMS + 1)}, "m")) == (
        f"m: field 'notes' is a list of {limits.MAX_MANIFEST_ITEMS + 1} entries (at most "
        f"{limits.MAX_MANIFEST_ITEMS}); the artifact is damaged or not from snnconvert")
    long = "y" * (limits.MAX_MANIFEST_STR + 1)
    assert _message(lambda: check_manifest_sizes({"snn": {"info": [1, long]}}, "m")) == (
        f"m: field 'snn.info[1]' is a string of {len(long)} characters (at most {limits.MAX_MANIFEST_STR}); "
        "the artifact is damaged or not from snnconvert")
    wide = {"a": [[0] * 9_000 for _ in range(limits.MAX_MANIFEST_VALUES // 9_000 + 1)]}
    assert "holds more than" in _message(lambda: check_manifest_sizes(wide, "m"))


def test_shorten_never_formats_a_huge_value() -> None:
    huge = ["x" * 1_000_000] * 1_000_000  # 1e12 characters if formatted
    text = shorten(huge)
    assert len(text) == limits.MAX_SHOWN_CHARS and text.startswith("['xxx") and text.endswith("...")
    assert shorten({"a": (1,)}) == "{'a': (1,)}"
    assert shorten(10**100_000).startswith("<an integer of")


def test_yaml_aliases_of_long_strings_are_refused_with_bounded_memory(tmp_path: Path) -> None:
    """One 100,000-character string used 43 times expands to 4.3 M characters, past
    MAX_YAML_BYTES (4 MiB = 4,194,304), with only 50-odd nodes (far below MAX_YAML_NODES)."""
    recipe = tmp_path / "bomb.yaml"
    aliases = ", ".join(["*s"] * 42)
    recipe.write_text(f"model: lenet5\ndata: &s \"{'a' * 100_000}\"\nevaluate: {{reports: [{aliases}]}}\n")
    tracemalloc.start()
    try:
        message = _message(lambda: load_recipe(recipe))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert message == (f"{recipe}:3: expands to more than {limits.MAX_YAML_BYTES} characters (aliases of long values "
                       "repeated); a recipe is a few flat sections")
    assert peak < 16 << 20  # 4.3 M characters were never built


def test_yaml_long_string_without_aliases_still_loads(tmp_path: Path) -> None:
    recipe = tmp_path / "ok.yaml"
    recipe.write_text(f"model: lenet5\nout: \"{'o' * 200}\"\n")
    assert load_recipe(recipe).out == "o" * 200


# ------------------------------------------------------------------------------ write failures


def _tiny_artifact(features: int = 300) -> Artifact:
    torch.manual_seed(0)
    return Artifact("quantized", {}, {"float": nn.Linear(features, features)})  # 300x300 floats: 361 KB


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs (needs root and mount); skipped cleanly where it cannot be mounted."""
    mount = tmp_path / "mnt"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.decode(errors='replace').strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_full_disk_is_one_line_and_leaves_nothing(small_tmpfs: Path) -> None:
    keep = save_artifact(_tiny_artifact(20), small_tmpfs / "keep.snnc")  # ~3 KB: fits
    before = _listing(small_tmpfs)
    for target in (small_tmpfs / "big.snnc", small_tmpfs / "new" / "sub" / "big.snnc", keep):
        message = _message(lambda target=target: save_artifact(_tiny_artifact(), target))
        assert message == f"no space left on device: {target}"  # torch.save's own error was "unexpected pos"
        assert _listing(small_tmpfs) == before  # no temporary, no marker, no folder; keep.snnc intact
    with pytest.raises(WriteError) as err:
        write_atomically(small_tmpfs / "x.json", lambda handle: handle.write(bytes(300_000)))
    assert isinstance(err.value, OSError) and err.value.errno == 28 and _listing(small_tmpfs) == before


def test_read_only_mount_is_one_line_and_leaves_nothing(small_tmpfs: Path) -> None:
    (small_tmpfs / "old.txt").write_text("x")
    done = subprocess.run(["mount", "-o", "remount,ro", str(small_tmpfs)], capture_output=True)
    if done.returncode != 0:
        pytest.skip("cannot remount read-only")
    before = _listing(small_tmpfs)
    target = small_tmpfs / "a.snnc"
    assert _message(lambda: save_artifact(_tiny_artifact(4), target)) == f"read-only file system: {target}"
    assert _message(lambda: reserve_name([target])) == f"read-only file system: {target}"
    deeper = small_tmpfs / "run" / "a.snnc"
    assert _message(lambda: write_atomically(deeper, lambda h: h.write(b"1"))) == f"read-only file system: {deeper}"
    assert _listing(small_tmpfs) == before


def test_parent_that_is_a_file_and_odd_targets(tmp_path: Path) -> None:
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    before = _listing(tmp_path)
    for target in (blocker / "a.snnc", blocker / "sub" / "a.snnc"):
        assert _message(lambda target=target: save_artifact(_tiny_artifact(4), target)) == \
            f"not a directory: {blocker}"
        assert _message(lambda target=target: reserve_name([target])) == f"not a directory: {blocker}"
    long_name = tmp_path / ("n" * 300 + ".snnc")
    assert _message(lambda: write_atomically(long_name, lambda h: h.write(b"1"))) == \
        f"file name too long: {shorten(str(long_name), 200)}"
    folder = tmp_path / "folder"
    folder.mkdir()
    before = _listing(tmp_path)
    assert _message(lambda: write_atomically(folder, lambda h: h.write(b"1"))) == f"is a directory: {folder}"
    assert _listing(tmp_path) == before


def test_long_target_names_get_short_temporary_names(tmp_path: Path) -> None:
    target = tmp_path / ("m" * 250 + ".json")  # 255 characters: the longest name a file may have
    seen = []
    write_atomically(target, lambda handle: seen.append(os.listdir(tmp_path)) or handle.write(b"{}"))
    assert target.read_bytes() == b"{}" and [len(n) < 255 for n in seen[0]] == [True]


def test_permission_denied(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root ignores folder permissions")
    folder = tmp_path / "locked"
    folder.mkdir(mode=0o500)
    target = folder / "a.snnc"
    assert _message(lambda: save_artifact(_tiny_artifact(4), target)) == f"permission denied: {target}"
    assert os.listdir(folder) == []


_WRITER = """
import signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # what snnconvert.cli.app.main does
import torch
from torch import nn
from snnconvert.artifact import Artifact, save_artifact
from snnconvert.errors import SnnConvertError
try:
    save_artifact(Artifact("quantized", {}, {"float": nn.Linear(200, 200)}), sys.argv[1])
except SnnConvertError as exc:
    sys.stderr.write(f"error: {exc}\\n")
    sys.exit(1)
"""


def _file_limit(limit: int):
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def test_rlimit_fsize_is_one_line_and_leaves_nothing(tmp_path: Path) -> None:
    """200x200 float weights are 160 KB, past a 64 KiB file size limit."""
    out = tmp_path / "run"
    out.mkdir()
    target = out / "a.snnc"
    done = subprocess.run([sys.executable, "-c", _WRITER, str(target)], capture_output=True, text=True,
                          timeout=120, cwd=ROOT, env=ENV, preexec_fn=_file_limit(64 << 10))
    assert done.returncode == 1, done.stderr
    assert done.stderr == f"error: file size limit exceeded: {target}\n"
    assert os.listdir(out) == []


@pytest.mark.slow
def test_cli_quantize_under_rlimit_fsize(tmp_path: Path) -> None:
    """The real command: SIGXFSZ is ignored by ``main``, the write fails with EFBIG, one line."""
    out = tmp_path / "run"
    out.mkdir()
    code = "import sys; sys.argv[0] = 'snnconvert'; from snnconvert.cli.app import main; main()"
    done = subprocess.run([sys.executable, "-c", code, "quantize", "lenet5", "--data", "digits", "--calib-limit",
                           "32", "--eval-limit", "0", "--out", str(out)], capture_output=True, text=True,
                          timeout=300, cwd=ROOT, env=ENV, preexec_fn=_file_limit(64 << 10))
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and re.fullmatch(
        rf"error: file size limit exceeded: {re.escape(str(out))}/quantized-8bit-[0-9-]+\.snnc", errors[0]), errors
    assert os.listdir(out) == []
