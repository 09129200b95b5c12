"""The README's Python API snippet (ResNet-20 on the shared CIFAR-10 data) runs as written.

The documentation includes the same block (docs/getting-started.md, through the README's
``--8<--`` markers), so this test covers both copies.

The code is taken from README.md at test time and run unchanged, from a folder whose
``../shared/data`` is the shared data (a symlink), so its relative paths resolve as they do from
the repository root. The one change: ``limit=2000`` becomes ``limit=200`` to keep the run short
(about 25 s of CPU; slow because quantizing ResNet-20 calibrates on 1,024 images). Skipped when
the shared data is absent.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
from helpers import SHARED_DATA

ROOT = Path(__file__).resolve().parents[1]
WRITTEN_LIMIT = "limit=2000"
TEST_LIMIT = 200


def readme_snippet() -> str:
    """The first ``python`` block of the README's "Python API" section."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "## Python API" in text
    section = text.split("## Python API", 1)[1]
    return section.split("```python", 1)[1].split("```", 1)[0]


def test_the_snippet_is_the_resnet20_one_and_parses() -> None:
    code = readme_snippet()
    assert '--8<-- "README.md:python-api"' in (ROOT / "docs" / "getting-started.md").read_text(encoding="utf-8")
    ast.parse(code)
    assert '"resnet20"' in code and "../shared/data/resnet20-cifar10.th" in code and code.count(WRITTEN_LIMIT) == 1


@pytest.mark.slow
@pytest.mark.shared_data
def test_readme_resnet20_snippet_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not (SHARED_DATA / "resnet20-cifar10.th").is_file() or not (SHARED_DATA / "cifar10" / "test").is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "data").symlink_to(SHARED_DATA.resolve(), target_is_directory=True)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)  # ../shared/data resolves here as it does from the repository root
    code = readme_snippet().replace(WRITTEN_LIMIT, f"limit={TEST_LIMIT}")
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 - the project's own README

    logits, report, snn, images = namespace["logits"], namespace["report"], namespace["snn"], namespace["images"]
    assert logits.shape == (8, 10) and logits.requires_grad  # run outside torch.no_grad(), as written
    assert report.accuracy.images == TEST_LIMIT
    scores = {s.model: s.top1 for s in report.accuracy.scores}
    assert set(scores) == {"float ANN", "quantized ANN", "SNN"}
    assert scores["float ANN"] > 0.75  # the shared ResNet-20 scores about 0.9 on CIFAR-10
    assert report.accuracy.agreement_snn_quantized >= 0.98  # SWS Tc=8, Ts=2 is near exact
    # T_inf = Tc + Ts * L_TSA with 19 TSA layers in ResNet-20 (stem + 2 per block x 9 blocks)
    assert snn.info["T_inf"] == 8 + 2 * 19
    assert report.ops.delta > 1.0
    assert (work / "resnet20-sws.snnc").is_file()
    with torch.no_grad():  # the reloaded network (the snippet's last line) computes the same logits
        assert torch.allclose(snn(images), logits.detach(), atol=1e-5)
