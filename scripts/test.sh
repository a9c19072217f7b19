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

echo "== scalar-only build (CLLM_SIMD_DISPATCH=OFF, no AVX code): kernel tests and cllm"
cmake -S . -B build-scalar -G Ninja -DCMAKE_BUILD_TYPE=Release -DCLLM_SIMD_DISPATCH=OFF -DCLLM_WERROR=ON >/dev/null
cmake --build build-scalar --target test_kernels cllm
build-scalar/cllm info
ctest --test-dir build-scalar --output-on-failure -j "$jobs" -L kernels

echo "== ThreadSanitizer build: worker pool, gradient pipeline and optimizer tests"
cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=Release -DCLLM_SANITIZE=thread -DCLLM_WERROR=ON >/dev/null
cmake --build build-tsan --target test_parallel test_optim
TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
  ctest --test-dir build-tsan --output-on-failure -j "$jobs" -L 'parallel|optim'

echo "== libFuzzer (clang, address+undefined): safetensors/weights, .tok and GPT-2 tokenizer readers, 60 s each"
SECONDS=0
cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER=clang++ -DCLLM_FUZZ=ON \
  -DCLLM_BUILD_TESTS=OFF >/dev/null
cmake --build build-fuzz --target fuzz_safetensors fuzz_token_file fuzz_gpt2_encode fuzz_gpt2_files
fuzz/run.sh build-fuzz 60
echo "   fuzz stage: ${SECONDS} s"
