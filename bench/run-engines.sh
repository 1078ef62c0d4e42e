#!/bin/bash
# bench/run-engines.sh - what a task costs through `cirrus run`, next to the engines' own
# tools, measured in one run on this machine (issue 4):
#   1. one task with one `true` step: cirrus run (builtin, docker, podman) vs `docker run --rm IMG true`
#      vs `podman run --rm IMG true` vs the raw API sequence with curl
#      (create, start, wait, delete), the floor of any client;
#   2. 50 independent one-step tasks at -p 2 vs -p 1.
# Reports min and median of N runs (default 10) and the ratios.  Needs the engines of
# scripts/engines.sh (run as root).  Usage: bench/run-engines.sh [CIRRUS] [N]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
CIRRUS=${1:-$root/build/cmd/cirrus}
N=${2:-10}
eval "$("$root/scripts/engines.sh")"
IMAGE=$CIRRUS_TEST_IMAGE
work=$(mktemp -d)
chmod 711 "$work" # as root, containers run as a mapped uid that must enter it
trap 'rm -rf "$work"' EXIT

# time_ms CMD...: run N times, print "min median" in milliseconds.
time_ms() {
  local t0 t1 all=()
  "$@" >/dev/null 2>&1 || { echo "bench: '$*' failed" >&2; "$@" >&2 || true; exit 1; }
  for ((i = 0; i < N; i++)); do
    t0=$(date +%s%N)
    "$@" >/dev/null 2>&1
    t1=$(date +%s%N)
    all+=($(((t1 - t0) / 1000)))
  done
  printf '%s\n' "${all[@]}" | sort -n | awk '{a[NR]=$1} END {printf "%.1f %.1f\n", a[1]/1000, a[int((NR+1)/2)]/1000}'
}

api() { # engine socket: the raw create/start/wait/delete sequence
  local sock=$1 id
  id=$(curl -s --unix-socket "$sock" -H 'Content-Type: application/json' \
    -d "{\"Image\":\"$IMAGE\",\"Cmd\":[\"true\"]}" http://d/v1.41/containers/create | sed 's/.*"Id":"\([0-9a-f]*\)".*/\1/')
  curl -s --unix-socket "$sock" -X POST "http://d/v1.41/containers/$id/start" >/dev/null
  curl -s --unix-socket "$sock" -X POST "http://d/v1.41/containers/$id/wait" >/dev/null
  curl -s --unix-socket "$sock" -X DELETE "http://d/v1.41/containers/$id?force=1" >/dev/null
}

mkdir -p "$work/one" "$work/fifty"
printf 'container:\n  image: %s\ntask:\n  script: true\n' "$IMAGE" >"$work/one/.cirrus.yml"
{
  printf 'container:\n  image: %s\n' "$IMAGE"
  for i in $(seq 1 50); do printf 't%d_task:\n  script: true\n' "$i"; done
} >"$work/fifty/.cirrus.yml"

# The built-in backend: a store of the bench's own, the test image pulled from the registry.
export CIRRUS_STORE=$work/store
"$CIRRUS" images pull "${CIRRUS_TEST_REGISTRY:-127.0.0.1:5000}/cirrus-test/busybox:latest" >/dev/null
"$CIRRUS" images tag "${CIRRUS_TEST_REGISTRY:-127.0.0.1:5000}/cirrus-test/busybox:latest" "$IMAGE"

echo "one task, one 'true' step (ms, min / median of $N)"
cd "$work/one"
declare -A R
R[cirrus_builtin]=$(time_ms "$CIRRUS" run -o simple --container-backend=builtin)
R[cirrus_docker]=$(time_ms "$CIRRUS" run -o simple --container-backend=docker)
R[cirrus_podman]=$(time_ms "$CIRRUS" run -o simple --container-backend=podman)
R[docker_run]=$(time_ms docker run --rm "$IMAGE" true)
R[podman_run]=$(time_ms podman run --rm "$IMAGE" true)
R[api_docker]=$(time_ms api /var/run/docker.sock)
R[api_podman]=$(time_ms api /run/podman/podman.sock)
for k in cirrus_builtin cirrus_docker docker_run api_docker cirrus_podman podman_run api_podman; do
  printf '  %-14s %s\n' "$k" "${R[$k]}"
done
med() { awk '{print $2}' <<<"$1"; }
ratio() { awk -v a="$(med "$1")" -v b="$(med "$2")" 'BEGIN {printf "%.2f", a / b}'; }
echo "  ratios (median): cirrus/docker-run $(ratio "${R[cirrus_docker]}" "${R[docker_run]}")," \
  "cirrus/api(docker) $(ratio "${R[cirrus_docker]}" "${R[api_docker]}")," \
  "cirrus/podman-run $(ratio "${R[cirrus_podman]}" "${R[podman_run]}")," \
  "cirrus/api(podman) $(ratio "${R[cirrus_podman]}" "${R[api_podman]}")"
echo "  builtin: podman-run/cirrus-builtin $(ratio "${R[podman_run]}" "${R[cirrus_builtin]}")x," \
  "docker-run/cirrus-builtin $(ratio "${R[docker_run]}" "${R[cirrus_builtin]}")x faster"

echo "50 independent one-step tasks (ms, min / median of 3)"
cd "$work/fifty"
N=3
for be in builtin docker podman; do
  p1=$(time_ms "$CIRRUS" run -o simple --container-backend=$be -p 1)
  p2=$(time_ms "$CIRRUS" run -o simple --container-backend=$be -p 2)
  echo "  $be: -p 1 $p1   -p 2 $p2   speed-up $(ratio "$p1" "$p2")x"
done
