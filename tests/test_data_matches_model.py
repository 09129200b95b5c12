"""Data checked against the model: class names, count and order, image geometry and bit depth,
symlink loops in data folders, and weights that cannot be a trained model's (issue 29, item 6)."""

from __future__ import annotations

import contextlib
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import SHARED_DATA
from PIL import Image

from snnconvert.data import InputSpec, load_split
from snnconvert.data.classes import ClassCheck, match_classes, numeric_order_differs
from snnconvert.errors import SnnConvertError
from snnconvert.finetune import FinetuneConfig
from snnconvert.finetune.splits import training_data
from snnconvert.models import lenet5
from snnconvert.pipeline import ModelInfo, eval_split, quantize, quantized_manifest
from snnconvert.quantize import QuantizeConfig

GRAY8 = InputSpec(1, (8, 8))


def _folder(root: Path, classes: list[str], per_class: int = 2, mode: str = "L", size: int = 8) -> str:
    """``root/<class>/<i>.png`` of random ``mode`` images; returns the imagefolder spec."""
    rng = np.random.default_rng(0)
    for name in classes:
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            shape = (size, size) if mode == "L" else (size, size, 3)
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(root / name / f"{i}.png")
    return f"imagefolder:{root}"


def _labels(split) -> list[int]:
    return [int(split.dataset[i][1]) for i in range(len(split))]


@pytest.fixture(scope="module")
def q_lenet():
    """lenet5 quantized on its own digits: the artifact records the class names 0..9."""
    return quantize("lenet5", config=QuantizeConfig(calib_limit=64), eval_limit=0)


def test_quantize_records_the_class_names_and_the_manifest_keeps_them(q_lenet) -> None:
    assert q_lenet.info.class_names == [str(i) for i in range(10)]
    stored = quantized_manifest(q_lenet)["model"]
    assert stored["class_names"] == [str(i) for i in range(10)]
    assert ModelInfo.from_dict(stored).class_names == [str(i) for i in range(10)]


def test_an_old_manifest_without_class_names_still_loads_and_evaluates(q_lenet) -> None:
    old = {k: v for k, v in quantized_manifest(q_lenet)["model"].items() if k != "class_names"}
    info = ModelInfo.from_dict(old)
    assert info.class_names is None
    check = info.class_check()
    assert (check.names, check.outputs) == (None, 10)
    import dataclasses

    q_old = dataclasses.replace(q_lenet, info=info)
    split = eval_split(q_old, None, limit=20)  # digits 0..9: 10 folders for 10 outputs, nothing to say
    assert len(split) == 20 and "class" not in split.description


@pytest.mark.parametrize("bad, message", [
    (["0"] * 10, "names a class twice"),
    ([str(i) for i in range(9)], "lists 9 names for a model of 10 classes"),
    ("0123456789", "must be a list"),
    ([1] * 10, "non-empty strings"),
])
def test_crafted_class_names_in_a_manifest_are_one_line_errors(q_lenet, bad, message: str) -> None:
    stored = {**quantized_manifest(q_lenet)["model"], "class_names": bad}
    with pytest.raises(SnnConvertError, match=message):
        ModelInfo.from_dict(stored)


def test_class_folders_3_4_5_are_refused_or_labelled_by_name(q_lenet, tmp_path: Path) -> None:
    data = _folder(tmp_path, ["3", "4", "5"])
    with pytest.raises(SnnConvertError, match=r"has 3 classes \(3, 4, 5\) but lenet5 has 10 .*missing 0, 1, 2, 6"):
        eval_split(q_lenet, data, limit=None)
    with pytest.raises(SnnConvertError, match=r"has 3 classes \(3, 4, 5\) but lenet5 has 10"):
        quantize("lenet5", data=data, config=QuantizeConfig(calib_limit=8), eval_limit=0)
    split = eval_split(q_lenet, data, limit=None, allow_class_mismatch=True)
    assert _labels(split) == [3, 3, 4, 4, 5, 5]  # by name, not 0, 1, 2
    assert "3 of the model's 10 classes, labelled by name (--allow-class-mismatch)" in split.description


def test_twelve_folders_for_a_ten_class_model_are_refused(q_lenet, tmp_path: Path) -> None:
    names = [str(i) for i in range(12)]
    data = _folder(tmp_path, names, per_class=1)
    with pytest.raises(SnnConvertError, match=r"has 12 classes .* but lenet5 has 10 .*not the model's: 10, 11"):
        eval_split(q_lenet, data, limit=None)
    # a model whose class names are unknown (no default data): the count alone
    model = lenet5(10).eval()
    with pytest.raises(SnnConvertError, match=r"has 12 classes .* but LeNet5 outputs 10; give data"):
        quantize(model, data=data, input_spec=GRAY8, config=QuantizeConfig(calib_limit=8), eval_limit=0)
    split = eval_split(q_lenet, data, limit=None, allow_class_mismatch=True)
    assert "labels follow the folder order (--allow-class-mismatch)" in split.description


def test_numbered_folders_1_to_10_are_not_labelled_in_text_order_silently(tmp_path: Path) -> None:
    names = [str(i) for i in range(1, 11)]
    data = _folder(tmp_path, names, per_class=1)
    model = lenet5(10).eval()
    with pytest.raises(SnnConvertError, match=r"text order \(1, 10, 2, 3, \.\.\..*numeric order \(1, 2, 3, 4.*"
                                              r"zero-pad the folder names \(e\.g\. 01\)"):
        quantize(model, data=data, input_spec=GRAY8, config=QuantizeConfig(calib_limit=8), eval_limit=0)
    q = quantize(model, data=data, input_spec=GRAY8, config=QuantizeConfig(calib_limit=8), eval_limit=0,
                 allow_class_mismatch=True)
    assert q.info.class_names == sorted(names)  # text order, as used, is what the artifact records
    # zero-padded names: both orders agree, nothing to decide
    assert not numeric_order_differs([f"{i:02d}" for i in range(1, 11)])
    # a model that stored numeric order: the folder is labelled by name ("10" -> 9), with a note
    check = ClassCheck("m", tuple(names), 10)
    remap, order, note = match_classes(sorted(names), check, "here")
    assert order == names and note == "labels follow the model's class order (by name)"
    assert remap.tolist() == [0, 9, 1, 2, 3, 4, 5, 6, 7, 8]
    split = load_split(data, "eval", GRAY8, classes=check)
    assert split.sample_ids[1] == "10/0.png" and _labels(split) == [0, 9, 1, 2, 3, 4, 5, 6, 7, 8]


def test_colour_photos_are_refused_by_the_gray_digits_model(q_lenet, tmp_path: Path) -> None:
    data = _folder(tmp_path, [str(i) for i in range(10)], per_class=1, mode="RGB", size=32)
    with pytest.raises(SnnConvertError, match=r"has 3x32x32 images but lenet5 takes 1x8x8 input"):
        eval_split(q_lenet, data, limit=None)
    with pytest.raises(SnnConvertError, match=r"has 3x32x32 images but lenet5 takes 1x8x8 input"):
        training_data(q_lenet, data, FinetuneConfig())
    with pytest.raises(SnnConvertError, match=r"has 3x32x32 images but lenet5 takes 1x8x8 input"):
        quantize("lenet5", data=data, config=QuantizeConfig(calib_limit=8), eval_limit=0)


@pytest.mark.skipif(not (SHARED_DATA / "cifar10" / "test").is_dir(), reason="needs ../shared/data/cifar10")
def test_real_cifar_photos_are_refused_by_the_digits_lenet(q_lenet) -> None:
    with pytest.raises(SnnConvertError, match=r"has 3x32x32 images but lenet5 takes 1x8x8 input"):
        eval_split(q_lenet, f"imagefolder:{SHARED_DATA / 'cifar10' / 'test'}", limit=10)


def test_gray_images_of_another_size_are_resized_with_a_note(tmp_path: Path) -> None:
    data = _folder(tmp_path, ["a", "b"], per_class=1, size=16)
    split = load_split(data, "eval", GRAY8)
    assert "images of 16x16 resized to the model's 8x8" in split.description
    assert tuple(split.dataset[0][0].shape) == (1, 8, 8)


def test_sixteen_bit_images_are_scaled_with_a_note(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    wide = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000)  # 0 .. 63000
    Image.fromarray(wide).save(tmp_path / "a" / "x.png")
    assert Image.open(tmp_path / "a" / "x.png").mode == "I;16"
    split = load_split(f"imagefolder:{tmp_path}", "eval", GRAY8)
    assert "16-bit images scaled to the model's 8-bit input (1 of 1 checked)" in split.description
    x = split.dataset[0][0][0]
    expected = torch.from_numpy(((wide.astype(np.int64) + 128) // 257).astype(np.float32)) / 255.0
    assert torch.allclose(x, expected, atol=1e-7)  # 63000 -> 245/255, 1000 -> 4/255


def test_float_and_32_bit_tiffs_are_refused(tmp_path: Path) -> None:
    (tmp_path / "f" / "a").mkdir(parents=True)
    Image.fromarray(np.full((8, 8), 0.5, dtype=np.float32)).save(tmp_path / "f" / "a" / "x.tif")
    with pytest.raises(SnnConvertError, match=r"x\.tif: 32-bit float pixels"):
        load_split(f"imagefolder:{tmp_path / 'f'}", "eval", GRAY8)
    (tmp_path / "i" / "a").mkdir(parents=True)
    Image.fromarray(np.full((8, 8), 100_000, dtype=np.int32)).save(tmp_path / "i" / "a" / "x.tif")
    split = load_split(f"imagefolder:{tmp_path / 'i'}", "eval", GRAY8)
    with pytest.raises(SnnConvertError, match=r"x\.tif: 32-bit integer pixels \(100000\.\.100000\) beyond 16 bits"):
        split.dataset[0]


@contextlib.contextmanager
def _deadline(seconds: int):
    """Raise TimeoutError in this (main) thread after ``seconds``: a regression hangs no test run."""
    def expire(signum, frame):
        raise TimeoutError(f"still scanning after {seconds} s: the symlink loop was followed")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("target", ["self", "root", "parent"])
def test_a_symlink_loop_in_a_class_folder_is_an_error_not_a_hang(tmp_path: Path, target: str) -> None:
    data = _folder(tmp_path / "data", ["a", "b"], per_class=1)
    folder = tmp_path / "data" / "a"
    if target == "parent":
        (folder / "deeper").mkdir()
        (folder / "deeper" / "up").symlink_to(folder, target_is_directory=True)
        link, back = folder / "deeper" / "up", folder
    else:
        back = folder if target == "self" else tmp_path / "data"
        (folder / "loop").symlink_to(back, target_is_directory=True)
        link = folder / "loop" if target == "self" else folder / "loop" / "a"  # data/a/loop/a is data/a again
        back = folder
    with _deadline(30), pytest.raises(SnnConvertError) as info:
        load_split(data, "eval", GRAY8)
    assert str(info.value) == f"symlink loop in the data: {link} leads back to {back}; remove that link"


def test_a_folder_linked_twice_is_read_once(tmp_path: Path) -> None:
    _folder(tmp_path, ["a"], per_class=2)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x").symlink_to(tmp_path / "a", target_is_directory=True)
    (tmp_path / "b" / "y").symlink_to(tmp_path / "a", target_is_directory=True)
    split = load_split(f"imagefolder:{tmp_path}", "eval", GRAY8)
    assert split.sample_ids == ["a/0.png", "a/1.png", "b/x/0.png", "b/x/1.png"]


def test_finetune_refuses_other_classes_unless_allowed(q_lenet, tmp_path: Path) -> None:
    data = _folder(tmp_path, ["cat", "dog"], per_class=2)
    with pytest.raises(SnnConvertError, match=r"has 2 classes \(cat, dog\) but lenet5 has 10"):
        training_data(q_lenet, data, FinetuneConfig())
    train = training_data(q_lenet, data, FinetuneConfig(allow_class_mismatch=True))
    assert sorted(_labels(train.split)) == [0, 0, 1, 1]


def test_class_names_from_files_cannot_forge_markup(tmp_path: Path) -> None:
    check = ClassCheck("m", ("a", "b"), 2)
    with pytest.raises(SnnConvertError) as info:
        match_classes(["[red]x", "b"], check, "here")
    assert "\\[red]x" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("damage, message", [("zero", r"conv1\.weight is all zeros"),
                                             ("nan", r"conv1\.weight contains NaN values")])
def test_all_zero_or_nan_weights_are_refused(damage: str, message: str) -> None:
    model = lenet5(10).eval()
    with torch.no_grad():
        model.conv1.weight.fill_(0.0 if damage == "zero" else float("nan"))
    with pytest.raises(SnnConvertError, match=message):
        quantize(model, data="digits", input_spec=GRAY8, config=QuantizeConfig(calib_limit=8), eval_limit=0)


def test_gray_data_a_colour_model_was_calibrated_on_can_be_evaluated(tmp_path: Path) -> None:
    from snnconvert.ingest.types import LoadedModel
    from snnconvert.models.lenet import LeNet5

    rgb8 = InputSpec(3, (8, 8))
    loaded = LoadedModel(LeNet5(2, in_channels=3).eval(), "rgbnet", "file:rgbnet.pt", rgb8, 2)
    calib = _folder(tmp_path / "calib", ["a", "b"])
    with pytest.raises(SnnConvertError, match=r"has 1x8x8 images but rgbnet takes 3x8x8 input; .*resize_data"):
        quantize(loaded, data=calib, config=QuantizeConfig(calib_limit=4), eval_limit=0)
    q = quantize(loaded, data=calib, config=QuantizeConfig(calib_limit=4), eval_limit=0, resize_data=True)
    assert q.info.class_names == ["a", "b"]
    assert _labels(eval_split(q, _folder(tmp_path / "other", ["a", "b"], per_class=1), limit=None)) == [0, 1]
    colour = _folder(tmp_path / "colour", ["a", "b"], per_class=1, mode="RGB", size=2)
    with pytest.raises(SnnConvertError, match=r"has 3x2x2 images but rgbnet takes 3x8x8 input; .*calibrated on"):
        eval_split(q, colour, limit=None)
