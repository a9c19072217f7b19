#!/usr/bin/env bash
# The main job on a built-in default: installs what is missing (Debian's
# fortunes corpus included), builds, trains a small GPT on the fortunes for
# about two minutes on all cores, then prints generated text.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh fortunes
scripts/fetch-gpt2-vocab.sh  # GPT-2 vocabulary for --tokenizer gpt2, into data/gpt2
scripts/build.sh build

out=out/demo
rm -rf "$out"  # the demo always starts fresh; real runs continue with --resume
build/cllm train --data /usr/share/games/fortunes --out "$out" \
  --layers 4 --dim 256 --heads 8 --context 128 --batch 8 --accum 2 \
  --steps 800 --lr 1e-3 --min-lr 1e-4 --warmup 100 --eval-every 200 --log-every 25 \
  --sample-tokens 0
echo
echo "== generated from $out"
build/cllm generate --ckpt "$out" --prompt "The meaning of life is" --tokens 300 --temperature 0.8 --seed 7
