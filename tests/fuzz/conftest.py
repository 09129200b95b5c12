"""Fuzz tests (see fuzzing.py): shared small artifacts, and the table of counts printed after the run."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from fuzzing import STATS, table

# Cases that still fail because the library is not fixed yet (issue 29): node id pattern -> what happens.
KNOWN = {
}


def pytest_collection_modifyitems(config, items) -> None:  # noqa: ANN001 - pytest hook
    import re

    for item in items:
        for pattern, reason in KNOWN.items():
            if re.search(pattern, item.nodeid):
                item.add_marker(pytest.mark.xfail(strict=False, reason=f"issue 29, not fixed yet: {reason}"))


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # noqa: ANN001 - pytest hook
    if not any(row["cases"] for row in STATS.values()):
        return
    terminalreporter.section(f"snnconvert fuzz ({os.environ.get('SNNCONVERT_FUZZ', 'ci')} profile, issue 29)")
    for line in table():
        terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def lenet(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A quantized and an SNN (rate, T=4) artifact of the bundled lenet5 on digits, built once."""
    from typer.testing import CliRunner

    from snnconvert.cli.app import app

    out = tmp_path_factory.mktemp("fuzz-lenet") / "run"
    runner = CliRunner()
    for args in (["quantize", "lenet5", "--calib-limit", "32", "--eval-limit", "0", "--out", str(out)],
                 ["to-snn", "--input", str(out), "--coding", "rate", "--set", "T=4", "--out", str(out)]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
    found = {"quantized": next(out.glob("quantized-*.snnc")), "snn": next(out.glob("snn-*.snnc"))}
    for path in found.values():
        path.chmod(0o444)
    return found


def copy_into(source: Path, folder: Path, name: str | None = None) -> Path:
    """A writable copy of ``source`` in ``folder``."""
    target = folder / (name or source.name)
    shutil.copyfile(source, target)
    return target
