"""Tests of snnconvert.data: specs, splits, sampling, readers, loaders (data made in tmp_path)."""

from __future__ import annotations

import os
import pickle
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import snnconvert.data.loader as loader_module
from snnconvert.data import (
    DataSpec,
    InputSpec,
    load_split,
    make_loader,
    materialize,
    needs_holdout,
    parse_data_spec,
)
from snnconvert.data.digits import digits_arrays
from snnconvert.data.sampling import allocate, stratified_partition, stratified_sample
from snnconvert.errors import SnnConvertError

RGB4 = InputSpec(channels=3, size=(4, 4))


def write_folder(
    root: Path,
    counts: dict[str, int],
    size: tuple[int, int] = (4, 4),
    seed: int = 0,
    mode: str = "RGB",
) -> dict[str, np.ndarray]:
    """Write random PNGs ``root/<class>/<i>.png``; return {id relative to root: HWC pixels}."""
    rng = np.random.default_rng(seed)
    written = {}
    height, width = size
    shape = (height, width, 3) if mode == "RGB" else (height, width)
    for name, n in counts.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            pixels = rng.integers(0, 256, size=shape, dtype=np.uint8)
            Image.fromarray(pixels, mode).save(root / name / f"{i:03d}.png")
            written[f"{name}/{i:03d}.png"] = pixels
    return written


def class_counts(split, key=None) -> Counter:
    labels = [int(split.dataset[i][1]) for i in range(len(split.dataset))]
    return Counter(labels)


# --- specs -------------------------------------------------------------------------------------


def test_parse_valid_specs(tmp_path: Path) -> None:
    assert parse_data_spec("digits") == DataSpec("digits", None, "digits")
    spec = parse_data_spec(f"imagefolder:{tmp_path}")
    assert (spec.kind, spec.path, spec.text) == ("imagefolder", tmp_path, f"imagefolder:{tmp_path}")
    assert parse_data_spec("CIFAR10:/data/c").kind == "cifar10"
    assert parse_data_spec("imagenet:/a:b").path == Path("/a:b")  # only the first colon splits
    assert parse_data_spec("cifar10:~/x").path == Path.home() / "x"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        ("mnist", "imagefolder:PATH"),
        ("foo:bar", "valid kinds"),
        ("imagefolder:", "no path"),
        ("imagefolder:   ", "no path"),
        ("digits:/x", "takes no path"),
    ],
)
def test_parse_invalid_specs(text: str, fragment: str) -> None:
    with pytest.raises(SnnConvertError, match=fragment) as info:
        parse_data_spec(text)
    assert "\n" not in str(info.value)


def test_bare_folder_gets_a_hint(tmp_path: Path) -> None:
    with pytest.raises(SnnConvertError, match=f"imagefolder:{tmp_path}"):
        parse_data_spec(str(tmp_path))


# --- sampling ----------------------------------------------------------------------------------


def test_allocate_is_proportional_within_one() -> None:
    rng = np.random.default_rng(1)
    for _ in range(200):
        counts = rng.integers(0, 50, size=rng.integers(1, 12))
        total = int(counts.sum())
        n = int(rng.integers(0, total + 1))
        shares = allocate(counts, n, np.random.default_rng(0))
        assert shares.sum() == n
        assert np.all(shares <= counts)
        if total:
            assert np.all(np.abs(shares - counts * n / total) < 1)


def test_stratified_sample_properties() -> None:
    labels = np.repeat(np.arange(3), [50, 30, 20])  # class-sorted, like a folder
    sample = stratified_sample(labels, 10, seed=0)
    assert np.bincount(labels[sample]).tolist() == [5, 3, 2]
    assert len(set(sample.tolist())) == 10
    assert not np.array_equal(sample, np.arange(10))
    assert np.array_equal(sample, stratified_sample(labels, 10, seed=0))
    assert not np.array_equal(sample, stratified_sample(labels, 10, seed=1))


def test_stratified_partition_covers_pool() -> None:
    labels = np.repeat(np.arange(4), [10, 7, 5, 3])
    part, rest = stratified_partition(labels, 0.3, seed=3)
    assert len(part) == round(0.3 * 25)
    assert sorted(np.concatenate([part, rest]).tolist()) == list(range(25))
    assert np.array_equal(part, stratified_partition(labels, 0.3, seed=3)[0])


# --- imagefolder: limit, holdout, natural splits -----------------------------------------------


def test_limit_is_stratified_seeded_and_not_a_prefix(tmp_path: Path) -> None:
    write_folder(tmp_path, {"a": 30, "b": 20, "c": 10})
    spec = f"imagefolder:{tmp_path}"
    split = load_split(spec, "eval", RGB4, limit=9, seed=0)
    counts = class_counts(split)
    for label, size in enumerate([30, 20, 10]):
        assert abs(counts[label] - 9 * size / 60) < 1
    assert len(split.sample_ids) == 9 and "9 of 60 images (stratified, seed 0)" in split.description
    all_ids = load_split(spec, "eval", RGB4).sample_ids
    assert split.sample_ids != all_ids[:9]
    again = load_split(spec, "eval", RGB4, limit=9, seed=0)
    other = load_split(spec, "eval", RGB4, limit=9, seed=1)
    assert again.sample_ids == split.sample_ids and again.fingerprint() == split.fingerprint()
    assert set(other.sample_ids) != set(split.sample_ids)
    assert other.fingerprint() != split.fingerprint()


def test_limit_larger_than_pool_and_invalid_limit(tmp_path: Path) -> None:
    write_folder(tmp_path, {"a": 3, "b": 2})
    split = load_split(f"imagefolder:{tmp_path}", "eval", RGB4, limit=100)
    assert len(split) == 5 and "exceeds the pool" in split.description
    for bad in (0, -3):
        with pytest.raises(SnnConvertError, match="limit"):
            load_split(f"imagefolder:{tmp_path}", "eval", RGB4, limit=bad)


def test_single_pool_calib_and_holdout_eval_are_disjoint(tmp_path: Path) -> None:
    write_folder(tmp_path, {"a": 12, "b": 8, "c": 5})
    spec = f"imagefolder:{tmp_path}"
    calib = load_split(spec, "calib", RGB4, seed=4, calib_split=0.2)
    held = load_split(spec, "eval", RGB4, seed=4, calib_split=0.2, holdout=True)
    everything = load_split(spec, "eval", RGB4, seed=4, calib_split=0.2)
    assert len(calib) == 5
    assert not set(calib.sample_ids) & set(held.sample_ids)
    assert sorted(calib.sample_ids + held.sample_ids) == sorted(everything.sample_ids)
    assert len(everything) == 25
    assert class_counts(calib) == Counter({0: 2, 1: 2, 2: 1})  # 2.4, 1.6, 1.0
    assert needs_holdout(spec, spec)
    # the training role draws the same fraction, so it never overlaps the held-out images
    train = load_split(spec, "train", RGB4, seed=4, calib_split=0.2)
    assert set(train.sample_ids) == set(calib.sample_ids)


def test_calib_split_bounds_and_nothing_left(tmp_path: Path) -> None:
    write_folder(tmp_path, {"a": 4, "b": 4})
    spec = f"imagefolder:{tmp_path}"
    assert len(load_split(spec, "calib", RGB4, calib_split=1.0)) == 8
    with pytest.raises(SnnConvertError, match="nothing left to evaluate"):
        load_split(spec, "eval", RGB4, calib_split=1.0, holdout=True)
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(SnnConvertError, match="calib_split"):
            load_split(spec, "calib", RGB4, calib_split=bad)


@pytest.mark.parametrize("eval_name", ["val", "test"])
def test_natural_split(tmp_path: Path, eval_name: str) -> None:
    write_folder(tmp_path / "train", {"cat": 4, "dog": 3})
    write_folder(tmp_path / eval_name, {"cat": 2, "dog": 2}, seed=1)
    spec = f"imagefolder:{tmp_path}"
    calib = load_split(spec, "calib", RGB4, holdout=True)
    evaluation = load_split(spec, "eval", RGB4, holdout=True)  # holdout: nothing to hold out
    assert sorted(calib.sample_ids) == [f"train/cat/{i:03d}.png" for i in range(4)] + [
        f"train/dog/{i:03d}.png" for i in range(3)
    ]
    assert evaluation.sample_ids == [
        f"{eval_name}/{c}/{i:03d}.png" for c in ("cat", "dog") for i in range(2)
    ]
    assert calib.class_names == evaluation.class_names == ["cat", "dog"]
    assert not needs_holdout(spec, spec)


def test_split_folders_are_not_taken_for_classes(tmp_path: Path) -> None:
    write_folder(tmp_path / "test", {"cat": 1})
    write_folder(tmp_path / "train-subset", {"cat": 1})
    with pytest.raises(SnnConvertError, match="split folders"):
        load_split(f"imagefolder:{tmp_path}", "eval", RGB4)


def test_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(SnnConvertError, match="not found"):
        load_split(f"imagefolder:{tmp_path / 'nope'}", "eval", RGB4)
    with pytest.raises(SnnConvertError, match="no class subfolders"):
        load_split(f"imagefolder:{tmp_path}", "eval", RGB4)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "notes.txt").write_text("x")
    with pytest.raises(SnnConvertError, match="no images"):
        load_split(f"imagefolder:{tmp_path}", "eval", RGB4)
    with pytest.raises(SnnConvertError, match="role"):
        load_split("digits", "test", RGB4)


# --- pixels and transforms ---------------------------------------------------------------------


def test_imagefolder_returns_exact_pixels_and_labels(tmp_path: Path) -> None:
    written = write_folder(tmp_path, {"b": 3, "a": 2}, size=(5, 7))
    (tmp_path / "a" / "upper.PNG").write_bytes((tmp_path / "a" / "000.png").read_bytes())
    written["a/upper.PNG"] = written["a/000.png"]
    (tmp_path / ".hidden").mkdir()
    split = load_split(f"imagefolder:{tmp_path}", "eval", InputSpec(3, (5, 7)))
    assert split.class_names == ["a", "b"]
    assert sorted(split.sample_ids) == sorted(written)
    for i, sample_id in enumerate(split.sample_ids):
        x, y = split.dataset[i]
        assert x.dtype == torch.float32 and x.shape == (3, 5, 7)
        expected = torch.from_numpy(written[sample_id].transpose(2, 0, 1).astype(np.float32)) / 255
        assert torch.equal(x, expected)
        assert y == split.class_names.index(sample_id.split("/")[0])


def test_gray_images_and_channel_conversion(tmp_path: Path) -> None:
    written = write_folder(tmp_path, {"a": 2}, size=(6, 6), mode="L")
    gray = load_split(f"imagefolder:{tmp_path}", "eval", InputSpec(1, (6, 6)))
    x, _ = gray.dataset[0]
    assert torch.equal(x[0] * 255, torch.from_numpy(written[gray.sample_ids[0]]).float())
    rgb = load_split(f"imagefolder:{tmp_path}", "eval", InputSpec(3, (6, 6)))
    x3, _ = rgb.dataset[0]
    assert x3.shape == (3, 6, 6) and torch.equal(x3[0], x3[1]) and torch.equal(x3[1], x3[2])
    assert torch.equal(x3[0], x[0])


def _bands(width: int, height: int, vertical: bool) -> Image.Image:
    """Red | green | blue bands across the long side; green spans 20%..80% of it."""
    long = width if not vertical else height
    band = np.zeros((long, 3), np.uint8)
    band[: long // 5, 0] = 255
    band[long // 5 : long - long // 5, 1] = 255
    band[long - long // 5 :, 2] = 255
    pixels = (
        np.broadcast_to(band[None], (height, long, 3))
        if not vertical
        else np.broadcast_to(band[:, None], (long, width, 3))
    )
    return Image.fromarray(np.ascontiguousarray(pixels))


@pytest.mark.parametrize("vertical", [False, True])
def test_resize_then_center_crop(tmp_path: Path, vertical: bool) -> None:
    (tmp_path / "c").mkdir()
    size = (20, 40) if vertical else (40, 20)  # PIL (W, H)
    _bands(*size, vertical=vertical).save(tmp_path / "c" / "img.png")
    spec = InputSpec(3, (10, 10), resize=10)
    x, _ = load_split(f"imagefolder:{tmp_path}", "eval", spec).dataset[0]
    assert x.shape == (3, 10, 10)
    # shorter side 20 -> 10, long side 40 -> 20, then the middle 10 are the green band
    assert torch.equal(x[1], torch.ones(10, 10)) and x[0].max() == 0 and x[2].max() == 0


def test_resize_without_resize_field_and_crop_padding(tmp_path: Path) -> None:
    (tmp_path / "c").mkdir()
    Image.new("RGB", (40, 20), (255, 255, 255)).save(tmp_path / "c" / "white.png")
    x, _ = load_split(f"imagefolder:{tmp_path}", "eval", InputSpec(3, (8, 8))).dataset[0]
    assert x.shape == (3, 8, 8) and torch.equal(x, torch.ones(3, 8, 8))
    padded = InputSpec(3, (24, 44), resize=20)  # 40x20 stays; the crop is larger: zero border
    x, _ = load_split(f"imagefolder:{tmp_path}", "eval", padded).dataset[0]
    assert x.shape == (3, 24, 44)
    assert x[:, :2].max() == 0 and x[:, -2:].max() == 0 and x[:, :, :2].max() == 0
    assert torch.equal(x[:, 2:22, 2:42], torch.ones(3, 20, 40))


@pytest.mark.parametrize("parallel", [False, True])
def test_corrupt_image_error_names_the_file(tmp_path: Path, monkeypatch, parallel: bool) -> None:
    if parallel:
        monkeypatch.setattr(loader_module, "_PARALLEL_MIN", 1)
        monkeypatch.setattr(loader_module, "_CHUNK", 2)
    write_folder(tmp_path, {"a": 2})
    (tmp_path / "a" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    whole = tmp_path / "b" / "cut.jpg"
    whole.parent.mkdir()
    Image.new("RGB", (64, 64), (9, 200, 30)).save(whole, quality=95)
    whole.write_bytes(whole.read_bytes()[:300])  # truncated mid-scan
    split = load_split(f"imagefolder:{tmp_path}", "eval", RGB4)
    for name in ("a/broken.jpg", "b/cut.jpg"):
        with pytest.raises(SnnConvertError, match=name.split("/")[1]) as info:
            split.dataset[split.sample_ids.index(name)]
        assert "\n" not in str(info.value)
    with pytest.raises(SnnConvertError, match="broken.jpg") as info:
        materialize(split)
    assert "\n" not in str(info.value)


def test_sixteen_bit_png_and_bad_input_spec(tmp_path: Path) -> None:
    (tmp_path / "c").mkdir()
    wide = np.array([[0, 257, 65535, 32896]], dtype=np.uint16)
    Image.fromarray(wide).save(tmp_path / "c" / "deep.png")
    x, _ = load_split(f"imagefolder:{tmp_path}", "eval", InputSpec(1, (1, 4))).dataset[0]
    assert (x[0, 0] * 255).round().tolist() == [0, 1, 255, 128]
    for bad in (InputSpec(2, (4, 4)), InputSpec(3, (0, 4)), InputSpec(3, (4, 4), resize=-1)):
        with pytest.raises(SnnConvertError, match="input spec"):
            load_split(f"imagefolder:{tmp_path}", "eval", bad)


# --- digits ------------------------------------------------------------------------------------


def test_digits_roles_pass_through() -> None:
    gray8 = InputSpec(1, (8, 8))
    x_test, y_test, ids_test = digits_arrays("test")
    evaluation = load_split("digits", "eval", gray8)
    assert evaluation.sample_ids == [f"digits:{i}" for i in ids_test]
    assert torch.equal(evaluation.dataset[5][0], x_test[5])
    assert evaluation.dataset[5][1] == int(y_test[5])
    calib = load_split("digits", "calib", gray8)
    _, _, ids_train = digits_arrays("train")
    assert sorted(calib.sample_ids, key=lambda s: int(s.split(":")[1])) == [
        f"digits:{i}" for i in ids_train
    ]
    assert not set(calib.sample_ids) & set(evaluation.sample_ids)
    assert calib.class_names == [str(i) for i in range(10)]
    assert not needs_holdout("digits", "digits")
    limited = load_split("digits", "calib", gray8, limit=100)
    counts = class_counts(limited)
    train_counts = np.bincount(digits_arrays("train")[1].numpy())
    assert all(abs(counts[c] - 100 * train_counts[c] / train_counts.sum()) < 1 for c in range(10))


def test_digits_adapt_to_model_input() -> None:
    x_test, _, _ = digits_arrays("test")
    split = load_split("digits", "eval", InputSpec(3, (32, 32), resize=36))
    x, _ = split.dataset[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    assert torch.equal(x[0], x[1]) and torch.equal(x[0], x[2])
    assert x.min() >= 0 and x.max() <= 1
    # a bilinear upsample preserves the mean brightness closely
    assert abs(float(x[0].mean()) - float(x_test[0].mean())) < 0.05
    assert "adapted to 3x32x32" in split.description


# --- cifar10 -----------------------------------------------------------------------------------


def write_cifar(root: Path, per_batch: int = 6, protocol: int = pickle.DEFAULT_PROTOCOL) -> dict:
    """Fake cifar-10-batches-py files shaped like the real ones; returns {name: (data, labels)}."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, size=per_batch).tolist()
        record = {
            b"batch_label": name.encode(),
            b"labels": labels,
            b"data": data,
            b"filenames": [f"{i}.png".encode() for i in range(per_batch)],
        }
        with open(root / name, "wb") as handle:
            pickle.dump(record, handle, protocol=protocol)
        batches[name] = (data, labels)
    names = [
        b"plane",
        b"car",
        b"bird",
        b"cat",
        b"deer",
        b"dog",
        b"frog",
        b"horse",
        b"ship",
        b"truck",
    ]
    with open(root / "batches.meta", "wb") as handle:
        pickle.dump({b"label_names": names, b"num_vis": 3072}, handle, protocol=protocol)
    return batches


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar10_exact_pixels(tmp_path: Path, protocol: int) -> None:
    batches = write_cifar(tmp_path / "cifar-10-batches-py", protocol=protocol)
    spec = f"cifar10:{tmp_path}"
    evaluation = load_split(spec, "eval", InputSpec(3, (32, 32)))
    assert evaluation.class_names[:2] == ["plane", "car"]
    data, labels = batches["test_batch"]
    assert evaluation.sample_ids == [f"cifar10:test_batch:{i}" for i in range(6)]
    for i in range(6):
        x, y = evaluation.dataset[i]
        assert torch.equal(x * 255, torch.from_numpy(data[i].reshape(3, 32, 32)).float())
        assert y == labels[i]
    calib = load_split(spec, "calib", InputSpec(3, (32, 32)))
    assert len(calib) == 30
    sample_id = calib.sample_ids[0]
    _, batch, index = sample_id.split(":")
    x, y = calib.dataset[0]
    assert torch.equal(
        x * 255, torch.from_numpy(batches[batch][0][int(index)]).float().view(3, 32, 32)
    )
    assert y == batches[batch][1][int(index)]


def test_cifar10_folder_itself_and_missing_files(tmp_path: Path) -> None:
    write_cifar(tmp_path)
    assert len(load_split(f"cifar10:{tmp_path}", "eval", InputSpec(3, (32, 32)))) == 6
    x, _ = load_split(f"cifar10:{tmp_path}", "eval", InputSpec(1, (16, 16))).dataset[0]
    assert x.shape == (1, 16, 16)
    (tmp_path / "data_batch_3").unlink()
    with pytest.raises(SnnConvertError, match="missing data_batch_3"):
        load_split(f"cifar10:{tmp_path}", "calib", InputSpec(3, (32, 32)))


class _Exploit:
    def __init__(self, sentinel: Path) -> None:
        self.sentinel = sentinel

    def __reduce__(self):
        return (os.system, (f"touch {self.sentinel}",))


@pytest.mark.parametrize("target", ["test_batch", "batches.meta"])
def test_malicious_cifar10_pickle_is_refused(tmp_path: Path, target: str) -> None:
    write_cifar(tmp_path)
    sentinel = tmp_path / "pwned"
    with open(tmp_path / target, "wb") as handle:
        pickle.dump({b"data": _Exploit(sentinel), b"labels": [0]}, handle)
    with pytest.raises(SnnConvertError, match="forbidden global .*system") as info:
        load_split(f"cifar10:{tmp_path}", "eval", InputSpec(3, (32, 32)))
    assert "\n" not in str(info.value)
    assert not sentinel.exists()


# --- loaders and materialize -------------------------------------------------------------------


def test_make_loader_order_and_shuffle(tmp_path: Path) -> None:
    write_folder(tmp_path, {"a": 5, "b": 5})
    split = load_split(f"imagefolder:{tmp_path}", "eval", RGB4)
    labels = [y for _, y in (split.dataset[i] for i in range(len(split)))]
    batches = list(make_loader(split, batch_size=4))
    assert [len(b[0]) for b in batches] == [4, 4, 2]
    assert torch.cat([b[1] for b in batches]).tolist() == labels
    first = torch.cat([b[0] for b in make_loader(split, 3, shuffle=True, seed=1)])
    again = torch.cat([b[0] for b in make_loader(split, 3, shuffle=True, seed=1)])
    other = torch.cat([b[0] for b in make_loader(split, 3, shuffle=True, seed=2)])
    assert torch.equal(first, again) and not torch.equal(first, other)


@pytest.mark.parametrize("parallel", [False, True])
def test_materialize_matches_lazy(tmp_path: Path, monkeypatch, parallel: bool) -> None:
    if parallel:  # exercise the worker path on a small folder
        monkeypatch.setattr(loader_module, "_PARALLEL_MIN", 1)
        monkeypatch.setattr(loader_module, "_CHUNK", 4)
    write_folder(tmp_path, {"a": 7, "b": 6}, size=(9, 11))
    split = load_split(
        f"imagefolder:{tmp_path}", "calib", InputSpec(3, (8, 8), resize=8), calib_split=1.0
    )
    memory = materialize(split)
    assert memory.sample_ids == split.sample_ids and memory.fingerprint() == split.fingerprint()
    assert memory.dataset.images.dtype == torch.uint8
    for i in range(len(split)):
        (x, y), (xm, ym) = split.dataset[i], memory.dataset[i]
        assert torch.equal(x, xm) and y == ym
    assert materialize(memory) is memory


def test_materialize_digits_and_cifar(tmp_path: Path) -> None:
    digits = load_split("digits", "eval", InputSpec(3, (12, 12)), limit=50)
    memory = materialize(digits)
    assert all(torch.equal(digits.dataset[i][0], memory.dataset[i][0]) for i in range(50))
    write_cifar(tmp_path)
    cifar = load_split(f"cifar10:{tmp_path}", "eval", InputSpec(3, (32, 32)))
    memory = materialize(cifar)
    assert all(torch.equal(cifar.dataset[i][0], memory.dataset[i][0]) for i in range(6))


# --- imagenet ----------------------------------------------------------------------------------


def test_imagenet_layouts(tmp_path: Path) -> None:
    write_folder(tmp_path / "val", {"n01": 5, "n02": 5})
    spec = f"imagenet:{tmp_path}"
    calib = load_split(spec, "calib", RGB4, calib_split=0.4)  # no train/: a fraction of val
    held = load_split(spec, "eval", RGB4, calib_split=0.4, holdout=True)
    assert len(calib) == 4 and len(held) == 6
    assert not set(calib.sample_ids) & set(held.sample_ids)
    assert all(s.startswith("val/") for s in calib.sample_ids)
    assert needs_holdout(spec, spec) and needs_holdout(f"imagefolder:{tmp_path / 'val'}", spec)
    write_folder(tmp_path / "train", {"n01": 2, "n02": 2})
    assert all(s.startswith("train/") for s in load_split(spec, "calib", RGB4).sample_ids)
    assert len(load_split(spec, "eval", RGB4)) == 10
    assert not needs_holdout(spec, spec)
    only_train = tmp_path / "other"
    write_folder(only_train / "train", {"n01": 1})
    with pytest.raises(SnnConvertError, match="no val/"):
        load_split(f"imagenet:{only_train}", "eval", RGB4)


# --- the real shared data ----------------------------------------------------------------------


def shared_data() -> Path:
    env = os.environ.get("SNNCONVERT_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.mark.shared_data
def test_shared_cifar10_test_folder() -> None:
    folder = shared_data() / "cifar10" / "test"
    if not folder.is_dir():
        pytest.skip(f"shared CIFAR-10 test folder not found at {folder}")
    split = load_split(f"imagefolder:{folder}", "eval", InputSpec(3, (32, 32)), limit=200)
    assert split.class_names[0] == "airplane" and len(split.class_names) == 10
    assert class_counts(split) == Counter({c: 20 for c in range(10)})
    memory = materialize(split)
    xs = torch.stack([memory.dataset[i][0] for i in range(len(memory))])
    assert xs.shape == (200, 3, 32, 32) and xs.min() >= 0 and xs.max() <= 1
    assert torch.equal(xs[17], split.dataset[17][0])
