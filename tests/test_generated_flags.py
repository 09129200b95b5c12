"""Command-line flags are generated from the configs: every config field has its flag (none
missing, none written by hand), methods' options included, and recipes read the same fields."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click
import pytest
import typer
import yaml

from snnconvert.cli.app import app
from snnconvert.cli.config_flags import config_flags, config_from_flags, read_flag
from snnconvert.cli.finetune_cmd import _method_flags, _sources
from snnconvert.errors import SnnConvertError
from snnconvert.finetune.config import FinetuneConfig
from snnconvert.options import coding_options, flag_name, training_options

FINETUNE_OWN = {"--input", "--data", "--val-data", "--resume", "--method", "--method-option", "--out", "--json"}
"""The finetune command's own options: what to train on and where to write, not training options."""


def _options(command: str) -> dict[str, click.Option]:
    group = typer.main.get_command(app)
    found = {}
    for param in group.commands[command].params:  # type: ignore[attr-defined]
        for opt in [*param.opts, *getattr(param, "secondary_opts", [])]:
            found[opt] = param
    return found


def test_every_finetune_field_is_a_flag_and_no_flag_is_hand_written() -> None:
    options = _options("finetune")
    fields = {f.name: f for f in dataclasses.fields(FinetuneConfig)}
    generated = {flag.flag: flag for flag in config_flags(FinetuneConfig)}
    assert {f.field for f in generated.values()} == {n for n, f in fields.items() if f.metadata.get("cli", True)}
    assert [n for n, f in fields.items() if not f.metadata.get("cli", True)] == ["methods"]  # --method/-option
    for flag, entry in generated.items():
        assert flag in options, flag
        assert options[flag].help.startswith(fields[entry.field].metadata["help"]), flag
    methods = {f"--{flag_name(name)}" for name in training_options()}
    method_flags = {flag.flag for name, m in training_options().items()
                    for flag in config_flags(m.config, f"{flag_name(name)}-")}
    primary = {param.opts[0] for param in {id(p): p for p in options.values()}.values()}
    assert primary == FINETUNE_OWN | set(generated) | methods | method_flags  # nothing else, nothing missing


def test_every_coding_option_is_a_to_snn_flag() -> None:
    options = _options("to-snn")
    for name, coding in coding_options().items():
        for f in coding.options():
            assert f"--{flag_name(f.name)}" in options, (name, f.name)


def test_flags_read_by_the_field_types() -> None:
    flags = {f.field: f for f in config_flags(FinetuneConfig)}
    config = config_from_flags(FinetuneConfig, list(flags.values()),
                               {"epochs": "3", "milestones": "2,3", "grad_clip": "0", "augment": True,
                                "threshold_lr": "none", "val_limit": None})
    assert (config.epochs, config.milestones, config.grad_clip, config.augment) == (3, [2, 3], None, True)
    assert config.threshold_lr is None and config.val_limit == FinetuneConfig().val_limit  # not given: default
    with pytest.raises(SnnConvertError, match="--epochs 'x' is not possible"):
        read_flag(flags["epochs"], "x")


def test_method_flags_switch_their_method_on() -> None:
    flags = {name: source() for name, source in _sources().items()}
    names, items = _method_flags(flags, {"method_dtss": {"t_max": "3", "on": None},
                                         "method_adaptive_bits": {"on": True}}, [], ["spquant.gate_lr=0.1"])
    assert names == ["adaptive_bits"] and items == ["spquant.gate_lr=0.1", "dtss.t_max=3"]


def test_recipe_sections_take_the_config_fields(tmp_path: Path) -> None:
    from snnconvert.recipe import load_recipe

    finetune = {k: v for k, v in dataclasses.asdict(FinetuneConfig()).items()}
    recipe = {"model": "lenet5", "data": "digits", "finetune": {"data": "digits", **finetune}}
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    assert load_recipe(path).finetune.config == FinetuneConfig()
    recipe["finetune"]["not_a_field"] = 1
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    with pytest.raises(SnnConvertError, match="not_a_field"):
        load_recipe(path)
