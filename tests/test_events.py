"""Event-frame data (``events:PATH``) and the multi-level input encoding of M-LIF §5.2.2."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from snnconvert.codings import ConversionInputs, get_coding
from snnconvert.data import InputSpec, load_split, make_loader, materialize, parse_data_spec
from snnconvert.data.events import multilevel_frames
from snnconvert.errors import SnnConvertError
from snnconvert.graph import prepare
from snnconvert.ingest import load_model
from snnconvert.methods.mlif.coding import MLIFConfig

# Eight binary frames of a 1x1x3 sensor (T_F, C, H, W); columns are the pixels a, b, c.
# A value > 0 is one event: the 3 in pixel c's first frame is a count frame, still one event.
PATTERN = np.array(
    [
        # a  b  c
        [1, 0, 3],
        [0, 0, 1],
        [0, 0, 0],
        [0, 0, 0],
        [1, 1, 0],
        [1, 1, 0],
        [1, 1, 0],
        [1, 0, 1],
    ],
    dtype=np.uint8,
).reshape(8, 1, 1, 3)
# S = 3: groups of 4 frames. Counts a: 1, 4 | b: 0, 3 | c: 2, 1 -> levels 2^floor(log2 c):
EXPECTED_S3 = [[[[1.0, 0.0, 2.0]]], [[[4.0, 2.0, 1.0]]]]
# S = 2: groups of 2 frames. Counts a: 1,0,2,2 | b: 0,0,2,1 | c: 2,0,0,1 (levels = counts here)
EXPECTED_S2 = [[1.0, 0.0, 2.0], [0.0, 0.0, 0.0], [2.0, 2.0, 0.0], [2.0, 1.0, 1.0]]
# S = 4: one group of 8 frames. Counts a: 5, b: 3, c: 3 -> 4, 2, 2
EXPECTED_S4 = [4.0, 2.0, 2.0]
SPEC = InputSpec(channels=1, size=(1, 3))


def test_multilevel_encoding_hand_checked() -> None:
    frames = torch.from_numpy(PATTERN)
    s3 = multilevel_frames(frames, 3)
    assert s3.shape == (2, 1, 1, 3) and s3.dtype == torch.float32
    assert s3.tolist() == EXPECTED_S3
    assert multilevel_frames(frames, 2).view(4, 3).tolist() == EXPECTED_S2
    assert multilevel_frames(frames, 4).view(3).tolist() == EXPECTED_S4
    binary = (frames > 0).float()
    assert torch.equal(multilevel_frames(frames, 1), binary)  # S = 1: the binary frames themselves


def test_every_count_maps_to_one_lane() -> None:
    # counts 0..8 over 8 frames (S = 4): 0,1,2,2,4,4,4,4,8
    frames = torch.zeros(8, 9)
    for count in range(9):
        frames[:count, count] = 1
    assert multilevel_frames(frames, 4)[0].tolist() == [0, 1, 2, 2, 4, 4, 4, 4, 8]


def test_frame_count_must_divide() -> None:
    with pytest.raises(SnnConvertError, match="cannot be grouped by 4") as info:
        multilevel_frames(torch.ones(6, 2), 3)
    assert "\n" not in str(info.value)


# --- the events:PATH data spec ------------------------------------------------------------------


def _write_pool(root: Path) -> None:
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir(parents=True)
    np.save(root / "a" / "s0.npy", PATTERN)
    torch.save(torch.from_numpy(PATTERN > 0), root / "a" / "s1.pt")  # bool tensor
    np.save(root / "b" / "s2.npy", PATTERN[:, 0].astype(np.float32))  # (T_F, H, W): one channel


def test_parse_events_specs(tmp_path: Path) -> None:
    spec = parse_data_spec(f"events,S=3:{tmp_path}")
    assert (spec.kind, spec.path, spec.options) == ("events", tmp_path, (("S", "3"),))
    assert parse_data_spec(f"EVENTS,s=2:{tmp_path}").options == (("S", "2"),)
    assert parse_data_spec(f"events:{tmp_path}").options == ()


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("events,S=0:/x", "S=0 is not possible"),
        ("events,S=abc:/x", "S=abc is not possible"),
        ("events,S=17:/x", "S=17 is not possible"),
        ("events,Q=2:/x", "bad option 'Q=2'"),
        ("events,S:/x", "bad option 'S'"),
        ("imagefolder,S=3:/x", "takes no ,KEY=VALUE options"),
        ("digits,S=3", "takes no ,KEY=VALUE options"),
        ("events,S=3:", "no path"),
    ],
)
def test_invalid_events_specs(text: str, fragment: str) -> None:
    with pytest.raises(SnnConvertError, match=fragment) as info:
        parse_data_spec(text)
    assert "\n" not in str(info.value)


def test_events_folder_yields_multilevel_frames(tmp_path: Path) -> None:
    _write_pool(tmp_path)
    split = load_split(f"events,S=3:{tmp_path}", "eval", SPEC)  # shared pool: eval reads all of it
    assert split.sample_ids == ["a/s0.npy", "a/s1.pt", "b/s2.npy"]
    assert split.class_names == ["a", "b"]
    assert "S=3" in split.description
    for i, label in enumerate([0, 0, 1]):
        x, y = split.dataset[i]
        assert y == label
        assert x.tolist() == EXPECTED_S3
    fast = materialize(split)
    assert torch.equal(fast.dataset[2][0], split.dataset[2][0])
    images, labels = next(iter(make_loader(fast, 2)))
    assert images.shape == (2, 2, 1, 1, 3) and labels.tolist() == [0, 0]
    binary = load_split(f"events:{tmp_path}", "eval", SPEC)  # S = 1: the 8 binary frames
    assert torch.equal(binary.dataset[0][0], torch.from_numpy(PATTERN > 0).float())


def test_events_natural_split(tmp_path: Path) -> None:
    _write_pool(tmp_path / "train")
    (tmp_path / "test" / "a").mkdir(parents=True)
    np.save(tmp_path / "test" / "a" / "t0.npy", PATTERN)
    calib = load_split(f"events,S=2:{tmp_path}", "calib", SPEC)
    evaluation = load_split(f"events,S=2:{tmp_path}", "eval", SPEC)
    assert sorted(calib.sample_ids) == ["train/a/s0.npy", "train/a/s1.pt", "train/b/s2.npy"]
    assert evaluation.sample_ids == ["test/a/t0.npy"]
    assert evaluation.dataset[0][0].view(4, 3).tolist() == EXPECTED_S2


class _Payload:
    pass


@pytest.mark.parametrize(
    ("writer", "fragment"),
    [
        (lambda p: np.save(p.with_suffix(".npy"), np.array([{"x": 1}], dtype=object), allow_pickle=True),
         "cannot read event frames"),
        (lambda p: torch.save({"frames": torch.zeros(8, 1, 1, 3)}, p.with_suffix(".pt")),
         "does not hold a real tensor"),
        (lambda p: torch.save(_Payload(), p.with_suffix(".pt")), "cannot read event frames"),
        (lambda p: np.save(p.with_suffix(".npy"), np.zeros((8, 1, 2, 3), np.uint8)),
         r"expected \(T_F, 1, 1, 3\)"),
        (lambda p: np.save(p.with_suffix(".npy"), np.zeros((6, 1, 1, 3), np.uint8)),
         "cannot be grouped by 4"),
    ],
)
def test_bad_event_files_raise_one_line(tmp_path: Path, writer, fragment: str) -> None:
    (tmp_path / "a").mkdir()
    writer(tmp_path / "a" / "bad")
    split = load_split(f"events,S=3:{tmp_path}", "eval", SPEC)
    with pytest.raises(SnnConvertError, match=fragment) as info:
        split.dataset[0]
    assert "\n" not in str(info.value)


def test_empty_events_folder(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "note.txt").write_text("no frames here")
    with pytest.raises(SnnConvertError, match="no event frames"):
        load_split(f"events:{tmp_path}", "eval", SPEC)


# --- end to end: multi-level event frames into an M-LIF network -----------------------------------


def test_mlif_network_runs_on_multilevel_event_frames(tmp_path: Path) -> None:
    lm = load_model("lenet5")  # 1x8x8 input
    gen = np.random.default_rng(0)
    for cls in ("0", "1"):
        (tmp_path / cls).mkdir()
        for i in range(4):
            np.save(tmp_path / cls / f"{i}.npy", (gen.random((8, 1, 8, 8)) < 0.3).astype(np.uint8))
    split = load_split(f"events,S=3:{tmp_path}", "eval", lm.input_spec)
    loader = make_loader(split, 4)
    frames, _ = next(iter(loader))
    assert frames.shape == (4, 2, 1, 8, 8)  # Q_F = 8 / 2^(3-1) = 2
    assert set(frames.unique().tolist()) <= {0.0, 1.0, 2.0, 4.0}
    float_gm = prepare(lm.module, lm.input_spec)
    coding = get_coding("mlif")
    # calibration on the event frames themselves (each frame counts as one image for the ANN)
    snn = coding.convert(ConversionInputs(float_gm, None, lm.input_spec, loader), MLIFConfig(S=3, T=2))
    with torch.no_grad(), snn.recording():
        logits = snn(frames)
    assert logits.shape == (4, 10) and bool(torch.isfinite(logits).all())
    assert sum(s.events for s in snn.spike_stats()) > 0
