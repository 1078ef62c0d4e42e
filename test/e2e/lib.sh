# test/e2e/lib.sh - assertions for the shell-driven end-to-end tests (bubblewrap's libtest.sh).
# Usage: . lib.sh; CIRRUS=/path/to/cirrus; then run/expect_* calls; finish at the end.
set -u
failures=0
checks=0
TMPROOT=$(mktemp -d "${TMPDIR:-/tmp}/cirrus-e2e.XXXXXX")
trap 'rm -rf "$TMPROOT"' EXIT

# run CMD...: runs it, capturing $out, $err and $rc.
run() {
  out=$("$@" 2>"$TMPROOT/stderr") && rc=0 || rc=$?
  err=$(cat "$TMPROOT/stderr")
}

fail() {
  failures=$((failures + 1))
  echo "FAIL: $*" >&2
  echo "  rc=$rc" >&2
  echo "  stdout: ${out:0:2000}" >&2
  echo "  stderr: ${err:0:2000}" >&2
}

expect_rc() { checks=$((checks + 1)); [[ $rc == "$1" ]] || fail "${2:-} expected exit status $1, got $rc"; }
expect_out() { checks=$((checks + 1)); [[ $out == *"$1"* ]] || fail "${2:-} stdout lacks: $1"; }
expect_err() { checks=$((checks + 1)); [[ $err == *"$1"* ]] || fail "${2:-} stderr lacks: $1"; }
expect_no_out() { checks=$((checks + 1)); [[ -z $out ]] || fail "${1:-} expected no stdout"; }
expect_not_err() { checks=$((checks + 1)); [[ $err != *"$1"* ]] || fail "${2:-} stderr has: $1"; }

# backend_setup: for $BACKEND (docker, podman or builtin) sets engine=(its command line; none for
# builtin) and exits 77 when $CIRRUS_TEST_SKIP names it.  builtin: a store of the test's own
# ($CIRRUS_STORE, default under $TMPROOT) holding the test image from the local registry under
# the name the configurations use ($IMAGE).
backend_setup() {
  case $BACKEND in
    docker | podman) engine=("$BACKEND") ;;
    builtin) engine=() ;;
    *) echo "unknown backend $BACKEND" >&2; exit 2 ;;
  esac
  if [[ ${CIRRUS_TEST_SKIP:-} == *"$BACKEND"* ]]; then
    echo "skipped: CIRRUS_TEST_SKIP=$CIRRUS_TEST_SKIP"; exit 77
  fi
  [[ $BACKEND == builtin ]] || return 0
  export CIRRUS_STORE=${CIRRUS_STORE:-$TMPROOT/store}
  chmod 0711 "$TMPROOT" # the containers' mapped root must reach the store's layers
  REGISTRY=${CIRRUS_TEST_REGISTRY:-127.0.0.1:5000}
  "$CIRRUS" images pull "$REGISTRY/cirrus-test/busybox:latest" >/dev/null &&
    "$CIRRUS" images tag "$REGISTRY/cirrus-test/busybox:latest" "$IMAGE" ||
    { echo "FAIL: cannot put the test image into $CIRRUS_STORE" >&2; exit 1; }
}

# A fresh project directory; prints its path.
project() {
  local d
  d=$(mktemp -d "$TMPROOT/project.XXXXXX")
  echo "$d"
}

finish() {
  echo "$checks checks, $failures failed"
  [[ $failures == 0 ]]
}
