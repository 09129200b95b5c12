"""How many architectures convert, per coding: ``snnconvert models --check`` over every model.

    python bench/models_check.py [--codings rate,sws] [--only NAME,NAME] [--no-cache]

Random weights, no downloads, a 32x32 input (a model's own size when it needs more); see
``snnconvert/models/check.py``. Writes bench/results/models_check.{json,md}.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict

from common import RESULTS, machine, write_json

from snnconvert.atomic import write_atomically
from snnconvert.models.check import check_models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--codings", default="rate,sws")
    parser.add_argument("--only", default=None)
    parser.add_argument("--no-cache", action="store_true")
    parser.add_argument("--support-only", action="store_true",
                        help="only the support check on the meta device, with and without the no-op pass")
    args = parser.parse_args()
    if args.support_only:
        support_only(args.only.split(",") if args.only else None)
        return
    codings = tuple(c for c in args.codings.split(",") if c)
    names = args.only.split(",") if args.only else None
    start = time.perf_counter()

    def progress(i: int, n: int, name: str) -> None:
        print(f"[{i}/{n}] {name} ({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)

    results = check_models(names, codings, refresh=args.no_cache, on_model=progress)
    partial = "" if names is None else "_partial"
    seconds = time.perf_counter() - start
    summary = {}
    for family in ("torchvision", "bundled"):
        rows = [r for r in results if r.family == family]
        summary[family] = {"models": len(rows), "prepare": sum(r.prepares for r in rows),
                           **{c: sum(r.converts(c) for r in rows) for c in codings}}
    write_json(f"models_check{partial}.json", {"machine": machine(), "codings": list(codings), "seconds": seconds,
                                "summary": summary, "models": [asdict(r) for r in results]})
    lines = ["| model | family | prepares | " + " | ".join(codings) + " | reason |",
             "|---|---|---|" + "---|" * len(codings) + "---|"]
    for r in results:
        cells = ["yes" if r.converts(c) else "no" for c in codings]
        why = r.reason or "; ".join(f"{c}: {r.codings[c]}" for c in codings if not r.converts(c))
        lines.append(f"| {r.name} | {r.family} | {'yes' if r.prepares else 'no'} | " + " | ".join(cells)
                     + f" | {why.replace('|', '/')} |")
    text = "\n".join(lines) + "\n"
    write_atomically(RESULTS / f"models_check{partial}.md", lambda h: h.write(text.encode()))
    print(summary, f"{seconds:.0f} s")


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
    main()
