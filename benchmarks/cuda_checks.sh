#!/usr/bin/env bash
# The GPU checks of issue #15 in one command: the tests that take the `device` fixture on CUDA
# (float32 == CPU, float16/bfloat16 within their DN bounds), then PanTiny-Big's speed in float32 and
# float16 with its DN deviation. Output also goes to ${OUT:-.}.
#   bash benchmarks/cuda_checks.sh [SIZE]      # SIZE: PAN side of the speed scene (default 4096)
# Needs CUDA torch plus pantiny's other dependencies. On a lent machine whose image has torch but not
# rasterio (no network there), bring wheels for Python 3.12 from here first, e.g.
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl \
#       rasterio affine click cligj click-plugins pyparsing
# and start the command there (carry .whl) with
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD
set -uo pipefail
py=${PYTHON:-python3}
out=${OUT:-.}
size=${1:-4096}
export PYTHONUNBUFFERED=1
$py -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.__version__, torch.cuda.get_device_name(0))" || exit 1
$py -m pytest -q -p no:cacheprovider --device cuda tests/test_precision.py tests/test_api.py tests/test_layerwise.py 2>&1 \
    | tee "$out/cuda_tests.log" | tail -5
$py benchmarks/infer_speed.py --device cuda --size "$size" --quick --no-memory --half float16 2>&1 \
    | tee "$out/cuda_speed.log"
