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
# Chosen by measurement (docs/BENCHMARKS.md, "The demo"): in two minutes a
# narrow model at a high learning rate sees ~3x the tokens of a 256-wide one
# and ends lower.
build/cllm train --data /usr/share/games/fortunes --out "$out" \
  --layers 4 --dim 128 --heads 4 --context 128 --batch 16 --accum 2 \
  --steps 1500 --lr 6e-3 --min-lr 6e-4 --warmup 100 --eval-every 250 --eval-batches 32 --log-every 50 \
  --sample-tokens 0
echo
echo "== generated from $out"
build/cllm generate --ckpt "$out" --prompt "The meaning of life is" --tokens 300 --temperature 0.8 --seed 7
