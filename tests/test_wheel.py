"""Packaging: the version is written once, and a built wheel runs ``snnconvert demo`` outside the
checkout (bundled weights and demo recipe shipped as package data). Nothing is downloaded."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

import snnconvert
from snnconvert.assets import DEMO_RECIPE, LENET5_DIGITS, asset_names, demo_recipe_path

REPO = Path(__file__).resolve().parents[1]
OFFLINE = {"PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}


def test_version_is_single_sourced() -> None:
    """pyproject takes the version from ``snnconvert._version`` (no second copy to drift)."""
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "snnconvert._version.__version__"}
    from snnconvert._version import __version__

    assert snnconvert.__version__ == __version__
    assert re.fullmatch(r"\d+\.\d+\.\d+", __version__)


def test_assets_are_package_data() -> None:
    """The demo recipe and the LeNet-5 weights are found through the package, not the checkout."""
    assert {DEMO_RECIPE, LENET5_DIGITS} <= set(asset_names())
    path = demo_recipe_path()
    assert path.is_file() and path.parent.name == "assets" and path.parent.parent.name == "snnconvert"
    assert "model: lenet5" in path.read_text(encoding="utf-8")


def _run(args: list[str], *, cwd: Path, timeout: float = 600, env: dict[str, str] | None = None) -> str:
    """Run ``args``; fail the test with its output if it exits non-zero."""
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.mark.slow
def test_wheel_installs_and_runs_demo(tmp_path: Path) -> None:
    """Build the wheel from a copy of the sources, install it (no deps) into a fresh venv that sees
    this venv's packages through a .pth file, and run ``snnconvert demo`` from an unrelated cwd."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SNNCONVERT_MODELS_DIR")}
    env.update(OFFLINE, COLUMNS="200")

    source = tmp_path / "src"  # a copy, so the build writes nothing into the checkout
    shutil.copytree(REPO / "snnconvert", source / "snnconvert", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    wheels = tmp_path / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels),
          str(source)], cwd=tmp_path, env=env)
    (wheel,) = wheels.glob("snnconvert-*.whl")
    assert wheel.name.startswith(f"snnconvert-{snnconvert.__version__}-")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    assert {f"snnconvert/assets/{DEMO_RECIPE}", f"snnconvert/assets/{LENET5_DIGITS}", "snnconvert/_version.py"} <= names

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path, env=env)
    python = venv / "bin" / "python"
    site = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                cwd=tmp_path, env=env).strip()
    outer = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    Path(site, "_snnconvert_test_deps.pth").write_text("".join(f"{p}\n" for p in outer), encoding="utf-8")
    _run([str(python), "-m", "pip", "install", "-q", "--no-deps", str(wheel)], cwd=tmp_path, env=env)

    work = tmp_path / "elsewhere"
    work.mkdir()
    where = _run([str(python), "-c", "import snnconvert.assets as a; print(a.demo_recipe_path())"],
                 cwd=work, env=env).strip()
    assert Path(where).is_relative_to(venv), f"snnconvert imported from {where}, not the new venv"

    out = _run([str(venv / "bin" / "snnconvert"), "demo", "--out", str(tmp_path / "run")], cwd=work, env=env)
    assert re.search(r"^\W*SNN\W+\d{1,3}\.\d\d%", out, re.MULTILINE), f"no SNN accuracy row in:\n{out}"
    assert list((tmp_path / "run").glob("*.snnc")), "the demo wrote no artifacts"
    assert not (work / "snnconvert-runs").exists()
