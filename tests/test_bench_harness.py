"""The benchmark harness (bench/harness.py): options from a dataclass, the writers, the lock."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture()
def harness(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.syspath_prepend(str(BENCH))
    import common
    import harness

    monkeypatch.setattr(common, "RESULTS", tmp_path)
    monkeypatch.setattr(harness, "RESULTS", tmp_path)
    monkeypatch.setattr(harness, "LOCK", tmp_path / "bench.lock")  # never wait for a real benchmark
    return harness


def test_options_come_from_the_dataclass(harness) -> None:
    @dataclass
    class Options(harness.BenchOptions):
        limit: int = field(default=2000, metadata={"help": "test images"})
        rate: float | None = field(default=None, metadata={"help": "a rate"})
        plot: bool = field(default=True, metadata={"help": "draw"})

    o = harness.parse_options(Options, ["--limit", "50", "--rate", "0.5", "--no-plot", "--device", "cuda:1"])
    assert (o.limit, o.rate, o.plot, o.device, o.tag) == (50, 0.5, False, "cuda:1", "")
    assert harness.parse_options(Options, []) == Options()
    with pytest.raises(SystemExit):
        harness.parse_options(Options, ["--limit", "many"])


def test_main_writes_json_markdown_and_figures(harness, tmp_path: Path) -> None:
    @dataclass
    class Options(harness.BenchOptions):
        n: int = field(default=3, metadata={"help": "n"})

    def draw(path: Path) -> None:
        path.write_bytes(b"\x89PNG fake")

    def run(options: Options) -> harness.BenchResult:
        return harness.BenchResult("toy", {"rows": list(range(options.n))}, "| a |\n", {"curve": draw})

    paths = harness.main(Options, run, argv=["--n", "2", "--tag", "t", "--quiet-cores", "64"])
    assert sorted(p.name for p in paths) == ["toy_t.json", "toy_t.md", "toy_t_curve.png"]
    data = json.loads((tmp_path / "toy_t.json").read_text())
    assert data["rows"] == [0, 1] and data["options"]["n"] == 2 and data["benchmark"] == "toy"
    assert data["load_before"]["quiet"] is True and "cores" in data["machine"]
    assert (tmp_path / "toy_t.md").read_text() == "| a |\n"
    assert not list(tmp_path.glob(".*partial*"))


def test_the_lock_runs_one_benchmark_at_a_time(harness, tmp_path: Path) -> None:
    order: list[str] = []

    def second() -> None:
        with harness.bench_lock(tmp_path / ".lock") as waited:
            order.append(f"second waited {waited > 0.15}")

    with harness.bench_lock(tmp_path / ".lock"):
        t = threading.Thread(target=second)
        t.start()
        time.sleep(0.3)
        order.append("first done")
    t.join()
    assert order == ["first done", "second waited True"]
