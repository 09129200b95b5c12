"""A new neuron kind lands as one folder: ``tests/toy_neuron`` declares a hard-reset LIF neuron
(its own dynamics, step state, trainable threshold and one-step update) and a coding that uses
it, and nothing in snnconvert names it. Here it goes through ``to-snn``, ``finetune`` (one
step), ``evaluate``, ``export --format onnx --mode step`` and save/load, all from the CLI."""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import cli_ok, reference_session

from snnconvert.codings.registry import unregister_coding
from snnconvert.data import make_loader, materialize
from snnconvert.pipeline import eval_split, load
from snnconvert.registry import MODULE_CLASSES


@pytest.fixture(scope="module")
def toy() -> Iterator[object]:
    """The plugin, registered by importing it (and unregistered afterwards)."""
    package = importlib.import_module("toy_neuron")
    MODULE_CLASSES.register("HardResetLIF", package.HardResetLIF)  # (again, if an earlier test removed it)
    from snnconvert.codings import register_coding

    register_coding(package.TOY_CODING)
    yield package
    unregister_coding("toy-lif")
    MODULE_CLASSES.unregister("HardResetLIF")


def test_toy_dynamics_by_hand(toy: object) -> None:
    """Constant input 0.3, decay 1, theta 1: u = 0.3, 0.6, 0.9, 1.2 -> spike, reset to 0, ... so
    spikes at t = 4 and 8; with decay 0.5 and input 0.6: u = 0.6, 0.9, 1.05 -> spike, 0.6, ..."""
    neuron = toy.HardResetLIF(8)
    out = neuron(torch.full((8, 1), 0.3, dtype=torch.float64))
    assert out.view(-1).tolist() == [0, 0, 0, 1, 0, 0, 0, 1]
    leaky = toy.HardResetLIF(6, decay=0.5)
    assert leaky(torch.full((6, 1), 0.6, dtype=torch.float64)).view(-1).tolist() == [0, 0, 1, 0, 0, 1]
    state = {"membrane": torch.zeros(1, 1, dtype=torch.float64)}  # the one-step update gives the same train
    steps = []
    for _ in range(6):
        s, state = leaky.step(torch.full((1, 1), 0.6, dtype=torch.float64), state)
        steps.append(float(s))
    assert steps == [0, 0, 1, 0, 0, 1]


def test_a_new_neuron_kind_runs_through_every_command(toy: object, tmp_path: Path) -> None:
    cli_ok(["quantize", "lenet5", "--data", "digits", "--calib-limit", "128", "--eval-limit", "0", "--out",
         str(tmp_path)])
    assert "--decay" in cli_ok(["to-snn", "--help"])  # its flags come from its config
    converted = json.loads(cli_ok(["to-snn", "--input", str(tmp_path), "--coding", "toy-lif", "--T", "6", "--json"]))
    artifact = Path(converted["artifact"])
    _, snn = load(artifact)
    assert snn is not None and [type(n).__name__ for n in snn.neurons().values()] == ["HardResetLIF"] * 4

    # fine-tuning, one optimizer step: the neuron's own make_trainable adds a learnable threshold
    tuned = json.loads(cli_ok(["finetune", "--input", str(artifact), "--data", "digits", "--epochs", "1",
                            "--max-batches", "1", "--batch-size", "16", "--learn-threshold", "--val-limit", "64",
                            "--json"]))
    tuned_path = Path(tuned["artifact"])
    _, trained = load(tuned_path)  # save/load of the new neuron, with its new parameter
    thresholds = [n.threshold.detach() if n.threshold is not None else None for n in trained.neurons().values()]
    assert all(t is not None and t.numel() == 1 for t in thresholds)
    assert any(float(t) != 1.0 for t in thresholds)  # one Adam step moved them off their start (1)

    # evaluation of the saved artifact: the CLI's top-1 is what the loaded network computes
    report = json.loads(cli_ok(["evaluate", "--input", str(tuned_path), "--limit", "200", "--json"]))
    snn_score = next(s for s in report["accuracy"]["scores"] if s["model"] == "SNN")
    quantized, _ = load(tuned_path)
    batches = list(make_loader(materialize(eval_split(quantized, None, limit=200)), 200))
    images = torch.cat([b[0] for b in batches])
    labels = torch.cat([b[1] for b in batches])
    assert len(images) == 200
    with torch.no_grad():
        top1 = float((trained(images.to(trained.compute_dtype())).argmax(1) == labels).double().mean())
    assert snn_score["top1"] == pytest.approx(top1, abs=1e-12)
    assert top1 > 0.5  # LeNet-5 on digits is 98.9 % in float; chance is 10 %

    # one-step ONNX export: T runs of the step graph give the simulator's logits
    out = tmp_path / "toy-step.onnx"
    exported = json.loads(cli_ok(["export", "--input", str(tuned_path), "--format", "onnx", "--mode", "step",
                               "--out", str(out), "--json"]))
    assert exported["inputs"][1:] == [f"membrane_{name}" for name in trained.neurons()] + ["readout"]
    session = reference_session(out)
    x = images[:5].float()
    initial = exported["initial_state"]
    state = [np.full((5, *initial[n]["shape"]), initial[n]["value"], np.float32) for n in exported["inputs"][1:]]
    for _ in range(exported["steps"]):
        outputs = session.run(None, {"images": x.numpy(), **dict(zip(exported["inputs"][1:], state, strict=True))})
        state = outputs[1:]
    with torch.no_grad():
        logits = trained.float()(x).numpy()
    np.testing.assert_allclose(outputs[0], logits, atol=1e-5 * max(1.0, float(np.abs(logits).max())), rtol=0)
