#!/usr/bin/env bash
# Run the onnxruntime comparisons on generic x86-64 kernels: qemu-user emulates a CPU without AVX
# (Nehalem: SSE4.2 only), so onnxruntime's MLAS and torch dispatch (on cpuid) to their SSE paths
# instead of AVX2/AVX-512/VNNI ones. The suite must pass there exactly as on the host CPU.
# Needs qemu-user (apt-get install qemu-user). Slow (~10-20x emulation overhead): not in the default run.
# Usage: tests/portable/run_generic_kernels.sh [CPU model] [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/../.."
cpu="${1:-Nehalem}"
shift || true
qemu=$(command -v qemu-x86_64 || command -v qemu-x86_64-static || true)
if [ -z "$qemu" ]; then
    echo "qemu-x86_64 not found (apt-get install qemu-user)" >&2
    exit 2
fi
python=.venv/bin/python
# the emulated CPU must really lack AVX, or nothing is proven
caps=$("$qemu" -cpu "$cpu" "$python" -c "import torch; print(torch.backends.cpu.get_cpu_capability())")
if [ "$caps" != "DEFAULT" ]; then
    echo "qemu CPU $cpu reports $caps vector support; pick a model without AVX (e.g. Nehalem)" >&2
    exit 2
fi
files=(tests/test_onnx_qdq.py tests/test_onnx_ingest.py tests/test_export.py)
[ "$#" -gt 0 ] && files=("$@")
start=$(date +%s)
"$qemu" -cpu "$cpu" "$python" -m pytest -q -p no:cacheprovider "${files[@]}"
echo "generic kernels ($cpu via qemu): $(( $(date +%s) - start )) s"
