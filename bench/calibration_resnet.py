"""Conversion alone (no BPTT), with and without layer-wise calibration, on a CIFAR ResNet.

    python bench/calibration_resnet.py [--model resnet20|resnet56] [--n 2000] [--modes none,bias,layerwise]
        [--only mlif,rate,multibit,spquant] [--calib-limit 1000] [--suffix _smoke]

The shared pretrained checkpoint (../shared/data/<model>-cifar10.th) is quantized to 8 bits on
--calib-limit train-subset images; each coding is converted once per --calibrate mode (the
coding's own calibration against the float ANN, snnconvert.calibrate: ``bias`` = threshold
scale and bias correction per layer, ``layerwise`` = also a least-squares weight fit, the
command line's default; the quantizer's 1,000 images halved: 500 fitted, 500 held out) and
evaluated on --n stratified test images. Rows: M-LIF S=3 T=1, rate T=8, multi-bit B_s=2 T=1,
SpQuant T=2. Columns: top-1, agreement
with the float ANN, calibration seconds and the held-out proxy before -> after.
Writes bench/results/calibration_<model>[<suffix>].{json,md}. Public API only.
"""

from __future__ import annotations

import argparse
import time

from common import RESULTS, SHARED, TEST, TRAIN, machine, start_process, write_json

import snnconvert
from snnconvert.evaluate import EvaluateConfig, evaluate
from snnconvert.quantize import QuantizeConfig

CASES = {
    "mlif": ("M-LIF S=3 T=1", {"S": 3, "T": 1}),
    "rate": ("rate T=8", {"T": 8}),
    "multibit": ("multi-bit B_s=2 T=1", {"bits_spike": 2, "T": 1}),
    "spquant": ("SpQuant T=2", {"T": 2}),
}
CALIBRATED = ("mlif", "rate", "multibit", "spquant")  # codings with a --calibrate option


def markdown(model: str, rows: list[dict], float_top1: float, n: int) -> str:
    lines = [f"{model} / CIFAR-10 (JPEG), conversion only, {n} stratified test images; float ANN top-1 "
             f"{100 * float_top1:.2f}%.", "",
             "| coding | calibration | top-1 | agreement with float | calibration time | proxy top-1 before -> after |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        cal = r.get("calibration") or {}
        proxy = (f"{100 * cal['before']['top1']:.1f}% -> {100 * cal['after']['top1']:.1f}%"
                 if cal.get("before") else "-") + (" (undone: agreement fell)" if cal.get("reverted") else "")
        seconds = f"{cal['seconds']:.1f} s" if cal.get("seconds") is not None else "-"
        lines.append(f"| {r['label']} | {r['mode']} | {100 * r['top1']:.2f}% | {100 * r['agreement']:.2f}% | "
                     f"{seconds} | {proxy} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet20", choices=("resnet20", "resnet56"))
    parser.add_argument("--n", type=int, default=2000, help="stratified test images")
    parser.add_argument("--modes", default="none,bias,layerwise")
    parser.add_argument("--only", default=",".join(CASES))
    parser.add_argument("--calib-limit", type=int, default=1000)
    parser.add_argument("--suffix", default="")
    parser.add_argument("--from-json", action="store_true", help="only rewrite the .md from the saved .json")
    args = parser.parse_args()
    name = f"calibration_{args.model}{args.suffix}"
    if args.from_json:
        import json

        saved = json.loads((RESULTS / f"{name}.json").read_text(encoding="utf-8"))
        text = markdown(args.model, saved["rows"], saved["float_top1"], saved["n_test"])
        (RESULTS / f"{name}.md").write_text(text, encoding="utf-8")
        print(text)
        return
    checkpoint = SHARED / f"{args.model}-cifar10.th"
    if not checkpoint.is_file():
        raise SystemExit(f"benchmark data not found: {checkpoint} (set SNNCONVERT_SHARED_DATA)")
    q = snnconvert.quantize(args.model, weights=str(checkpoint), data=TRAIN,
                            config=QuantizeConfig(bits=8, calib_limit=args.calib_limit), eval_limit=0)
    eval_cfg = EvaluateConfig(data=TEST, limit=args.n, reports=("accuracy",))
    rows: list[dict] = []
    float_top1 = float("nan")
    for key in args.only.split(","):
        label, options = CASES[key]
        for mode in args.modes.split(","):
            if key not in CALIBRATED and mode != "none":
                continue
            extra = {"calibrate": mode} if key in CALIBRATED else {}
            start = time.perf_counter()
            snn = snnconvert.to_snn(q, key, **options, **extra)
            convert_s = time.perf_counter() - start
            report = evaluate(q, snn, eval_cfg)
            scores = {s.model: s.top1 for s in report.accuracy.scores}
            float_top1 = scores["float ANN"]
            row = {"coding": key, "label": label, "options": options, "mode": mode, "top1": scores["SNN"],
                   "agreement": report.accuracy.agreement_snn_float, "convert_seconds": convert_s,
                   "calibration": snn.info.get("calibration")}
            rows.append(row)
            print({k: v for k, v in row.items() if k != "calibration"},
                  (row["calibration"] or {}).get("seconds"), flush=True)
    write_json(f"{name}.json", {"machine": machine(), "model": args.model, "n_test": args.n,
                                "calib_limit": args.calib_limit, "float_top1": float_top1, "rows": rows})
    text = markdown(args.model, rows, float_top1, args.n)
    (RESULTS / f"{name}.md").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    start_process()
    main()
