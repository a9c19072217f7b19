#!/usr/bin/env bash
# bench/compare.sh [--quick] [--steps N] [--warmup N] [--configs tiny,small,medium]
#                  [--threads 1,2] [--precisions fp32,bf16] [--cllm PATH] [--out FILE.md]
#
# cllm against the PyTorch reference (bench/torch_gpt.py: same model, same
# AdamW, same bytes) on the tiny, small and medium configs at 1 and 2
# threads, with the same global batch, learning rate and number of steps, in
# each precision: fp32 against PyTorch fp32, bf16 (cllm --precision bf16)
# against PyTorch with torch.autocast("cpu", torch.bfloat16). The default
# precisions are fp32, and bf16 where `cllm info` says the CPU has it.
# Writes a markdown file (to paste into docs/BENCHMARKS.md) with:
#   - `cllm bench model`: single-thread forward+backward tokens/s, GFLOP/s and
#     MFU against the FP32 FMA peak (and the bf16 matmul peak) measured in
#     the same run;
#   - training: tokens/s (median of the steps after the warm-up), the ratio
#     cllm/torch, MFU (against threads x the measured per-core peak), peak
#     RSS and the loss after the same steps.
# Prints the machine and every command it runs.
#
# Needs: a built cllm (default build/cllm), Debian's python3-torch and
# libopenblas0-openmp (bench/torch_gpt.py runs torch on OpenBLAS's OpenMP
# build; see its header). --quick runs 4 steps per run (a check that it all
# works, not a measurement).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cllm="$repo/build/cllm"
steps=30 warmup=5 configs=tiny,small,medium threads_list=1,2 precisions="" out=compare.md
python=/usr/bin/python3  # Debian's, which has torch
while [[ $# -gt 0 ]]; do
  case $1 in
    --quick) steps=4 warmup=1 ;;
    --steps) steps=$2; shift ;;
    --warmup) warmup=$2; shift ;;
    --configs) configs=$2; shift ;;
    --threads) threads_list=$2; shift ;;
    --precisions) precisions=$2; shift ;;
    --cllm) cllm=$2; shift ;;
    --out) out=$2; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "compare.sh: error: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[[ -x $cllm ]] || { echo "compare.sh: error: no cllm binary at $cllm (build it, or pass --cllm PATH)" >&2; exit 1; }
[[ $steps =~ ^[0-9]+$ && $warmup =~ ^[0-9]+$ && $steps -gt $warmup ]] ||
  { echo "compare.sh: error: --steps ($steps) must be a number larger than --warmup ($warmup)" >&2; exit 1; }
"$python" -c 'import torch' 2>/dev/null ||
  { echo "compare.sh: error: $python cannot import torch: apt-get install python3-torch libopenblas0-openmp" >&2; exit 1; }

if [[ -z $precisions ]]; then
  precisions=fp32
  "$cllm" info | grep -q '^precision auto *: bf16' && precisions=fp32,bf16
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

run() {  # prints the command, then runs it with stdout to the file $1
  local log=$1; shift
  echo "+ $*" >&2
  "$@" >"$log"
}

echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores online; $(uname -sr)"
echo "cllm: $cllm ($(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown commit))"

# The same bytes for both trainers: the repository's own text, in a fixed order.
git -C "$repo" ls-files '*.md' '*.h' '*.cpp' | sort | (cd "$repo" && xargs cat) >"$work/corpus.txt"
echo "corpus: $(wc -c <"$work/corpus.txt") bytes of the repository's .md/.h/.cpp files"

run "$work/model.json" "$cllm" bench model --configs "$configs" --precision "$precisions" --steps "$steps" \
  --warmup "$warmup" --json

# bench/torch_gpt.py's CONFIGS (and cllm's bench configs). cllm splits the
# batch into 2 micro-batches: 2 threads have one each, 1 thread runs both.
declare -A layers=([tiny]=2 [small]=4 [medium]=6) dim=([tiny]=128 [small]=256 [medium]=384)
declare -A heads=([tiny]=4 [small]=8 [medium]=6) context=([tiny]=64 [small]=128 [medium]=256)
declare -A batch=([tiny]=16 [small]=8 [medium]=4)
IFS=, read -ra config_names <<<"$configs"
IFS=, read -ra thread_counts <<<"$threads_list"
IFS=, read -ra precision_names <<<"$precisions"
declare -A autocast=([fp32]=none [bf16]=bf16)
for c in "${config_names[@]}"; do
  [[ -n ${batch[$c]:-} ]] || { echo "compare.sh: error: unknown config '$c': expected tiny, small or medium" >&2; exit 1; }
  for t in "${thread_counts[@]}"; do
    for p in "${precision_names[@]}"; do
      [[ -n ${autocast[$p]:-} ]] || { echo "compare.sh: error: unknown precision '$p': expected fp32 or bf16" >&2; exit 1; }
      run "$work/cllm-$c-$t-$p.log" "$cllm" train --data "$work/corpus.txt" --val-fraction 0 --out "$work/run-$c-$t" \
        --layers "${layers[$c]}" --dim "${dim[$c]}" --heads "${heads[$c]}" --context "${context[$c]}" \
        --batch $((batch[$c] / 2)) --accum 2 --threads "$t" --steps "$steps" --precision "$p" \
        --lr 3e-4 --schedule constant --weight-decay 0.1 --beta1 0.9 --beta2 0.999 --clip 0 \
        --sample-tokens 0 --log-every 1000000
      cp "$work/run-$c-$t/metrics.jsonl" "$work/cllm-$c-$t-$p.jsonl"
      rm -rf "$work/run-$c-$t"
      run "$work/torch-$c-$t-$p.json" env OMP_NUM_THREADS="$t" "$python" "$repo/bench/torch_gpt.py" --config "$c" \
        --threads "$t" --steps "$steps" --warmup "$warmup" --data "$work/corpus.txt" --lr 3e-4 --weight-decay 0.1 \
        --autocast "${autocast[$p]}" --json
    done
  done
done

"$python" - "$work" "$configs" "$threads_list" "$precisions" "$warmup" "$steps" "$out" <<'EOF'
import json, re, statistics, sys
work, configs, threads, precisions, warmup, steps, out = sys.argv[1:]
configs, threads, warmup = configs.split(","), [int(t) for t in threads.split(",")], int(warmup)
precisions = precisions.split(",")
model = json.load(open(f"{work}/model.json"))
peak = model["fma_peak_gflops"]
flops = {r["config"]: r["flops_per_token"] for r in model["rows"]}
lines = [f"FP32 FMA peak {peak:.1f} GFLOP/s per core ({model['fma_isa']}); bf16 matmul peak "
         f"{model['bf16_peak_gflops'] or 0:.1f} GFLOP/s ({model['bf16']}); sgemm {model['sgemm']}; "
         f"FLOPs per token: {model['flops_formula']}.", "",
         "`cllm bench model` (one thread, forward+backward, median; MFU against the FP32 peak, "
         "MFU bf16 against the bf16 peak):", "",
         "| config | precision | params | tokens/s | GFLOP/s | MFU | MFU bf16 |", "|---|---|---:|---:|---:|---:|---:|"]
for r in model["rows"]:
    mfu_bf16 = f"{100 * r['mfu_bf16_peak']:.1f}%" if r["mfu_bf16_peak"] is not None else "-"
    lines.append(f"| {r['config']} | {r['precision']} | {r['params']:,} | {r['tokens_per_s']:,.0f} | {r['gflops']:.1f} "
                 f"| {100 * r['mfu']:.1f}% | {mfu_bf16} |")
lines += ["", f"Training, {steps} steps, tokens/s = median of steps {warmup + 1}..{steps}; "
          "MFU against threads x the per-core FP32 peak; loss after the last step; torch bf16 = autocast:", "",
          "| config | threads | precision | cllm tokens/s | torch tokens/s | cllm/torch | cllm MFU | torch MFU "
          "| cllm peak RSS MiB | torch peak RSS MiB | cllm loss | torch loss |",
          "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
for c in configs:
    for t in threads:
      for p in precisions:
        rows = [json.loads(l) for l in open(f"{work}/cllm-{c}-{t}-{p}.jsonl") if l.strip()]
        rows = [r for r in rows if "tokens_per_s" in r]
        cllm_tps = statistics.median(r["tokens_per_s"] for r in rows[warmup:])
        cllm_loss = rows[-1]["loss"]
        rss = re.search(r"peak RSS\s+([0-9.]+) MiB", open(f"{work}/cllm-{c}-{t}-{p}.log").read())
        cllm_rss = float(rss.group(1)) if rss else float("nan")
        torch = json.loads(open(f"{work}/torch-{c}-{t}-{p}.json").read().strip().splitlines()[-1])
        mfu = lambda tps: 100 * tps * flops[c] / (peak * 1e9 * t)
        lines.append(f"| {c} | {t} | {p} | {cllm_tps:,.0f} | {torch['tokens_per_s']:,.0f} | {cllm_tps / torch['tokens_per_s']:.2f} "
                     f"| {mfu(cllm_tps):.1f}% | {mfu(torch['tokens_per_s']):.1f}% | {cllm_rss:.0f} | {torch['peak_rss_mb']:.0f} "
                     f"| {cllm_loss:.4f} | {torch['final_loss']:.4f} |")
open(out, "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
EOF
echo "wrote $out"
