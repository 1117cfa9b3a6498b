#!/usr/bin/env bash
# The GPU checks of issue #15 in one command, for a machine with CUDA torch and pantiny[test] installed:
# the tests that take the `device` fixture on CUDA (float32 == CPU, float16/bfloat16 within their DN
# bounds), then PanTiny-Big's speed in float32 and float16 with its DN deviation. Writes to ${OUT:-.}.
#   bash benchmarks/cuda_checks.sh [SIZE]      # SIZE: PAN side of the speed scene (default 4096)
set -uo pipefail
out=${OUT:-.}
size=${1:-4096}
export PYTHONUNBUFFERED=1
python -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name(0))" || exit 1
python -m pytest -q --device cuda tests/test_precision.py tests/test_api.py tests/test_layerwise.py 2>&1 \
    | tee "$out/cuda_tests.log" | tail -5
python benchmarks/infer_speed.py --device cuda --size "$size" --quick --no-memory --half float16 2>&1 \
    | tee "$out/cuda_speed.log"
