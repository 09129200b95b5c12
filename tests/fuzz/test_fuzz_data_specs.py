"""Fuzz data specs and coding options: a parsed value or a one-line error, never a traceback."""

from __future__ import annotations

from fuzzing import DATA, FLAGS, attempt, workdir
from hypothesis import given
from hypothesis import strategies as st

from snnconvert.cli.coding_options import coding_options
from snnconvert.codings import build_config, codings, get_coding
from snnconvert.data.specs import parse_data_spec

kinds = st.sampled_from(["digits", "imagefolder", "cifar10", "imagenet", "events", "EVENTS", "nope", ""])


@st.composite
def specs(draw) -> str:
    text = draw(kinds)
    for _ in range(draw(st.integers(0, 2))):
        text += "," + draw(st.sampled_from(["S", "s", "T", ""])) + draw(st.sampled_from(["=", ""])) \
            + draw(st.text(max_size=6))
    if draw(st.booleans()):
        text += ":" + draw(st.text(max_size=30))
    return text


@given(text=specs() | st.text(max_size=60) | st.builds(lambda kind, n: kind + ":" * (n % 2) + "x" * n, kinds,
                                                        st.integers(200, 100_000)))
def test_data_specs(text: str) -> None:
    with workdir() as folder:
        attempt(lambda: parse_data_spec(text), folder, category=FLAGS)


names = sorted({f for c in codings().values() for f in (o.name for o in c.options())} | {"nope"})
texts = st.sampled_from(["nan", "inf", "-1", "0", "1", "8", "100000", "1e30", "auto", "../../x", "1,2,3", "true",
                         "", "[]", "2.5"]) | st.text(max_size=12)


@given(coding=st.sampled_from(sorted(codings())), items=st.lists(st.tuples(st.sampled_from(names), texts), max_size=3))
def test_coding_options(coding: str, items: list[tuple[str, str]]) -> None:
    entry = get_coding(coding)
    with workdir() as folder:
        attempt(lambda: build_config(entry, **coding_options(entry, {}, [f"{k}={v}" for k, v in items])), folder,
                category=FLAGS)


@given(data=st.binary(max_size=300), suffix=st.sampled_from([".npy", ".pt"]),
       head=st.sampled_from([b"", b"\x93NUMPY\x01\x00", b"PK\x03\x04", b"\x80\x02"]))
def test_event_files_with_arbitrary_bytes(data: bytes, suffix: str, head: bytes) -> None:
    from snnconvert.data.events import load_event_frames

    with workdir() as folder:
        path = folder / f"e{suffix}"
        path.write_bytes(head + data)
        attempt(lambda: load_event_frames(path), folder, keep=(path.name,), category=DATA, inputs=[path])
