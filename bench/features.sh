#!/bin/bash
# bench/features.sh - what caches and artifacts cost in `cirrus run` (issue 6), measured once
# per call on this machine with the engines of scripts/engines.sh:
#   1. a cache of FILES files (default 2000, 4 KiB each): the populating run (miss + upload)
#      and the restoring run (hit + change detection, nothing uploaded), against the same
#      task without a cache;
#   2. FILES artifacts stored with --artifacts-dir, against the same task without them.
# Reports the median of N runs (default 5) in seconds.
# Usage: bench/features.sh [CIRRUS] [BACKEND] [N] [FILES]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
CIRRUS=$(realpath "${1:-$root/build/cmd/cirrus}")
BACKEND=${2:-docker}
N=${3:-5}
FILES=${4:-2000}
eval "$("$root/scripts/engines.sh")"
IMAGE=$CIRRUS_TEST_IMAGE
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export XDG_CACHE_HOME=$work/cache NO_COLOR=1

gen="mkdir -p deps && i=0; while [ \$i -lt $FILES ]; do head -c 4096 /dev/urandom > deps/f\$i; i=\$((i+1)); done"

# median CMD...: run N times, print the median in seconds.
median() {
  local t0 t1 all=()
  for ((i = 0; i < N; i++)); do
    [[ -z ${PREP:-} ]] || eval "$PREP"
    t0=$(date +%s%N)
    "$@" >/dev/null 2>&1 || { echo "bench: '$*' failed" >&2; exit 1; }
    t1=$(date +%s%N)
    all+=($(((t1 - t0) / 1000000)))
  done
  printf '%s\n' "${all[@]}" | sort -n | awk '{a[NR]=$1} END {printf "%.2f\n", a[int((NR+1)/2)]/1000}'
}

mkdir "$work/plain" "$work/cached" "$work/arts"
cd "$work/plain"
printf 'container:\n  image: %s\ntask:\n  gen_script: %s\n' "$IMAGE" "$gen" >.cirrus.yml
plain=$(median "$CIRRUS" run --container-backend="$BACKEND" -o simple)
cd "$work/cached"
printf 'container:\n  image: %s\ntask:\n  deps_cache:\n    folder: deps\n    fingerprint_key: bench\n    reupload_on_changes: true\n    populate_script: %s\n  use_script: ls deps | wc -l\n' \
  "$IMAGE" "$gen" >.cirrus.yml
miss=$(PREP='rm -rf "$XDG_CACHE_HOME"' median "$CIRRUS" run --container-backend="$BACKEND" -o simple)
"$CIRRUS" run --container-backend="$BACKEND" -o simple >/dev/null 2>&1
hit=$(median "$CIRRUS" run --container-backend="$BACKEND" -o simple)
cd "$work/arts"
printf 'container:\n  image: %s\ntask:\n  gen_script: %s\n  deps_artifacts:\n    path: "deps/*"\n' \
  "$IMAGE" "$gen" >.cirrus.yml
arts=$(PREP='rm -rf "$work/out"' median "$CIRRUS" run --container-backend="$BACKEND" -o simple --artifacts-dir "$work/out")
echo "backend $BACKEND, $FILES files of 4 KiB, median of $N runs (seconds)"
echo "  task without cache:                 $plain"
echo "  cache miss (populate + upload):     $miss"
echo "  cache hit (restore, no upload):     $hit"
echo "  artifacts stored (--artifacts-dir): $arts"
