#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds every configuration
# the suite covers, and runs the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/fetch-gpt2-vocab.sh  # GPT-2 vocabulary for --tokenizer gpt2, into data/gpt2
jobs=$(nproc)

echo "== default build (SIMD dispatch, warnings as errors)"
scripts/build.sh build -DCLLM_WERROR=ON
ctest --test-dir build --output-on-failure -j "$jobs"

echo "== scalar-only build (CLLM_SIMD_DISPATCH=OFF, no AVX code): kernel tests and cllm"
cmake -S . -B build-scalar -G Ninja -DCMAKE_BUILD_TYPE=Release -DCLLM_SIMD_DISPATCH=OFF -DCLLM_WERROR=ON >/dev/null
cmake --build build-scalar --target test_kernels cllm
build-scalar/cllm info
ctest --test-dir build-scalar --output-on-failure -j "$jobs" -L kernels

# Sanitizer stages: the whole unit and end-to-end suite (the cllm binary the
# end-to-end tests run is built with the same sanitizer). Open MPI's own
# findings are suppressed, see tests/sanitizers/ and tests/dist/CMakeLists.txt.
echo "== ThreadSanitizer build: the whole suite"
SECONDS=0
cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=Release -DCLLM_SANITIZE=thread -DCLLM_WERROR=ON >/dev/null
cmake --build build-tsan
TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$PWD/tests/sanitizers/tsan_openmpi.supp" \
  ctest --test-dir build-tsan --output-on-failure -j "$jobs" --timeout 900
echo "   tsan stage: ${SECONDS} s"

echo "== AddressSanitizer + UndefinedBehaviorSanitizer build: the whole suite"
SECONDS=0
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Release -DCLLM_SANITIZE=address -DCLLM_WERROR=ON >/dev/null
cmake --build build-asan
UBSAN_OPTIONS="print_stacktrace=1" ctest --test-dir build-asan --output-on-failure -j "$jobs" --timeout 900
echo "   asan stage: ${SECONDS} s"

echo "== libFuzzer (clang, address+undefined): safetensors/weights, .tok and its tokenizer record, GPT-2 tokenizer and checkpoint manifest readers, 60 s each"
SECONDS=0
cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER=clang++ -DCLLM_FUZZ=ON \
  -DCLLM_BUILD_TESTS=OFF >/dev/null
cmake --build build-fuzz --target fuzz_safetensors fuzz_token_file fuzz_token_record fuzz_gpt2_encode fuzz_gpt2_files fuzz_manifest
fuzz/run.sh build-fuzz 60
echo "   fuzz stage: ${SECONDS} s"
