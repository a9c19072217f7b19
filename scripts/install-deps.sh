#!/usr/bin/env bash
# install-deps.sh [EXTRA_PACKAGE...]: installs the Debian 12 packages cllm
# needs to build and test, plus any named extra (the demo asks for fortunes);
# does nothing when they are all present. Uses sudo when not run as root.
set -euo pipefail

packages=(
  g++ cmake ninja-build pkg-config
  libhwy-dev           # SIMD dispatch (Highway)
  libdnnl-dev          # sgemm (oneDNN)
  ocl-icd-opencl-dev   # oneDNN's CMake config requires OpenCL (a Recommends, skipped by --no-install-recommends)
  libopenblas-dev      # sgemm fallback / comparison
  libcli11-dev         # command line parsing
  nlohmann-json3-dev   # JSON (safetensors headers, metrics)
  libfmt-dev           # formatting
  libxxhash-dev        # xxHash64 of checkpoint files (manifests)
  libgtest-dev         # tests
  libicu-dev           # Unicode letter/number classes (GPT-2 pre-tokenizer)
  clang libclang-rt-14-dev  # libFuzzer targets (fuzz/, CLLM_FUZZ)
  openmpi-bin libopenmpi-dev  # data-parallel training across processes (mpirun)
  libxml2-utils        # xmllint: the benchmark tests check that SVG plots parse
  "$@"
)

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$p")
done
# node + npm run the reference GPT-2 encoder in the tokenizer test. Checked by
# command: a NodeSource nodejs bundles npm and conflicts with Debian's npm.
command -v node >/dev/null && command -v npm >/dev/null || missing+=(nodejs npm)
[[ ${#missing[@]} -eq 0 ]] && exit 0

echo "Installing Debian packages: ${missing[*]}"
sudo_cmd=()
[[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
