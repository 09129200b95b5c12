"""The documentation: the README stays short and the MkDocs site builds with ``--strict``.

The strict build fails on any warning: a broken link or anchor, a page missing from the nav, a
snippet marker missing from the README, a docstring mkdocstrings cannot read. It needs the
``docs`` extra (``make docs`` installs it); without it these tests skip.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS_PACKAGES = ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python")


def _missing_docs_packages() -> list[str]:
    missing = []
    for name in DOCS_PACKAGES:
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            missing.append(name)
    return missing


needs_mkdocs = pytest.mark.skipif(bool(_missing_docs_packages()),
                                  reason="the docs extra is not installed (make docs installs it)")


def test_readme_is_short_and_keeps_the_two_commands_and_its_excerpt() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) < 200
    assert "make demo" in text and "make test" in text
    # the real `make demo` excerpt and the Python snippet, marked for the docs to include
    for section in ("demo-output", "python-api"):
        start, end = f"--8<-- [start:{section}]", f"--8<-- [end:{section}]"
        assert text.count(start) == 1 and text.count(end) == 1 and text.index(start) < text.index(end)
    excerpt = text.split("--8<-- [start:demo-output]", 1)[1].split("--8<-- [end:demo-output]", 1)[0]
    assert "3/3 evaluate on the held-out part of digits" in excerpt and "│ SNN                   │ 98.89%" in excerpt


def test_every_docs_link_in_the_readme_names_an_existing_page() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = re.findall(r"\]\((docs/[^)#]+)", text)
    assert len(targets) >= 10
    assert [t for t in targets if not (ROOT / t).is_file()] == []


@needs_mkdocs
def test_the_cli_reference_covers_every_command_and_coding_option() -> None:
    sys.path.insert(0, str(ROOT / "docs" / "_gen"))
    try:
        import hooks
    finally:
        sys.path.remove(str(ROOT / "docs" / "_gen"))
    import typer

    from snnconvert.cli.app import app
    from snnconvert.codings import codings

    page = hooks.cli_markdown()
    for name in typer.main.get_command(app).commands:
        assert f"\n## {name}\n" in page
    for coding in codings().values():
        assert f"\n### {coding.name}\n" in page
    assert "| `--Ts` |" in page and "| `target_bits` |" in page  # a coding's and a training method's option rows
    assert "`--allow-unchecked-artifacts`" in page
    assert "./snnconvert-runs/&lt;model>/" in page  # escaped: markdown would take <model> for an HTML tag


@pytest.mark.slow
@needs_mkdocs
def test_mkdocs_build_is_strict_clean(tmp_path: Path) -> None:
    """What ``make docs`` runs, into a temporary folder (about 15-25 s on a 2-core machine)."""
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    site = tmp_path / "site"
    cli = (site / "reference" / "cli" / "index.html").read_text(encoding="utf-8")
    assert "--coding" in cli and "--allow-unchecked-artifacts" in cli
    api = (site / "reference" / "api" / "index.html").read_text(encoding="utf-8")
    assert "to_snn" in api and "EvaluateConfig" in api
    started = (site / "getting-started" / "index.html").read_text(encoding="utf-8")
    assert "resnet20-sws.snnc" in started and "98.89%" in started  # the README's snippets, included
    results = sorted(p.stem for p in (ROOT / "bench" / "results").glob("*.md"))
    assert results and all((site / "benchmarks" / "results" / stem / "index.html").is_file() for stem in results)
