#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds every configuration
# the suite covers, and runs the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
jobs=$(nproc)

echo "== default build (SIMD dispatch, warnings as errors)"
scripts/build.sh build -DCLLM_WERROR=ON
ctest --test-dir build --output-on-failure -j "$jobs"

echo "== scalar-only build (CLLM_SIMD_DISPATCH=OFF): kernel tests"
scripts/build.sh build-scalar -DCLLM_SIMD_DISPATCH=OFF -DCLLM_WERROR=ON
ctest --test-dir build-scalar --output-on-failure -j "$jobs" -L kernels
