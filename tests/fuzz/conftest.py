"""Fuzz tests (see fuzzing.py): load the profile and print the counts after the run."""

from __future__ import annotations

import os

from fuzzing import STATS


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # noqa: ANN001 - pytest hook
    if not STATS["inputs tried"]:
        return
    terminalreporter.section(f"snnconvert fuzz ({os.environ.get('SNNCONVERT_FUZZ', 'ci')} profile)")
    for key, value in STATS.items():
        terminalreporter.write_line(f"{key:>24}: {value}")
