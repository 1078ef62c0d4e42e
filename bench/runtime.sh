#!/bin/bash
# The built-in runtime's helper, measured (run on demand, never in tests):
#   bench/runtime.sh [BUILD_DIR]       (default build/; needs scripts/engines.sh's registry)
# 1. cirrus-runtime exec of `true` in a warm container (the per-step hot path)
# 2. create + exec true + teardown (a one-step container's whole life)
# 3. the floor: unshare -Urpf --mount-proc chroot ROOTFS /bin/true
# 4. cirrus-runtime's own start-up (--help) next to /bin/true
# As root the container runs on root's subordinate range (id-shifted store); run it as a user
# (e.g. `runuser -u cirrus-rl -- bench/runtime.sh`) for the unprivileged figures.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
RT=$build/cmd/cirrus-runtime
IMG_TOOL=$build/test/img_tool
REGISTRY=${CIRRUS_TEST_REGISTRY:-127.0.0.1:5000}
RUNS=${BENCH_RUNS:-500}
command -v hyperfine >/dev/null || { echo "bench/runtime.sh needs hyperfine" >&2; exit 1; }
tmp=$(mktemp -d /tmp/cirrus-bench-rt.XXXXXX)
chmod 755 "$tmp"
cleanup() { exec 7>&- 2>/dev/null || true; sleep 0.2; rm -rf "$tmp"; }
trap cleanup EXIT
shift_opt=()
if [[ $(id -u) == 0 ]]; then
  base=$("$RT" check | sed -n 's/^idmap: root 0:\([0-9]*\):65536$/\1/p')
  shift_opt=(--id-shift "$base")
fi
"$IMG_TOOL" "${shift_opt[@]}" "$tmp/store" pull --quiet "$REGISTRY/cirrus-test/busybox:latest" >"$tmp/pull"
layers=()
while read -r l; do layers+=(--layer "${l#layer=}"); done < <(grep '^layer=' "$tmp/pull")
mkdir -m 0711 "$tmp/runs"

echo "== machine: $(nproc) cpus, kernel $(uname -r), user $(id -un); $("$RT" check | grep idmap)"
echo "== cirrus-runtime start-up vs /bin/true"
hyperfine -N -w 50 -r "$RUNS" "$RT --help" /bin/true 2>&1 | grep -E 'Time|Range|±' || true

mkdir -m 0700 "$tmp/runs/warm"
exec 7> >(exec "$RT" create --run-dir "$tmp/runs/warm" "${layers[@]}" >"$tmp/warm.out")
for _ in $(seq 200); do [[ -s $tmp/warm.out ]] && break; sleep 0.02; done
pid=$(awk '{print $2}' "$tmp/warm.out")
echo "== exec true in a warm container (p50/p99 from $RUNS runs)"
hyperfine -N -w 50 -r "$RUNS" --export-json "$tmp/exec.json" \
  "$RT exec --pid $pid --run-dir $tmp/runs/warm --env PATH=/bin -- true" 2>&1 | grep -E 'Time|Range' || true
python3 - "$tmp/exec.json" <<'EOF'
import json, sys
t = sorted(json.load(open(sys.argv[1]))["results"][0]["times"])
q = lambda p: t[min(len(t) - 1, int(p * len(t)))] * 1000
print(f"   p50 {q(0.50):.2f} ms   p90 {q(0.90):.2f} ms   p99 {q(0.99):.2f} ms")
EOF
exec 7>&-

echo "== create + exec true + teardown"
cat >"$tmp/life.sh" <<EOF
#!/bin/bash
d=\$(mktemp -d -p "$tmp/runs")
coproc C { exec "$RT" create --run-dir "\$d" ${layers[*]}; }
read -r _ p <&\${C[0]}
"$RT" exec --pid "\$p" --run-dir "\$d" -- /bin/true
exec {C[1]}>&-
wait
EOF
chmod +x "$tmp/life.sh"
hyperfine -N -w 5 -r $((RUNS / 5)) "$tmp/life.sh" 2>&1 | grep -E 'Time|Range' || true
echo "   (includes bash's own start-up, ~1 ms, and mktemp)"

echo "== floor: unshare -Urpf --mount-proc chroot ROOTFS /bin/true"
rootfs=$(grep '^layer=' "$tmp/pull" | head -1 | cut -d= -f2)
hyperfine -N -w 20 -r "$RUNS" "unshare -Urpf --mount-proc chroot $rootfs /bin/true" 2>&1 | grep -E 'Time|Range' || true
