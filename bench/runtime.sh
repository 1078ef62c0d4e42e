#!/bin/bash
# The built-in runtime's helper, measured (run on demand, never in tests):
#   bench/runtime.sh [BUILD_DIR]       (default build/; needs scripts/engines.sh's registry)
# 1. cirrus-runtime exec of `true` in a warm container (the per-step hot path), and the same
#    beside a --seccomp unconfined container (what the default seccomp filter costs a step)
# 2. create + exec true + teardown (a one-step container's whole life)
# 3. the floor: unshare -Urpf --mount-proc chroot ROOTFS /bin/true
# 4. cirrus-runtime's own start-up (--help) next to /bin/true
# 5. create + exec true + teardown per root file system driver (--rootfs), median of 20
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
cleanup() { exec 7>&- 8>&- 2>/dev/null || true; sleep 0.2; rm -rf "$tmp"; }
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
# The seccomp filter's share: the same exec in a --seccomp unconfined container, the two
# interleaved (one of each per round) so that the machine's load drifts alike for both.
mkdir -m 0700 "$tmp/runs/unconfined"
exec 8> >(exec "$RT" create --run-dir "$tmp/runs/unconfined" "${layers[@]}" --seccomp unconfined \
  >"$tmp/unconfined.out")
for _ in $(seq 200); do [[ -s $tmp/unconfined.out ]] && break; sleep 0.02; done
echo "== exec true, default seccomp filter vs --seccomp unconfined (interleaved, $RUNS rounds)"
pid_unc=$(awk '{print $2}' "$tmp/unconfined.out")
[[ -n $pid_unc ]] || echo "   (no --seccomp in this helper: skipped)"
[[ -z $pid_unc ]] || python3 - "$RT" "$tmp" "$pid" "$pid_unc" "$RUNS" <<'EOF'
import subprocess, sys, time
rt, tmp, p_def, p_unc, n = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
cmd = lambda pid, d: [rt, "exec", "--pid", pid, "--run-dir", f"{tmp}/runs/{d}", "--env", "PATH=/bin", "--", "true"]
runs = {"default": cmd(p_def, "warm"), "unconfined": cmd(p_unc, "unconfined")}
t = {k: [] for k in runs}
for i in range(n + 20):
    for k, c in sorted(runs.items(), reverse=bool(i % 2)):
        s = time.perf_counter_ns()
        subprocess.run(c, check=True)
        if i >= 20:
            t[k].append((time.perf_counter_ns() - s) / 1e6)
for k, v in t.items():
    v.sort()
    q = lambda p: v[min(len(v) - 1, int(p * len(v)))]
    print(f"   {k:10}  p50 {q(0.50):.2f} ms   p99 {q(0.99):.2f} ms   (with subprocess.run's own cost)")
EOF
exec 7>&- 8>&-

echo "== create + exec true + teardown"
cat >"$tmp/life.sh" <<EOF
#!/bin/bash
d=\$(mktemp -d -p "$tmp/runs")
coproc C { exec "$RT" create --run-dir "\$d" ${layers[*]} --rootfs "\${1:-auto}"; }
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

echo "== create + exec true + teardown per --rootfs driver (median of 20; image: busybox, 1 MB)"
for driver in overlay fuse-overlayfs copy; do
  hyperfine -N -w 3 -r 20 --export-json "$tmp/rootfs.json" "$tmp/life.sh $driver" >/dev/null 2>&1 ||
    { echo "   $driver: failed"; continue; }
  python3 - "$tmp/rootfs.json" "$driver" <<'EOF'
import json, statistics, sys
t = json.load(open(sys.argv[1]))["results"][0]["times"]
print(f"   {sys.argv[2]:15} median {statistics.median(t) * 1000:.1f} ms   min {min(t) * 1000:.1f} ms")
EOF
done
