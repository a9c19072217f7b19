#!/usr/bin/env bash
# kill_rank.sh MPIEXEC CLLM: a rank that dies (SIGKILL) or cannot read its
# data ends every rank within 30 s with a non-zero exit, and the last
# checkpoint stays whole.
set -uo pipefail
mpiexec=$1 cllm=$2
dir=$(mktemp -d /tmp/cllm_dist_kill.XXXXXX)
trap 'rm -rf "$dir"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
for i in $(seq 300); do echo "the cat and the dog $i saw alpha beta gamma delta."; done > "$dir/corpus.txt"
train=(train --layers 2 --dim 32 --heads 4 --context 32 --batch 2 --accum 4 --threads 1 --sample-tokens 0 --lr 1e-3)
fail() { echo "FAIL: $*"; exit 1; }

# Waits up to $2 seconds for pid $1; sets rc, or fails.
wait_for_exit() {
  local pid=$1 limit=$2 start=$SECONDS
  while kill -0 "$pid" 2>/dev/null; do
    (( SECONDS - start < limit )) || { kill -9 "$pid"; fail "ranks still running ${limit} s later"; }
    sleep 0.2
  done
  wait "$pid"; rc=$?
  echo "all ranks ended $(( SECONDS - start )) s later, exit code $rc"
}

echo "== SIGKILL of rank 1 of 3 mid-run"
"$mpiexec" --oversubscribe -np 3 bash -c \
  'echo $$ > '"$dir"'/pid.$OMPI_COMM_WORLD_RANK; exec "$0" "$@"' \
  "$cllm" "${train[@]}" --data "$dir/corpus.txt" --steps 100000 --ckpt-every 2 --out "$dir/run" \
  > "$dir/kill.log" 2>&1 &
mpirun_pid=$!
for _ in $(seq 600); do  # until a few steps (and a checkpoint) are done
  [[ -f $dir/run/metrics.jsonl && $(wc -l < "$dir/run/metrics.jsonl") -ge 5 ]] && break
  kill -0 $mpirun_pid 2>/dev/null || { cat "$dir/kill.log"; fail "the run ended before the kill"; }
  sleep 0.1
done
[[ -f $dir/pid.1 ]] || fail "rank 1 wrote no pid"
kill -9 "$(cat "$dir/pid.1")"; killed_at=$SECONDS
wait_for_exit $mpirun_pid 30
(( rc != 0 )) || { cat "$dir/kill.log"; fail "exit code 0 after a rank was killed"; }
# mpirun may return while the ranks it signalled are still on their way out:
# each must be gone (or a zombie nobody reaped yet, in containers without
# init) within the same 30 s of the kill.
for r in 0 2; do
  while state=$(ps -o stat= -p "$(cat "$dir/pid.$r")" 2>/dev/null || true)
        [[ -n $state && $state != Z* ]]; do
    (( SECONDS - killed_at < 30 )) || fail "rank $r still running 30 s after the kill (state $state)"
    sleep 0.2
  done
done
"$cllm" generate --ckpt "$dir/run" --tokens 4 --prompt "the" > "$dir/gen.log" 2>&1 ||
  { cat "$dir/gen.log"; fail "the last checkpoint does not load"; }

echo "== rank 1 of 2 cannot read its data"
"$mpiexec" --oversubscribe -np 2 bash -c \
  'd='"$dir"'/corpus.txt; [[ $OMPI_COMM_WORLD_RANK == 1 ]] && d='"$dir"'/missing.txt; exec "$0" "$@" --data "$d"' \
  "$cllm" "${train[@]}" --steps 5 --out "$dir/run2" > "$dir/data.log" 2>&1 &
wait_for_exit $! 30
(( rc != 0 )) || { cat "$dir/data.log"; fail "exit code 0 though rank 1 has no data"; }
grep -q "cllm: error: rank 1 of 2: .*missing.txt" "$dir/data.log" ||
  { cat "$dir/data.log"; fail "no message naming rank 1 and the missing file"; }
echo PASS
