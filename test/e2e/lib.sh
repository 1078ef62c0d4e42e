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
