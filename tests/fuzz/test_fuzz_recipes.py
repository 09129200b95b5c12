"""Fuzz recipes: arbitrary text and random YAML structures give a Recipe or a one-line error."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from fuzzing import LARGE, MARKER, PAYLOADS, RECIPES, attempt, cli, workdir
from hypothesis import given
from hypothesis import strategies as st
from walk import label, replaced, strings

from snnconvert.recipe import load_recipe

scalars = (st.none() | st.booleans() | st.integers(-(10**12), 10**12) | st.floats(allow_nan=True)
           | st.text(max_size=20) | st.sampled_from(["lenet5", "digits", "sws", "rate", "auto", "all", "8"]))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=10)
sections = {
    "quantize": ["bits", "weight_bits", "method", "percentile", "calib_limit", "qat_epochs"],
    "convert": ["coding", "Tc", "Ts", "beta", "T", "S", "percentile", "bits_spike"],
    "evaluate": ["limit", "reports", "batch_size", "dtype", "data"],
    "finetune": ["data", "epochs", "lr", "batch_size"],
}


@st.composite
def recipes(draw) -> dict:
    recipe: dict = {"model": draw(st.sampled_from(["lenet5", "resnet20"]) | scalars)}
    for key in ("weights", "data", "calib_split", "num_classes", "out", "flavour"):
        if draw(st.booleans()):
            recipe[key] = draw(values)
    for name, keys in sections.items():
        if draw(st.booleans()):
            recipe[name] = draw(st.dictionaries(st.sampled_from(keys), values, max_size=4) | values)
    return recipe


@given(text=st.text(max_size=300))
def test_arbitrary_text_as_a_recipe(text: str) -> None:
    with workdir() as folder:
        path = folder / "r.yaml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        attempt(lambda: load_recipe(path), folder, keep=("r.yaml",), category=RECIPES, inputs=[path])


@given(recipe=recipes(), raw=st.binary(max_size=20), where=st.integers(0, 200))
def test_random_recipe_structures(recipe: dict, raw: bytes, where: int) -> None:
    text = yaml.safe_dump(recipe, sort_keys=False).encode()
    if raw:  # splice arbitrary bytes in some of the time (non-UTF-8, tags, anchors...)
        text = text[:where] + raw + text[where:]
    with workdir() as folder:
        path = folder / "r.yaml"
        path.write_bytes(text)

        def load_and_validate() -> None:
            loaded = load_recipe(path)
            loaded.validate()

        attempt(load_and_validate, folder, keep=("r.yaml",), category=RECIPES, inputs=[path])


# ------------------------------------------------------------------ a marker payload in every string

DEMO = yaml.safe_load((Path(__file__).resolve().parents[2] / "snnconvert" / "assets" / "demo.yaml").read_text())
FULL = {**DEMO, "weights": "random", "calib_split": 0.2, "num_classes": 10, "out": "runs",
        "quantize": {**DEMO["quantize"], "method": "percentile", "device": "cpu"},
        "evaluate": {**DEMO["evaluate"], "dtype": "float32", "data": "digits"},
        "finetune": {"data": "digits", "epochs": 1, "schedule": "cosine", "optimizer": "adam"}}
RECIPE_STRINGS = sorted(strings(FULL), key=label)


@pytest.mark.parametrize("n", range(len(PAYLOADS)))
@pytest.mark.parametrize("where", RECIPE_STRINGS, ids=[label(w) for w in RECIPE_STRINGS])
def test_payload_in_every_recipe_string(where, n: int) -> None:
    recipe = replaced(FULL, where, PAYLOADS[n])
    with workdir() as folder:
        path = folder / "r.yaml"
        path.write_text(yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")

        def load_and_validate() -> None:
            load_recipe(path).validate()

        attempt(load_and_validate, folder, keep=("r.yaml",), category=RECIPES, inputs=[path])


@pytest.mark.parametrize("where", ["model", "data", "quantize/method", "convert/coding"])
def test_payload_in_a_recipe_run(where: str) -> None:
    """The whole ``run`` command on recipes whose payload field is read before any work."""
    path_of = tuple(where.split("/"))
    for n in range(len(PAYLOADS)) if LARGE else (0, 3, 6):
        with workdir() as folder:
            path = folder / "r.yaml"
            path.write_text(yaml.safe_dump(replaced(DEMO, (path_of, "value"), PAYLOADS[n])), encoding="utf-8")
            os.chdir(folder)
            try:
                attempt(lambda: cli(["run", "r.yaml"]), folder, keep=("r.yaml",), category=RECIPES, inputs=[path],
                        expect="refuse")
            finally:
                os.chdir("/")


BOMBS = {
    "aliases of a long string": "a: &a '" + "x" * 100_000 + "'\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\n"
                                "c: &c [*b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c]\n"
                                "e: [*d, *d, *d, *d, *d, *d, *d, *d]\nmodel: lenet5\n",
    "merge-key bomb": "a: &a {" + ", ".join(f"k{i}: 'xxxxxxxx'" for i in range(200)) + "}\n"
                      + "".join(f"b{i}: {{<<: *a}}\n" for i in range(2000)) + "model: lenet5\n",
    "very long key": "model: lenet5\n" + "k" * 2_000_000 + ": 1\n",
    "many documents": "model: lenet5\n---\n" * 50_000,
    "deep flow nesting": "model: " + "{a: " * 5000 + "1" + "}" * 5000 + "\n",
    "python tag": f"model: !!python/object/apply:os.system ['touch {MARKER}']\n",
    "python name tag": "model: !!python/name:os.system\n",
    "binary tag bomb": "model: !!binary " + "A" * 3_000_000 + "\n",
}


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_recipe_bombs(name: str) -> None:
    with workdir() as folder:
        path = folder / "r.yaml"
        path.write_text(BOMBS[name], encoding="utf-8")
        attempt(lambda: load_recipe(path).validate(), folder, keep=("r.yaml",), category=RECIPES, inputs=[path],
                expect="refuse")
