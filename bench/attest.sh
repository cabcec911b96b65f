#!/usr/bin/env bash
# The cost of `--sbom --provenance` on the shared workloads: cold (empty store) and warm
# (everything cached) builds of each workload with and without attestations, medians of REPS,
# and the bytes the attestations add (the documents beside the output and the layout's growth).
#
# Usage: [REPS=3] [WORKLOADS="w1-small w3-bigctx"] [SHARED_BENCH=../shared/bench]
#        [BENCH_DIR=/tmp/stack-bench] [STACK=path/to/stack] bench/attest.sh
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
shared=$(cd "${SHARED_BENCH:-$repo/../shared/bench}" && pwd)
reps=${REPS:-3}
workloads=${WORKLOADS:-w1-small w3-bigctx}
work=${BENCH_DIR:-/tmp/stack-bench}
if [ -z "${STACK:-}" ]; then
  (cd "$repo" && cargo build --release --quiet)
  STACK=${CARGO_TARGET_DIR:-$repo/target}/release/stack
fi
STACK=$(cd "$(dirname "$STACK")" && pwd)/$(basename "$STACK")
mkdir -p "$work"
[ -d "$work/base" ] || bash "$shared/mkbase.sh" "$work/base" >/dev/null
[ -d "$work/workloads/w1-small" ] || bash "$shared/workloads.sh" "$work/workloads" "$work/base" >/dev/null

now() { date +%s.%N; }
median() { sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
S=/tmp/stack-attest-bench
build() { # WORKLOAD FLAGS…
  local wl=$1; shift
  (cd "$work/workloads/$wl" && STACK_CACHE_DIR=$S/cache "$STACK" build stack.kdl --out $S/out/layout "$@" >/dev/null 2>&1)
}
timed() { local t0 t1; t0=$(now); build "$@"; t1=$(now); echo "$t1 - $t0" | bc; }

echo "# $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, stack $(git -C "$repo" rev-parse --short HEAD), REPS=$reps"
echo "| workload | mode | plain (s) | --sbom --provenance (s) | added (s) |"
echo "|---|---|---|---|---|"
for wl in $workloads; do
  for mode in cold warm; do
    for flags in "" "--sbom --provenance"; do
      for _ in $(seq "$reps"); do
        if [ $mode = cold ]; then rm -rf $S; else build "$wl" $flags; fi
        # shellcheck disable=SC2086
        timed "$wl" $flags
      done | median > $S.$mode.${flags:+attest}
    done
    plain=$(cat $S.$mode.); attest=$(cat $S.$mode.attest)
    printf '| %s | %s | %.2f | %.2f | %+.2f |\n' "$wl" $mode "$plain" "$attest" "$(echo "$attest - $plain" | bc)"
  done
  rm -rf $S; build "$wl"; plain_size=$(du -sb $S/out/layout | cut -f1)
  rm -rf $S; build "$wl" --sbom --provenance; attest_size=$(du -sb $S/out/layout | cut -f1)
  beside=$(cat $S/out/*.spdx.json $S/out/*.provenance.json | wc -c)
  echo "  $wl: layout grows by $((attest_size - plain_size)) bytes; SBOM + provenance files $beside bytes"
done
rm -rf $S $S.*
