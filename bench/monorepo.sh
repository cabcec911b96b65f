#!/usr/bin/env bash
# A synthetic monorepo of N services (default 200), one included build file each, a few shared
# stages and two templates; measures `stack check`, a warm no-op `stack build` and
# `stack affected` (seconds and peak RSS from /usr/bin/time -v, the median of REPS runs), then
# changes one file of one service and checks that the next build runs only that service's steps.
#
# Usage: [N=200] [REPS=5] [BENCH_DIR=/tmp/stack-monorepo] [STACK=path/to/stack] bench/monorepo.sh
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
n=${N:-200}
reps=${REPS:-5}
work=${BENCH_DIR:-/tmp/stack-monorepo}
note() { echo "bench: $*" >&2; }
[ -x /usr/bin/time ] || { note "GNU time is missing (apt-get install time)"; exit 2; }

if [ -z "${STACK:-}" ]; then
  note "building stack (release)"
  (cd "$repo" && cargo build --release --quiet)
  STACK=${CARGO_TARGET_DIR:-$repo/target}/release/stack
fi

# The monorepo: shared stages and templates at the top, one folder per service.
generate() {
  rm -rf "$work" && mkdir -p "$work/lib" "$work/services"
  cd "$work"
  cat > stack.kdl <<'KDL'
stack version=1
include "templates.kdl" "services/*/stack.kdl"
arg REGISTRY default="registry.example.com/mono"

stage shared {
    from "scratch"
    copy "lib/" to="/opt/lib/"
}

stage shared-etc {
    from shared
    file "/etc/os-release" "NAME=mono\n"
}
KDL
  cat > templates.kdl <<'KDL'
stack version=1

template app {
    param name
    param port type="int" default=8080
    copy "src/" to="/srv/${name}/"
    file "/srv/${name}/port" "${port}\n"
    env SERVICE="${name}" PORT="${port}"
    expose "${port}"
    cmd "/srv/${name}/main.sh"
}

template labelled {
    param team default="core"
    label "team"="${team}"
}
KDL
  printf 'lib\n' > lib/common.txt
  printf '**/*.md\n' > .stackignore
  # The store, the output and this script's files are not part of the repository.
  printf '.cache/\nstack-out/\n.time\n.err\n.events\n' > .gitignore
  for k in $(seq 1 "$n"); do
    i=$(printf '%03d' "$k")
    d=services/s$i
    mkdir -p "$d/src"
    base=shared; [ $((k % 2)) = 0 ] && base=shared-etc
    cat > "$d/stack.kdl" <<KDL
stack version=1

image s$i {
    from $base
    use app name="s$i" port=$((8000 + k))
    use labelled team="team-$((k % 7))"
    tag "\${REGISTRY}/s$i:latest"
}
KDL
    printf '#!/bin/sh\necho s%s\n' "$i" > "$d/src/main.sh"
    printf 'data %s\n' "$i" > "$d/src/data.txt"
    printf 'notes\n' > "$d/README.md"
  done
  git init -q && git add -A && git -c user.email=b@x -c user.name=b commit -qm start
}

# median seconds and median peak RSS (MB) of REPS runs of a stack command, from /usr/bin/time.
measure() {
  local label=$1; shift
  local times=() rss=()
  for _ in $(seq "$reps"); do
    /usr/bin/time -v -o "$work/.time" "$STACK" "$@" >/dev/null 2>"$work/.err" || {
      cat "$work/.err" >&2; note "$label failed"; exit 1; }
    times+=("$(awk -F': ' '/Elapsed/ {split($2, t, ":"); print t[1] * 60 + t[2]}' "$work/.time")")
    rss+=("$(awk -F': ' '/Maximum resident/ {printf "%.1f", $2 / 1024}' "$work/.time")")
  done
  local mt mr
  mt=$(printf '%s\n' "${times[@]}" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  mr=$(printf '%s\n' "${rss[@]}" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  printf '| %s | %s | %s |\n' "$label" "$mt" "$mr"
}

export STACK_CACHE_DIR=$work/.cache
note "generating $n services under $work"
generate
cd "$work"
note "first build"
"$STACK" build --quiet >/dev/null 2>&1 || "$STACK" build >/dev/null
echo "# $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, stack $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo '?'), N=$n services, REPS=$reps"
echo
echo "| command | seconds (median) | peak RSS MB (median) |"
echo "|---|---|---|"
measure "stack check" check
measure "stack build (warm, nothing changed)" build
printf 'changed\n' >> services/s007/src/data.txt
measure "stack affected --since HEAD (one file changed)" affected --since HEAD
echo
affected=$("$STACK" affected --since HEAD | tr '\n' ' ')
"$STACK" build --progress json 2>"$work/.events" >/dev/null
run=$(python3 -c '
import json, sys
ran = set()
for line in open(sys.argv[1]):
    if line.startswith("{"):
        e = json.loads(line)
        if e.get("event") == "step-finished" and e.get("status") == "ran":
            ran.add(e["step"]["stage"])
print(" ".join(sorted(ran)))' "$work/.events")
echo "one file changed in services/s007: affected = ${affected% }; images with steps run = $run"
git checkout -q -- .
