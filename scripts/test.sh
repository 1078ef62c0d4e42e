#!/bin/bash
# Every test, from a fresh Debian 12 machine: install what is missing, start the real
# engines the end-to-end tests use (podman's API service, dockerd, a registry; as root),
# build with gcc, build again with clang + AddressSanitizer/UndefinedBehaviorSanitizer, run
# the whole ctest suite in both, then fuzz the configuration parser for 60 seconds.
#   CIRRUS_FUZZ_SECONDS=N   fuzzing time (default 60; 0 skips it)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/deps.sh --test

echo "== engines" >&2
engines_env=$(scripts/engines.sh)
eval "$engines_env"
echo "== example images" >&2
eval "$(scripts/example-images.sh --dev)"

echo "== gcc build" >&2
scripts/build.sh build -DCMAKE_C_COMPILER=gcc
ctest --test-dir build --output-on-failure -j 2

echo "== clang + ASan/UBSan build" >&2
scripts/build.sh build-asan -DCMAKE_C_COMPILER=clang -DCIRRUS_SANITIZE=ON
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build-asan --output-on-failure -j 2

secs=${CIRRUS_FUZZ_SECONDS:-60}
if ((secs > 0)); then
  echo "== fuzzing the configuration parser for ${secs}s" >&2
  scripts/build.sh build-fuzz -DCMAKE_C_COMPILER=clang -DCIRRUS_FUZZ=ON -DBUILD_TESTING=OFF
  corpus=$(mktemp -d)
  trap 'rm -rf "$corpus"' EXIT
  build-fuzz/test/fuzz/fuzz_config -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
    -dict=test/fuzz/yaml.dict -print_final_stats=1 "$corpus" test/data/config 2>&1 | tail -n 20
fi
echo "== all tests passed" >&2
