"""The benchmark harness: options from a dataclass, machine info, a quiet-machine gate, one
benchmark at a time (a lock), ``--device`` and the JSON / Markdown / PNG writers.

A benchmark declares its options as a dataclass that extends :class:`BenchOptions` (each field's
``metadata["help"]`` is its ``--help``) and a function ``run(options) -> BenchResult``::

    @dataclass
    class Options(BenchOptions):
        limit: int = field(default=2000, metadata={"help": "stratified test images"})

    def run(options: Options) -> BenchResult:
        ...
        return BenchResult("my_bench", data, markdown, figures={"curves": draw})

    if __name__ == "__main__":
        main(Options, run, __doc__)

``main`` parses the command line, takes the lock (``/tmp/snnconvert-bench.lock``, the one the
Makefile's ``flock`` takes: a second benchmark waits, so timings never share the two cores),
probes the machine's external load (and with ``--quiet-wait S`` waits up to S seconds for it
to fall below ``--quiet-cores``), runs the benchmark and writes
``bench/results/<name>[_<tag>].json`` (with the options, the machine and the load before and
after), ``.md`` and one PNG per figure, each atomically.
"""

from __future__ import annotations

import argparse
import dataclasses
import fcntl
import os
import tempfile
import time
import types
import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from common import RESULTS, machine, start_process, write_json
from machine_load import external_load, loadavg

from snnconvert.atomic import write_atomically

LOCK = Path(tempfile.gettempdir()) / "snnconvert-bench.lock"


@dataclass
class BenchOptions:
    """Options every benchmark takes."""

    device: str = field(default="cpu", metadata={"help": "cpu, auto, cuda or cuda:N"})
    tag: str = field(default="", metadata={"help": "suffix of the result files"})
    quiet_cores: float = field(default=0.3, metadata={
        "help": "external CPU use (cores) above which the machine counts as busy"})
    quiet_wait: float = field(default=0.0, metadata={
        "help": "seconds to wait for a quiet machine before starting (0: probe and record only)"})


@dataclass
class BenchResult:
    """What a benchmark returns: the result name, its JSON data, its Markdown table and its
    figures (``{suffix: draw(path)}``, one PNG each)."""

    name: str
    data: dict[str, Any]
    markdown: str = ""
    figures: dict[str, Callable[[Path], None]] = field(default_factory=dict)


OptionsT = TypeVar("OptionsT", bound=BenchOptions)


def _field_type(options_cls: type, f: dataclasses.Field) -> Any:
    hints = typing.get_type_hints(options_cls)
    kind = hints[f.name]
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    if typing.get_origin(kind) in (typing.Union, types.UnionType) and len(args) == 1:
        kind = args[0]  # Optional[X] takes X
    return kind


def parse_options(options_cls: type[OptionsT], argv: list[str] | None = None,
                  description: str | None = None) -> OptionsT:
    """Parse ``--field-name VALUE`` (``--flag`` / ``--no-flag`` for booleans) into ``options_cls``."""
    parser = argparse.ArgumentParser(description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    for f in dataclasses.fields(options_cls):
        kind = _field_type(options_cls, f)
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        help_text = f"{f.metadata.get('help', '')} (default: {default})"
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=help_text)
        else:
            parser.add_argument(flag, type=kind, default=default, help=help_text, dest=f.name)
    return options_cls(**vars(parser.parse_args(argv)))


@contextmanager
def bench_lock(path: Path | None = None) -> Iterator[float]:
    """Hold the benchmark lock for the run; yields the seconds spent waiting."""
    path = path or LOCK
    path.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield time.perf_counter() - start
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def quiet_gate(options: BenchOptions, probe_seconds: float = 3.0) -> dict[str, Any]:
    """Probe the external CPU load; wait up to ``options.quiet_wait`` seconds for it to fall
    below ``options.quiet_cores``. Returns what was seen (recorded in the JSON)."""
    start = time.perf_counter()
    probes = [external_load(probe_seconds)]
    while (probes[-1] is not None and probes[-1] > options.quiet_cores
           and time.perf_counter() - start < options.quiet_wait):
        probes.append(external_load(probe_seconds))
    last = probes[-1]
    return {"external_cores": last, "probes": len(probes), "quiet": last is None or last <= options.quiet_cores,
            "loadavg": loadavg(), "waited_s": round(time.perf_counter() - start, 1)}


def write_result(result: BenchResult, options: BenchOptions, extra: dict[str, Any]) -> list[Path]:
    """Write the JSON (data + options + ``extra``), the Markdown and the PNGs; return the paths."""
    stem = result.name + (f"_{options.tag}" if options.tag else "")
    payload = {"benchmark": result.name, "options": dataclasses.asdict(options), **extra, **result.data}
    paths = [write_json(f"{stem}.json", payload)]
    if result.markdown:
        text = result.markdown.encode()
        paths.append(write_atomically(RESULTS / f"{stem}.md", lambda handle: handle.write(text)))
    for suffix, draw in result.figures.items():
        path = RESULTS / f"{stem}{'_' + suffix if suffix else ''}.png"
        partial = path.with_name(f".{path.stem}.partial.png")
        draw(partial)
        os.replace(partial, path)  # write, then rename
        paths.append(path)
    return paths


def main(options_cls: type[OptionsT], run: Callable[[OptionsT], BenchResult], description: str | None = None,
         argv: list[str] | None = None) -> list[Path]:
    """Parse the options, take the lock, gate on a quiet machine, run, write the results."""
    options = parse_options(options_cls, argv, description)
    start_process()
    with bench_lock() as waited:
        before = quiet_gate(options)
        if not before["quiet"]:
            print(f"warning: {before['external_cores']:.2f} cores busy outside this benchmark; "
                  f"timings will be noisy", flush=True)
        start = time.perf_counter()
        result = run(options)
        seconds = time.perf_counter() - start
        after = {"loadavg": loadavg()}
        paths = write_result(result, options, {
            "machine": machine(), "load_before": before, "load_after": after,
            "lock_wait_s": round(waited, 1), "run_seconds": round(seconds, 1)})
    for path in paths:
        print(f"wrote {path}", flush=True)
    return paths


__all__ = ["BenchOptions", "BenchResult", "bench_lock", "main", "parse_options", "quiet_gate", "write_result"]
