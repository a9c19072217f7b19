#!/usr/bin/env bash
# fuzz/run.sh BUILD_DIR SECONDS: runs every libFuzzer target for SECONDS each,
# two at a time, from the committed seed corpus (new inputs go to
# BUILD_DIR/fuzz-work, not into fuzz/corpus). Fails when any target finds a
# crash, leak, timeout or out-of-memory; the input is left in BUILD_DIR/fuzz-work.
set -euo pipefail
build=$1 seconds=$2
cd "$(dirname "$0")/.."
targets=(safetensors token_file token_record gpt2_encode gpt2_files manifest)
work="$build/fuzz-work"
mkdir -p "$work"

run_one() {
  local t=$1
  mkdir -p "$work/$t"
  # -rss_limit_mb also caps single allocations: a reader that sizes a buffer
  # from a lying header fails here.
  "$build/fuzz/fuzz_$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=1024 -print_final_stats=1 \
    -artifact_prefix="$work/$t-" "$work/$t" "fuzz/corpus/$t" >"$work/$t.log" 2>&1
}

failed=0
for ((i = 0; i < ${#targets[@]}; i += 2)); do
  pids=()
  for t in "${targets[@]:i:2}"; do
    run_one "$t" & pids+=("$!:$t")
  done
  for p in "${pids[@]}"; do
    if wait "${p%%:*}"; then status=ok; else status=FAILED; failed=1; fi
    t=${p#*:}
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$work/$t.log" | grep -o '[0-9]*$' || echo '?')
    cov=$(grep -o 'cov: [0-9]*' "$work/$t.log" | tail -1 || true)
    echo "fuzz_$t: $status, $runs runs, $cov"
    [[ $status == ok ]] || tail -40 "$work/$t.log"
  done
done
exit $failed
