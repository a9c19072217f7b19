#!/usr/bin/env bash
# The main job on a built-in default: installs what is missing, builds, and
# shows what this machine offers.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh build
build/cllm info
build/cllm bench kernels --quick
