#!/usr/bin/env bash
# Compares stack with BuildKit (inside dockerd) and buildah on the shared benchmark workloads,
# in one run on one machine, and measures stack's peak memory on cold builds.
#
# Usage: [REPS=3] [WORKLOADS="w1-small w2-parallel w3-bigctx w4-monorepo"] \
#        [TOOLS="stack docker buildah"] [SHARED_BENCH=../shared/bench] [BENCH_DIR=/tmp/stack-bench] \
#        [STACK=path/to/stack] bench/run.sh
# Prints the raw "tool workload mode seconds" lines (medians of REPS), then a table of medians
# and ratios, then stack's peak memory. Tools that are unavailable are skipped with a note.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
shared=$(cd "${SHARED_BENCH:-$repo/../shared/bench}" && pwd) || {
  echo "bench: the shared benchmark scripts are missing; set SHARED_BENCH" >&2; exit 2; }
reps=${REPS:-3}
workloads=${WORKLOADS:-w1-small w2-parallel w3-bigctx w4-monorepo}
work=${BENCH_DIR:-/tmp/stack-bench}
export BASE=$work/base   # read by peers.sh (buildah's base image)
note() { echo "bench: $*" >&2; }

# stack, built in release mode unless STACK points at a binary.
if [ -z "${STACK:-}" ]; then
  note "building stack (release)"
  (cd "$repo" && cargo build --release --quiet)
  STACK=${CARGO_TARGET_DIR:-$repo/target}/release/stack
fi
STACK=$(cd "$(dirname "$STACK")" && pwd)/$(basename "$STACK")
export STACK

# The tools that can run here.
tools=""
for t in ${TOOLS:-stack docker buildah}; do
  case $t in
    stack) ok=1 ;;
    docker) docker info >/dev/null 2>&1 && ok=1 || { ok=0; note "skipping docker: no running dockerd"; } ;;
    buildah) command -v buildah >/dev/null && ok=1 || { ok=0; note "skipping buildah: not installed"; } ;;
    *) ok=0; note "skipping unknown tool $t" ;;
  esac
  [ "$ok" = 1 ] && tools="$tools $t"
done
tools=${tools# }
for w in $workloads; do
  case $w in w1-small|w2-parallel|w3-bigctx|w4-monorepo) ;; *) note "unknown workload $w"; exit 2 ;; esac
done

note "making the base image and the workloads under $work"
mkdir -p "$work"
bash "$shared/mkbase.sh" "$BASE" >/dev/null
bash "$shared/workloads.sh" "$work/workloads" "$BASE" >/dev/null

raw=$work/raw.txt; : > "$raw"
echo "# $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, stack $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo '?'), REPS=$reps, TOOLS=\"$tools\""
for w in $workloads; do
  note "timing $w ($tools)"
  TOOLS="$tools" bash "$shared/peers.sh" "$work/workloads/$w" "$reps" | tee -a "$raw"
done

echo
echo "| workload | mode | stack (s) | BuildKit (s) | buildah (s) | BuildKit/stack | buildah/stack |"
echo "|---|---|---|---|---|---|---|"
awk -v wls="$workloads" '
  { t[$1 " " $2 " " $3] = $4 }
  function get(tool, w, m) { k = tool " " w " " m; return (k in t) ? t[k] : "" }
  function fmt(x) { return x == "" ? "–" : sprintf("%.2f", x) }
  function ratio(a, b) { return (a == "" || b == "" || b + 0 == 0) ? "–" : sprintf("%.1f×", a / b) }
  END {
    n = split(wls, ws, " ")
    for (i = 1; i <= n; i++) for (j = 1; j <= 3; j++) {
      m = (j == 1) ? "cold" : (j == 2) ? "warm" : "incr"
      s = get("stack", ws[i], m); d = get("docker", ws[i], m); b = get("buildah", ws[i], m)
      printf "| %s | %s | %s | %s | %s | %s | %s |\n", ws[i], m, fmt(s), fmt(d), fmt(b), ratio(d, s), ratio(b, s)
    }
  }' "$raw"

# Peak memory of stack on a cold build (GNU time's maximum resident set size: the largest of
# stack and the processes it waited for, not their sum).
if [ ! -x /usr/bin/time ]; then
  note "installing GNU time for the memory figures"
  apt-get install -y -qq time >/dev/null 2>&1 || true
fi
if [ -x /usr/bin/time ]; then
  echo
  echo "| workload | stack cold build (s) | stack peak RSS (MiB) |"
  echo "|---|---|---|"
  for w in $workloads; do
    mem=$work/mem; rm -rf "$mem"; mkdir -p "$mem"
    (cd "$work/workloads/$w" && STACK_CACHE_DIR=$mem/cache /usr/bin/time -v -o "$mem/time.txt" \
      "$STACK" build stack.kdl --out "$mem/out" >/dev/null 2>&1) || { note "stack failed on $w"; continue; }
    awk -v w="$w" -F': ' '
      /Elapsed \(wall clock\)/ { n = split($2, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i] }
      /Maximum resident set size/ { kb = $2 }
      END { printf "| %s | %.2f | %.1f |\n", w, s, kb / 1024 }' "$mem/time.txt"
    rm -rf "$mem"
  done
else
  note "no /usr/bin/time: skipping the memory figures"
fi
