"""Fuzz recipes: arbitrary text and random YAML structures give a Recipe or a one-line error."""

from __future__ import annotations

import yaml
from fuzzing import attempt, workdir
from hypothesis import given
from hypothesis import strategies as st

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
        attempt(lambda: load_recipe(path), folder, keep=("r.yaml",))


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

        attempt(load_and_validate, folder, keep=("r.yaml",))
