#!/bin/bash
# bench/image/pull.sh - time a cold pull + extract of the test image with ci_image against
# `skopeo copy` of the same image to an OCI directory (download only, no extraction).
#
#   bench/image/pull.sh [RUNS]      (default 20; prints min and median wall time in ms)
#
# Needs CIRRUS_TEST_REGISTRY (and CIRRUS_TEST_OCI_LAYOUT for the extraction-only row), the
# img_tool driver built by cmake (IMG_TOOL, default build/test/img_tool) and skopeo.
# Every run starts from an empty store / destination; the page cache stays warm.  Both tools
# write under BENCH_DIR (default /var/tmp: on the CI VMs /tmp is several times slower for
# file creation than the rest of the same file system, which would hide what is measured).
set -euo pipefail
runs=${1:-20}
tool=${IMG_TOOL:-build/test/img_tool}
reg=${CIRRUS_TEST_REGISTRY:?set CIRRUS_TEST_REGISTRY (scripts/engines.sh exports it)}
ref=$reg/cirrus-test/busybox:latest
[[ -x $tool ]] || { echo "pull.sh: $tool not built" >&2; exit 1; }
command -v skopeo >/dev/null || { echo "pull.sh: skopeo not installed" >&2; exit 1; }
tmp=$(mktemp -d "${BENCH_DIR:-/var/tmp}/cirrus-bench-image.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

measure() { # NAME CMD...: run CMD $runs times from a clean $tmp/out
  local name=$1
  shift
  local -a t=()
  local s e
  for ((i = 0; i < runs; i++)); do
    rm -rf "$tmp/out"
    s=$(date +%s%N)
    "$@" >/dev/null 2>"$tmp/err" || { echo "pull.sh: $name failed:" >&2; cat "$tmp/err" >&2; exit 1; }
    e=$(date +%s%N)
    t+=($(((e - s) / 1000)))
  done
  mapfile -t sorted < <(printf '%s\n' "${t[@]}" | sort -n)
  local min=${sorted[0]} med=${sorted[$((runs / 2))]}
  printf '%-46s min %7.2f ms   median %7.2f ms\n' "$name" "$(bc -l <<<"$min/1000")" \
    "$(bc -l <<<"$med/1000")"
}

echo "image: docker://$ref ($runs runs each)"
measure "cirrus: pull + verify + extract (registry)" "$tool" "$tmp/out" pull --quiet "docker://$ref"
if [[ -n ${CIRRUS_TEST_OCI_LAYOUT:-} ]]; then
  measure "cirrus: verify + extract (oci: layout)" "$tool" "$tmp/out" pull --quiet \
    "oci:$CIRRUS_TEST_OCI_LAYOUT"
fi
measure "skopeo copy docker:// -> oci: (no extract)" skopeo copy -q --src-tls-verify=false \
  "docker://$ref" "oci:$tmp/out:latest"
