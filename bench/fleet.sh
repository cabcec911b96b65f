#!/usr/bin/env bash
# The "second machine" of a CI fleet: the w4 monorepo built with an empty local cache and a
# warm registry cache, stack (`--cache-from`, its registry step cache) beside BuildKit
# (`--cache-from` an inline-cache image, `BUILDKIT_INLINE_CACHE=1`, what dockerd 20.10 offers;
# `docker builder prune -af` and the images removed before each build). One local registry
# (Debian's docker-registry, on loopback) holds both caches; the bytes each tool downloads
# are summed from the registry's access log (GET of blobs).
#
# Usage: [REPS=5] [SHARED_BENCH=../shared/bench] [BENCH_DIR=/tmp/stack-fleet-bench] \
#        [STACK=path/to/stack] bench/fleet.sh
# Needs: docker-registry, and a running dockerd for the BuildKit figures (started when absent
# and we are root: dockerd --iptables=false --ip6tables=false --bridge=none).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
shared=$(cd "${SHARED_BENCH:-$repo/../shared/bench}" && pwd)
reps=${REPS:-5}
work=${BENCH_DIR:-/tmp/stack-fleet-bench}
port=${PORT:-5099}
note() { echo "fleet-bench: $*" >&2; }
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
bash "$shared/mkbase.sh" "$work/base" >/dev/null
bash "$shared/workloads.sh" "$work/workloads" "$work/base" >/dev/null
wl=$work/workloads/w4-monorepo

cat > "$work/registry.yml" <<YML
version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: $work/registry
http:
  addr: 127.0.0.1:$port
YML
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
registry=$!
trap 'kill $registry 2>/dev/null || true' EXIT
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done

# Bytes of blobs the registry served since line $1 of its log.
served() { tail -n +"$1" "$work/registry.log" | { grep -a -oE '"GET /v2/[^ ]*/blobs/sha256:[0-9a-f]+ HTTP/1.1" 200 [0-9]+' || true; } | awk '{s += $NF} END {print s + 0}'; }
log_lines() { grep -a -c '' "$work/registry.log" || true; }

cache=127.0.0.1:$port/stack-cache
note "machine A: stack fills its cache"
(cd "$wl" && STACK_CACHE_DIR=$work/a "$STACK" build --cache-to "$cache" --out "$work/a.out" >/dev/null 2>&1)
services=$(grep -oE '^image svc[0-9]+' "$wl/stack.kdl" | awk '{print $2}')

for r in $(seq "$reps"); do
  rm -rf "$work/b" "$work/b.out"
  start=$(log_lines)
  t0=$(now)
  (cd "$wl" && STACK_CACHE_DIR=$work/b "$STACK" build --cache-from "$cache" --out "$work/b.out" >"$work/b.txt" 2>&1)
  t1=$(now)
  grep -q " 0 step(s) run" "$work/b.txt" || { note "stack ran steps on machine B:"; cat "$work/b.txt" >&2; exit 1; }
  echo "$(echo "$t1 - $t0" | bc) $(served "$start")"
done > "$work/stack.txt"

if [ "$docker_ok" = 1 ]; then
  note "machine A: BuildKit pushes inline-cache images"
  for s in $services; do
    DOCKER_BUILDKIT=1 /usr/bin/docker build -q --network=host --build-arg BUILDKIT_INLINE_CACHE=1 \
      --target "$s" -t "127.0.0.1:$port/bk/$s:cache" "$wl" >/dev/null
    docker push -q "127.0.0.1:$port/bk/$s:cache" >/dev/null
  done
  for r in $(seq "$reps"); do
    docker builder prune -af >/dev/null 2>&1 || true
    docker images -q "127.0.0.1:$port/bk/*" | xargs -r docker rmi -f >/dev/null 2>&1 || true
    docker images -q 'sb-fleet-*' | xargs -r docker rmi -f >/dev/null 2>&1 || true
    start=$(log_lines)
    t0=$(now)
    for s in $services; do
      DOCKER_BUILDKIT=1 /usr/bin/docker build -q --network=host --cache-from "127.0.0.1:$port/bk/$s:cache" \
        --target "$s" -t "sb-fleet-$s" "$wl" >/dev/null
    done
    t1=$(now)
    echo "$(echo "$t1 - $t0" | bc) $(served "$start")"
  done > "$work/docker.txt"
fi

echo "# $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, stack $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo '?'), REPS=$reps, w4-monorepo, second machine (empty local cache, warm registry cache)"
echo
echo "| tool | median build (s) | median bytes downloaded |"
echo "|---|---|---|"
s_time=$(awk '{print $1}' "$work/stack.txt" | median); s_bytes=$(awk '{print $2}' "$work/stack.txt" | median)
printf "| stack --cache-from | %.3f | %s |\n" "$s_time" "$s_bytes"
if [ -f "$work/docker.txt" ]; then
  d_time=$(awk '{print $1}' "$work/docker.txt" | median); d_bytes=$(awk '{print $2}' "$work/docker.txt" | median)
  printf "| BuildKit --cache-from (inline cache) | %.3f | %s |\n" "$d_time" "$d_bytes"
  echo
  awk -v s="$s_time" -v d="$d_time" 'BEGIN { printf "stack / BuildKit: %.2f× the time (target ≤ 0.2×)\n", s / d }'
else
  note "no dockerd: BuildKit not measured"
fi
