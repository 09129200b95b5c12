"""How many architectures convert, per coding: every model ``snnconvert models`` lists, checked
for whether it prepares and whether it converts with each coding.

    python bench/models_check.py [--codings sws,rate,mlif,multibit] [--only NAME,NAME]
        [--family torchvision] [--model-timeout 900] [--no-cache] [--retry-failed]

Random weights, no downloads, a 32x32 input (a model's own size when it needs more); see
``snnconvert/models/check.py``. Each model is checked in a child process with a time cap
(``--model-timeout`` seconds; a model over it is recorded as timed out, as is one whose process
dies). Results are cached after every model, so an interrupted run resumes where it stopped:
conversions in snnconvert's own cache (the one ``snnconvert models --check`` shows), time-outs
and crashes next to it (retried with ``--retry-failed``; a time-out is also retried when
``--model-timeout`` is larger than the cap it ran under). Writes
bench/results/models_check.{json,md} (``models_check_partial.*`` with ``--only``/``--family``).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

from common import RESULTS, machine, start_process, write_json

from snnconvert.atomic import write_atomically, write_json_atomically
from snnconvert.models.check import ConversionCheck, cache_path, check_model

CODINGS = "sws,rate,mlif,multibit"
RESULT_PREFIX = "RESULT "


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--codings", default=CODINGS)
    parser.add_argument("--only", default=None, help="comma list of model names")
    parser.add_argument("--family", default=None, choices=("torchvision", "bundled"))
    parser.add_argument("--model-timeout", type=float, default=900.0, help="seconds per model (child process)")
    parser.add_argument("--no-cache", action="store_true", help="recompute every model")
    parser.add_argument("--retry-failed", action="store_true", help="retry models that timed out or crashed")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # the child: check one model
    parser.add_argument("--support-only", action="store_true",
                        help="only the support check on the meta device, with and without the no-op pass")
    args = parser.parse_args()
    if args.support_only:
        support_only(args.only.split(",") if args.only else None)
        return
    codings = tuple(c for c in args.codings.split(",") if c)
    if args.one is not None:
        print(RESULT_PREFIX + json.dumps(asdict(check_model(args.one, codings))), flush=True)
        return
    check_all(args, codings)


def _failures_path(codings: tuple[str, ...]) -> Path:
    path = cache_path(codings)
    return path.with_name(path.stem + "-failures.json")


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _check_in_child(name: str, codings: tuple[str, ...], timeout: float) -> tuple[dict | None, str | None]:
    """``(check, None)`` from a child process, or ``(None, why)`` when it timed out or died."""
    command = [sys.executable, str(Path(__file__).resolve()), "--one", name, "--codings", ",".join(codings)]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True, cwd=Path(__file__).resolve().parent)
    try:
        out, err = child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.communicate()
        return None, f"timed out after {timeout:.0f} s"
    except BaseException:
        os.killpg(child.pid, signal.SIGKILL)
        child.communicate()
        raise
    lines = [line for line in out.splitlines() if line.startswith(RESULT_PREFIX)]
    if child.returncode != 0 or not lines:
        tail = (err.strip().splitlines() or ["no output"])[-1][:200]
        return None, f"the check process died (status {child.returncode}): {tail}"
    return json.loads(lines[-1][len(RESULT_PREFIX):]), None


def check_all(args: argparse.Namespace, codings: tuple[str, ...]) -> None:
    from snnconvert.ingest import list_models

    entries = [e for e in list_models() if (args.family is None or e.family == args.family)
               and (args.only is None or e.name in args.only.split(","))]
    cache, failures_file = cache_path(codings), _failures_path(codings)
    done = {} if args.no_cache else _read(cache)
    failed = {} if args.no_cache or args.retry_failed else _read(failures_file)
    start = time.perf_counter()
    rows = []
    for i, entry in enumerate(entries):
        name = entry.name
        if name in done:
            row = {**done[name], "timed_out": False, "failure": None, "cached": True}
        elif name in failed and (not failed[name].get("timed_out")
                                 or failed[name].get("model_timeout_s", 0) >= args.model_timeout):
            row = {**failed[name], "cached": True}  # a time-out under a smaller cap is tried again
        else:
            check, why = _check_in_child(name, codings, args.model_timeout)
            if check is not None:
                done = {**_read(cache), name: check}
                write_json_atomically(cache, done)  # after every model: an interrupted run resumes here
                row = {**check, "timed_out": False, "failure": None, "cached": False}
            else:
                row = {"name": name, "family": entry.family, "prepares": None, "codings": {c: why for c in codings},
                       "reason": why, "seconds": args.model_timeout if why.startswith("timed out") else 0.0,
                       "timed_out": why.startswith("timed out"), "failure": why,
                       "model_timeout_s": args.model_timeout}
                failed = {**_read(failures_file), name: row}
                write_json_atomically(failures_file, failed)
                row = {**row, "cached": False}
        rows.append(row)
        cells = ", ".join(f"{c} {'yes' if row['codings'].get(c) == 'yes' else 'no'}" for c in codings)
        print(f"[{i + 1}/{len(entries)}] {name}: prepares {row['prepares']}; {cells} ({row['seconds']:.0f} s"
              f"{', cached' if row['cached'] else ''}; {time.perf_counter() - start:.0f} s so far)",
              file=sys.stderr, flush=True)
    seconds = time.perf_counter() - start
    summary = {}
    for family in ("torchvision", "bundled"):
        mine = [r for r in rows if r["family"] == family]
        if mine:
            summary[family] = {"models": len(mine), "prepare": sum(r["prepares"] is True for r in mine),
                               "timed_out": sum(bool(r["timed_out"]) for r in mine),
                               "crashed": sum(bool(r["failure"]) and not r["timed_out"] for r in mine),
                               **{c: sum(r["codings"].get(c) == "yes" for r in mine) for c in codings}}
    partial = "" if args.only is None and args.family is None else "_partial"
    write_json(f"models_check{partial}.json", {
        "machine": machine(), "codings": list(codings), "model_timeout_s": args.model_timeout, "seconds": seconds,
        "cache": str(cache), "summary": summary,
        "models": [{k: v for k, v in r.items() if k not in ("cached", "model_timeout_s")} for r in rows]})
    lines = ["| model | family | prepares | " + " | ".join(codings) + " | seconds | reason |",
             "|---|---|---|" + "---|" * len(codings) + "---|---|"]
    for r in rows:
        check = ConversionCheck(**{k: r[k] for k in ("name", "family", "prepares", "codings", "reason", "seconds")})
        cells = ["yes" if check.converts(c) else "no" for c in codings]
        why = r["reason"] or "; ".join(f"{c}: {r['codings'][c]}" for c in codings if not check.converts(c))
        prepares = "timed out" if r["timed_out"] else "?" if r["prepares"] is None else "yes" if r["prepares"] else "no"
        lines.append(f"| {r['name']} | {r['family']} | {prepares} | " + " | ".join(cells)
                     + f" | {r['seconds']:.0f} | {why.replace('|', '/')} |")
    text = "\n".join(lines) + "\n"
    write_atomically(RESULTS / f"models_check{partial}.md", lambda h: h.write(text.encode()))
    print(json.dumps(summary), f"{seconds:.0f} s")


def support_only(names: list[str] | None) -> None:
    """How many models pass preparation (the whole-graph support check), with the no-op pass
    (stochastic depth, dropout, shape asserts removed) and without it; meta device, seconds."""
    import importlib
    from dataclasses import replace

    from snnconvert.ingest import list_models
    from snnconvert.models.check import CHECK_SIZE, meta_support

    prepare_module = importlib.import_module("snnconvert.graph.prepare")  # the module (the name is also a function)
    entries = [e for e in list_models() if names is None or e.name in names]
    start = time.perf_counter()
    rows = []
    original = prepare_module.remove_noops
    for i, entry in enumerate(entries):
        print(f"[{i + 1}/{len(entries)}] {entry.name}", file=sys.stderr, flush=True)
        native = entry.input_spec
        spec = replace(native, size=(min(CHECK_SIZE, native.size[0]), min(CHECK_SIZE, native.size[1])), resize=None)
        with_pass, reason = meta_support(entry.name, spec, native)
        prepare_module.remove_noops = lambda gm, **_: gm
        try:
            without, reason_without = meta_support(entry.name, spec, native)
        finally:
            prepare_module.remove_noops = original
        rows.append({"name": entry.name, "family": entry.family, "prepares": with_pass,
                     "prepares_without_noop_pass": without, "reason": reason, "reason_without": reason_without})
    seconds = time.perf_counter() - start
    summary = {family: {"models": sum(r["family"] == family for r in rows),
                        "prepare": sum(r["prepares"] is True for r in rows if r["family"] == family),
                        "prepare_without_noop_pass": sum(r["prepares_without_noop_pass"] is True for r in rows
                                                         if r["family"] == family),
                        "undetermined_on_meta": sum(r["prepares"] is None for r in rows if r["family"] == family)}
               for family in ("torchvision", "bundled")}
    name = "models_support.json" if names is None else "models_support_partial.json"
    write_json(name, {"machine": machine(), "seconds": seconds, "summary": summary, "models": rows})
    print(summary, f"{seconds:.0f} s")


if __name__ == "__main__":
    start_process()
    main()
