#!/usr/bin/env bash
# Multi-platform builds: the w1 workload for linux/amd64 + linux/arm64 (arm64 `run` steps under
# QEMU emulation), stack's one two-platform build beside BuildKit's, and a `run "true"` step
# native against emulated. dockerd 20.10 (Debian 12) has no buildx, so its BuildKit cannot
# make one multi-platform image: it is timed building the two platforms one after the other
# (`docker build --platform`), which is what it can do. Cold builds (empty caches), medians.
#
# Usage: [REPS=3] [SHARED_BENCH=../shared/bench] [BENCH_DIR=/tmp/stack-platforms-bench] \
#        [STACK=path/to/stack] bench/platforms.sh
# Needs: qemu-user-static with its binfmt_misc registration (update-binfmts --enable
# qemu-aarch64), umoci, skopeo; dockerd for the BuildKit figures (started when absent, as root).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
shared=$(cd "${SHARED_BENCH:-$repo/../shared/bench}" && pwd)
reps=${REPS:-3}
work=${BENCH_DIR:-/tmp/stack-platforms-bench}
note() { echo "platforms-bench: $*" >&2; }
now() { date +%s.%N; }
median() { sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }

if [ -z "${STACK:-}" ]; then
  note "building stack (release)"
  (cd "$repo" && cargo build --release --quiet)
  STACK=${CARGO_TARGET_DIR:-$repo/target}/release/stack
fi
STACK=$(cd "$(dirname "$STACK")" && pwd)/$(basename "$STACK")
if ! docker info >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v dockerd >/dev/null; then
  note "starting dockerd"
  (dockerd --iptables=false --ip6tables=false --bridge=none >"$work.dockerd.log" 2>&1 &)
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
fi
docker_ok=0; docker info >/dev/null 2>&1 && docker_ok=1

rm -rf "$work"; mkdir -p "$work"
base=$(bash "$shared/mkbase-multi.sh" "$work/base")
bash "$shared/workloads.sh" "$work/wl" "$work/base" >/dev/null 2>&1 || true
w=$work/wl/w1-small
# The same workload on the two-platform base.
sed -i "s|from \"oci:[^\"]*\"|from \"oci:$base:base\"|; s|^image w1 {|platforms \"linux/amd64\" \"linux/arm64\"\nimage w1 {|" "$w/stack.kdl"
sed -i 's|^FROM .*|ARG BASE\nFROM ${BASE}|' "$w/Dockerfile"
cat > "$work/true.kdl" <<K
stack version=1
image t {
    from "oci:$base:base"
    run "true"
}
K

stack_two() { rm -rf "$work/sc"; (cd "$w" && STACK_CACHE_DIR=$work/sc "$STACK" build stack.kdl --out "$work/out" >/dev/null 2>&1); }
docker_two() {
  docker builder prune -af >/dev/null 2>&1 || true
  for a in amd64 arm64; do
    DOCKER_BUILDKIT=1 /usr/bin/docker build -q --network=host --platform linux/$a --build-arg BASE=stackbench/base:$a -t sb-w1-$a "$w" >/dev/null
  done
}
true_on() { # PLATFORM: the duration of the step, as stack reports it
  rm -rf "$work/st"
  STACK_CACHE_DIR=$work/st "$STACK" build "$work/true.kdl" --platform "$1" --progress plain --out "$work/t" 2>&1 \
    | grep -o 'done in [0-9.]*s' | grep -o '[0-9.]*'
}
time_it() { local t0 t1; t0=$(now); "$@"; t1=$(now); printf '%.3f\n' "$(echo "$t1 - $t0" | bc)"; }

if [ $docker_ok = 1 ]; then
  for a in amd64 arm64; do
    skopeo copy -q --override-arch $a "oci:$base:base" "docker-archive:$work/base-$a.tar:stackbench/base:$a"
    docker load -q -i "$work/base-$a.tar" >/dev/null
  done
fi

echo "# $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, stack $(cd "$repo" && git rev-parse --short HEAD), REPS=$reps, w1-small for linux/amd64 + linux/arm64"
echo
echo "| what | median (s) |"
echo "|---|---|"
native=$(for _ in $(seq "$reps"); do true_on linux/amd64; done | median)
emulated=$(for _ in $(seq "$reps"); do true_on linux/arm64; done | median)
echo "| stack: \`run \"true\"\` native (step time) | $native |"
echo "| stack: \`run \"true\"\` emulated arm64 (step time) | $emulated |"
s=$(for _ in $(seq "$reps"); do time_it stack_two; done | median)
echo "| stack: w1, one two-platform build (an index) | $s |"
if [ $docker_ok = 1 ]; then
  d=$(for _ in $(seq "$reps"); do time_it docker_two; done | median)
  echo "| BuildKit (dockerd 20.10): w1, amd64 then arm64 (two images; no index without buildx) | $d |"
  echo
  echo "stack / BuildKit: $(printf '%.2f' "$(echo "scale=4; $s / $d" | bc)")× the time"
else
  echo
  echo "(dockerd is not running: no BuildKit figure)"
fi
