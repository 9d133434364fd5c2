#!/usr/bin/env bash
# One prepared GPU check (issue 16): the CUDA tests, then the speed-and-memory table.
#
#   bash benchmarks/gpu.sh [OUT_DIR]        # default OUT_DIR: $OUT or benchmarks/results/gpu
#
# Writes OUT_DIR/tests.txt (pytest output of the CUDA tests) and OUT_DIR/table.md (+ .json):
# RL per iteration against the cuFFT bound, RL-20 peak memory against estimate_memory, RLN and
# CARE voxels/s in float32 and float16 autocast with their peak memory (benchmarks/bench_gpu.py).
# Without a GPU the tests skip and the table is measured on the CPU (the fallback path), which
# is how the script was checked on a machine without one.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${1:-${OUT:-benchmarks/results/gpu}}
mkdir -p "$OUT_DIR"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" LUCYD_NO_PROGRESS=1
python - <<'PY' | tee "$OUT_DIR/device.txt"
import torch
print("torch", torch.__version__, "CUDA available:", torch.cuda.is_available())
if torch.cuda.is_available():
    print(torch.cuda.get_device_name(0), torch.version.cuda, f"{torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB")
PY
# the tests that need CUDA (they skip without it), then the engine's memory/FFT tests on the GPU box
timeout 600 python -m pytest -q -p no:cacheprovider -rs -k "cuda or gpu" tests/test_deconv.py \
    tests/test_deconv_memory.py tests/test_nets.py tests/test_train.py 2>&1 | tee "$OUT_DIR/tests.txt"
tests_rc=${PIPESTATUS[0]}
timeout 1200 python benchmarks/bench_gpu.py --out "$OUT_DIR/table.md" 2>&1 | tee "$OUT_DIR/bench.log"
bench_rc=${PIPESTATUS[0]}
echo "tests exit $tests_rc, table exit $bench_rc" | tee -a "$OUT_DIR/device.txt"
[ "$tests_rc" -eq 0 ] || [ "$tests_rc" -eq 5 ]  # 5: no test selected
[ "$bench_rc" -eq 0 ]
