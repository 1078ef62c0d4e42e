#!/bin/bash
# bench/build.sh - what a Dockerfile environment costs on the built-in backend's own builder
# (backends/build), measured on this machine with the test image of scripts/engines.sh:
#   cold:   the image is built from scratch (a fresh layer cache): COPY of FILES files
#           (default 2000, 4 KiB each), a RUN that writes FILES files and removes some of the
#           base image's, an ENV;
#   cached: the image's name is gone but the layer cache is not (a new tag template): the
#           steps are matched by key, nothing runs;
#   reused: the image exists: the task starts at once (the scheduler's "Re-using").
# Each is a whole `cirrus run` of one task `true` in that image; medians of N runs (default 5)
# in seconds.  Usage: bench/build.sh [CIRRUS] [N] [FILES]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
CIRRUS=$(realpath "${1:-$root/build/cmd/cirrus}")
N=${2:-5}
FILES=${3:-2000}
eval "$("$root/scripts/engines.sh")"
IMAGE=$CIRRUS_TEST_IMAGE
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
chmod 0711 "$work"
export NO_COLOR=1 CIRRUS_STORE=$work/store
"$CIRRUS" images pull "${CIRRUS_TEST_REGISTRY:-127.0.0.1:5000}/cirrus-test/busybox:latest" >/dev/null
"$CIRRUS" images tag "${CIRRUS_TEST_REGISTRY:-127.0.0.1:5000}/cirrus-test/busybox:latest" "$IMAGE"

mkdir -p "$work/p/ci/data"
cd "$work/p"
for ((i = 0; i < FILES; i++)); do head -c 4096 /dev/urandom >"ci/data/f$i"; done
cat >ci/Dockerfile <<DF
FROM $IMAGE
COPY ci/data /data
RUN mkdir -p /gen && i=0; while [ \$i -lt $FILES ]; do echo \$i > /gen/f\$i; i=\$((i+1)); done; rm -f /bin/vi
ENV BUILT=yes
DF
printf 'task:\n  container:\n    dockerfile: ci/Dockerfile\n  script: test "$BUILT" = yes\n' >.cirrus.yml

seq=0
median() {
  local t0 t1 all=()
  for ((i = 0; i < N; i++)); do
    seq=$((seq + 1))
    [[ -z ${PREP:-} ]] || eval "$PREP"
    local name=${TPL//@/$seq}
    t0=$(date +%s%N)
    "$CIRRUS" run --container-backend=builtin -o simple \
      --dockerfile-image-template "localhost/bench-build/$name-%s:latest" >/dev/null 2>&1 ||
      { echo "bench: cirrus run failed" >&2; exit 1; }
    t1=$(date +%s%N)
    all+=($(((t1 - t0) / 1000000)))
  done
  printf '%s\n' "${all[@]}" | sort -n | awk '{a[NR]=$1} END {printf "%.2f\n", a[int((NR+1)/2)]/1000}'
}
# TPL: the image name (@ becomes the run's number)
# cold: a new name and an empty layer cache every time
cold=$(TPL='cold@' PREP='rm -rf "$CIRRUS_STORE/build-cache"' median)
# cached: a new name, the cache of the runs before
cached=$(TPL='cached@' PREP='' median)
# reused: the same name every time
TPL=same median >/dev/null
reused=$(TPL=same PREP='' median)
echo "builtin build of $FILES+$FILES files: cold ${cold}s, cached ${cached}s, reused ${reused}s (median of $N)"
