#!/bin/bash
# cirrus-runtime (the built-in rootless runtime's helper) driven directly, end to end:
#   runtime.sh CIRRUS_RUNTIME IMG_TOOL MODE
# MODE: root (run as root: user namespace on root's subordinate range, id-shifted store),
#       subid (as user cirrus-rl, with /etc/subuid ranges), single (as user cirrus-rs, with no
#       subordinate ids: one mapped id).  Must start as root: it prepares the users, then runs
#       the checks as them.  The image comes from the local registry of scripts/engines.sh
#       (CIRRUS_TEST_REGISTRY), pulled into a temporary store with IMG_TOOL.
here=$(cd "$(dirname "$0")" && pwd)
RT=${1:?usage: runtime.sh CIRRUS_RUNTIME IMG_TOOL MODE}
IMG_TOOL=${2:?usage}
MODE=${3:?usage}
REGISTRY=${CIRRUS_TEST_REGISTRY:-127.0.0.1:5000}
IMAGE=$REGISTRY/cirrus-test/busybox:latest

if [[ ${CIRRUS_RT_INNER:-} != 1 ]]; then
  # Outer part (root): users, a world-readable copy of the binaries, then the checks.
  if [[ ${CIRRUS_TEST_SKIP:-} == *runtime* ]]; then echo "skipped: CIRRUS_TEST_SKIP"; exit 77; fi
  [[ $(id -u) == 0 ]] || { echo "FAIL: runtime.sh prepares users and must start as root" >&2; exit 1; }
  dir=$(mktemp -d /tmp/cirrus-rt-e2e.XXXXXX)
  trap 'rm -rf "$dir"' EXIT
  chmod 755 "$dir"
  install -m 0755 "$RT" "$dir/cirrus-runtime"
  install -m 0755 "$IMG_TOOL" "$dir/img_tool"
  install -m 0755 "$here/runtime.sh" "$here/lib.sh" "$dir/"
  # What the seccomp filter lets a step do (static: the busybox image has no libc).
  ${CC:-cc} -static -O2 -o "$dir/seccomp_probe" "$here/seccomp_probe.c" ||
    { echo "FAIL: cannot build seccomp_probe.c (cc -static)" >&2; exit 1; }
  # A runs dir on an overlay mount: the kernel refuses it as an upper dir (a real refusal for
  # --rootfs auto to fall back from).
  mkdir -p "$dir/ovl/l" "$dir/ovl/u" "$dir/ovl/w" "$dir/ovl-runs"
  mount -t overlay overlay -o "lowerdir=$dir/ovl/l,upperdir=$dir/ovl/u,workdir=$dir/ovl/w" \
    "$dir/ovl-runs" || { echo "FAIL: cannot mount an overlay for the refusal test" >&2; exit 1; }
  trap 'umount -l "$dir/ovl-runs"; rm -rf "$dir"' EXIT
  chmod 711 "$dir/ovl-runs"
  export CIRRUS_RT_OVL_RUNS=$dir/ovl-runs
  case $MODE in
    root) env CIRRUS_RT_INNER=1 bash "$dir/runtime.sh" "$dir/cirrus-runtime" "$dir/img_tool" root
      exit $? ;;
    subid) user=cirrus-rl ;;
    single) user=cirrus-rs ;;
    *) echo "FAIL: unknown mode $MODE" >&2; exit 1 ;;
  esac
  if ! id "$user" >/dev/null 2>&1; then
    useradd -m -s /bin/bash "$user" || { echo "FAIL: cannot create $user" >&2; exit 1; }
  fi
  if [[ $MODE == subid ]]; then
    grep -q "^$user:" /etc/subuid || echo "$user:400000:65536" >>/etc/subuid
    grep -q "^$user:" /etc/subgid || echo "$user:400000:65536" >>/etc/subgid
  else
    sed -i "/^$user:/d" /etc/subuid /etc/subgid
  fi
  cd "$dir" && chown "$user:" "$dir" "$dir/ovl-runs"
  CIRRUS_RT_INNER=1 CIRRUS_TEST_REGISTRY=$REGISTRY TMPDIR=$dir \
    setpriv --reuid="$user" --regid="$user" --init-groups --reset-env \
    env CIRRUS_RT_INNER=1 CIRRUS_TEST_REGISTRY="$REGISTRY" TMPDIR="$dir" PATH="$PATH" \
    CIRRUS_RT_OVL_RUNS="$CIRRUS_RT_OVL_RUNS" \
    bash "$dir/runtime.sh" "$dir/cirrus-runtime" "$dir/img_tool" "$MODE"
  exit $?
fi

# ---- inner part: as the user of MODE ----
. "$here/lib.sh"
chmod 755 "$TMPROOT" # a root container (a subordinate uid) must reach the store
store=$TMPROOT/store
mkdir -p "$store"
shift_opt=()
if [[ $MODE == root ]]; then
  run "$RT" check
  expect_rc 0 "check"
  expect_out "idmap: root 0:"
  base=$(sed -n 's/^idmap: root 0:\([0-9]*\):65536$/\1/p' <<<"$out")
  [[ -n $base ]] || { echo "FAIL: no root id base in: $out" >&2; exit 1; }
  shift_opt=(--id-shift "$base")
else
  run "$RT" check
  expect_rc 0 "check"
  expect_out "userns: yes"
  expect_out "overlay-userxattr: yes"
  expect_out "idmap: $MODE"
fi
"$IMG_TOOL" "${shift_opt[@]}" "$store" pull --quiet "$IMAGE" >"$TMPROOT/pull.out" ||
  { echo "FAIL: cannot pull $IMAGE" >&2; exit 1; }
layers=()
while read -r l; do layers+=(--layer "${l#layer=}"); done < <(grep '^layer=' "$TMPROOT/pull.out")
((${#layers[@]})) || { echo "FAIL: no layers" >&2; exit 1; }
runs=$store/runs
mkdir -p "$runs"
chmod 711 "$runs"
host=$TMPROOT/host
mkdir -p "$host/rw" "$host/ro"
echo from-host >"$host/ro/file"
echo single-file >"$host/one"

# start_container NAME [create options...]: sets $pid, $rdir; the monitor's stdin is fd 7.
start_container() {
  local name=$1
  shift
  rdir=$runs/$name
  mkdir -m 0700 "$rdir"
  # shellcheck disable=SC2086 # WRAP: a command prefix, split into words
  exec 7> >(exec ${WRAP:-} "$RT" create --run-dir "$rdir" "${layers[@]}" --ppid $$ "$@" \
    >"$TMPROOT/$name.out" 2>"$TMPROOT/$name.err")
  monitor_pid=$!
  for _ in $(seq 200); do
    [[ -s $TMPROOT/$name.out ]] && break
    sleep 0.02
  done
  pid=$(sed -n 's/^ready \([0-9][0-9]*\)$/\1/p' "$TMPROOT/$name.out")
  checks=$((checks + 1))
  [[ -n $pid ]] || { out=$(cat "$TMPROOT/$name.out"); err=$(cat "$TMPROOT/$name.err"); rc=-; fail "create $name: no ready line"; finish; exit 1; }
  pidns=$(readlink "/proc/$pid/ns/pid")
}

# Processes in the container's pid namespace, as seen from here.
ns_procs() {
  local n=0 p
  for p in /proc/[0-9]*; do
    [[ $(readlink "$p/ns/pid" 2>/dev/null) == "$pidns" ]] && n=$((n + 1))
  done
  echo $n
}

# stop_container: EOF on the monitor's stdin; waits for it.
stop_container() {
  exec 7>&-
  for _ in $(seq 250); do
    [[ -e $rdir ]] || break
    sleep 0.02
  done
  wait "$monitor_pid" 2>/dev/null
}

X() { run "$RT" exec --pid "$pid" --run-dir "$rdir" --env PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"; }

# Wait status of a command: "exit N" or "signal S" (bash folds both into $?).
status_of() { perl -e 'system(@ARGV); my $s = $?; print(($s & 127) ? "signal " . ($s & 127) : "exit " . ($s >> 8))' -- "$@"; }

start_container c1 --hostname box-e2e --mount "$host/rw:/mnt/rw" --mount "$host/ro:/mnt/ro:ro" \
  --mount "$host/one:/etc/one-file:ro" --tmpfs /scratch
expect_no_out_file() { :; }

X -- echo hi
expect_rc 0 "echo"
checks=$((checks + 1)); [[ $out == hi ]] || fail "echo: stdout is not exactly hi"
X -- sh -c 'exit 3'
expect_rc 3 "exit 3"
checks=$((checks + 1))
st=$(status_of "$RT" exec --pid "$pid" --run-dir "$rdir" -- /bin/sh -c 'kill -9 $$')
[[ $st == "signal 9" ]] || fail "kill -9 in the step: helper ended with '$st', not signal 9"
st=$(status_of "$RT" exec --pid "$pid" --run-dir "$rdir" -- /bin/sh -c 'exit 7')
checks=$((checks + 1)); [[ $st == "exit 7" ]] || fail "exit 7 seen as '$st'"
X -- no-such-command
expect_rc 127 "missing command"
expect_err "cirrus-runtime: no-such-command: command not found"
X -- /etc/passwd
expect_rc 126 "not executable"

# stdin is /dev/null; only fds 0-2 reach the step (ls's own directory fd aside).
run "$RT" exec --pid "$pid" --run-dir "$rdir" -- sh -c 'cat; ls /proc/self/fd' <<<"data on the helper's stdin" 5</dev/null
checks=$((checks + 1)); [[ $out == $'0\n1\n2\n3' ]] || fail "stdin or fds of the step: '$out'"
# SIGTERM to the helper: the step's process group is killed and the helper dies of SIGKILL.
"$RT" exec --pid "$pid" --run-dir "$rdir" -- sh -c 'sleep 100 & sleep 100' &
helper=$!
sleep 0.3
kill -TERM $helper
wait $helper
rc=$?
checks=$((checks + 1)); [[ $rc == 137 ]] || fail "SIGTERM to exec: status $rc, expected 137 (SIGKILL)"
X -- sh -c 'ps -o comm | grep -c sleep'
checks=$((checks + 1)); [[ $out == 0 ]] || fail "SIGTERM to exec left sleeps: $out"
# SIGKILL of the helper (cirrus killed): the init sees the connection go and kills the group.
"$RT" exec --pid "$pid" --run-dir "$rdir" -- sh -c 'sleep 100 & sleep 100' &
helper=$!
sleep 0.3
kill -KILL $helper
wait $helper 2>/dev/null
for _ in $(seq 50); do
  X -- sh -c 'ps -o comm | grep -c sleep'
  [[ $out == 0 ]] && break
  sleep 0.1
done
checks=$((checks + 1)); [[ $out == 0 ]] || fail "SIGKILL of exec left sleeps: $out"
# The step is the init's child: nothing of ours between them (as with an engine's exec).
X -- sh -c 'cat /proc/$$/stat'
checks=$((checks + 1)); ppid=$(awk '{print $4}' <<<"$out"); [[ $ppid == 1 ]] || fail "the step's parent is $ppid, not the init"
run "$RT" exec --pid "$pid" --run-dir "$rdir" --env A=1 --env "B=two words" --env PATH=/bin:/usr/bin -- env
expect_rc 0 "env"
checks=$((checks + 1))
[[ $(sort <<<"$out") == $'A=1\nB=two words\nPATH=/bin:/usr/bin' ]] || fail "env is not exactly the given list"
run "$RT" exec --pid "$pid" --run-dir "$rdir" -- pwd
checks=$((checks + 1)); [[ $out == / ]] || fail "default cwd is not /"
X --cwd /tmp -- pwd
checks=$((checks + 1)); [[ $out == /tmp ]] || fail "--cwd /tmp: got '$out'"
X -- id -u
checks=$((checks + 1)); [[ $out == 0 ]] || fail "default user is not root"
X --user 1000 -- id -u
if [[ $MODE == single ]]; then
  expect_rc 1 "user 1000 with a single mapping"
  expect_err "single id mapping"
else
  expect_rc 0 "user 1000"
  checks=$((checks + 1)); [[ $out == 1000 ]] || fail "--user 1000: id -u is '$out'"
  X --user nobody -- id -un
  checks=$((checks + 1)); [[ $out == nobody ]] || fail "--user nobody: '$out'"
  X --user 1000:1000 -- sh -c 'touch /tmp/u1000 && stat -c %u:%g /tmp/u1000'
  checks=$((checks + 1)); [[ $out == 1000:1000 ]] || fail "file of user 1000 is '$out'"
  X -- chown 1000:1000 /etc/passwd
  expect_rc 0 "chown"
fi
X --user no-such-user -- true
expect_rc 1 "unknown user"
expect_err "no-such-user"

# Writes land in the upper layer, are seen by the next exec, never in the store.
X -- sh -c 'echo persisted > /etc/new-file && mkdir -p /root/d && echo x > /root/d/y'
expect_rc 0 "write to the root file system"
X -- cat /etc/new-file
checks=$((checks + 1)); [[ $out == persisted ]] || fail "a write is not seen by the next exec"
checks=$((checks + 1)); [[ -f $rdir/upper/etc/new-file ]] || fail "the write is not in the upper dir"
checks=$((checks + 1))
! ls "$store"/layers/*/diff/etc/new-file >/dev/null 2>&1 || fail "the write reached the store"

# cp-in, cat, cp-out
mkdir -p "$TMPROOT/tarsrc/d/sub"
echo content >"$TMPROOT/tarsrc/d/sub/f"
chmod 0640 "$TMPROOT/tarsrc/d/sub/f"
tar -C "$TMPROOT/tarsrc" --owner=0 --group=0 --numeric-owner -cf "$TMPROOT/in.tar" d
run "$RT" cp-in --pid "$pid" "$TMPROOT/in.tar"
expect_rc 0 "cp-in"
run "$RT" cat --pid "$pid" /d/sub/f
expect_rc 0 "cat"
checks=$((checks + 1)); [[ $out == content ]] || fail "cat after cp-in: '$out'"
X -- stat -c %a:%u /d/sub/f
checks=$((checks + 1)); [[ $out == 640:0 ]] || fail "cp-in mode/owner: '$out'"
run "$RT" cat --pid "$pid" /does/not/exist
expect_rc 2 "cat of a missing file"
expect_no_out "cat of a missing file"
run "$RT" cat --pid "$pid" --max 3 /d/sub/f
expect_rc 1 "cat over --max"
expect_no_out "cat over --max"
run "$RT" cp-out --pid "$pid" /d "$TMPROOT/out.tar"
expect_rc 0 "cp-out"
checks=$((checks + 1))
[[ $(tar -tf "$TMPROOT/out.tar" | sort | tr '\n' ' ') == "d/ d/sub/ d/sub/f " ]] ||
  fail "cp-out entries: $(tar -tf "$TMPROOT/out.tar" | tr '\n' ' ')"
checks=$((checks + 1))
[[ $(stat -c %a "$TMPROOT/out.tar") == 600 ]] || fail "cp-out tar is not 0600"
mkdir "$TMPROOT/x" && tar -C "$TMPROOT/x" -xf "$TMPROOT/out.tar"
checks=$((checks + 1)); [[ $(cat "$TMPROOT/x/d/sub/f") == content ]] || fail "cp-out content"
run "$RT" cp-out --pid "$pid" /etc/new-file "$TMPROOT/one.tar"
checks=$((checks + 1)); [[ $(tar -tf "$TMPROOT/one.tar") == new-file ]] || fail "cp-out of a file"
run "$RT" cp-out --pid "$pid" /missing "$TMPROOT/m.tar"
expect_rc 2 "cp-out of a missing path"
expect_err "cirrus-runtime: /missing: No such file or directory"
# Hostile tars: .. and absolute paths are refused.
printf 'evil\n' >"$TMPROOT/evil"
tar -C "$TMPROOT" -cf "$TMPROOT/dotdot.tar" --transform 's|^|../../|' evil 2>/dev/null
run "$RT" cp-in --pid "$pid" "$TMPROOT/dotdot.tar"
expect_rc 1 "cp-in with .."
tar -cPf "$TMPROOT/abs.tar" "$TMPROOT/evil" 2>/dev/null
run "$RT" cp-in --pid "$pid" "$TMPROOT/abs.tar"
expect_rc 1 "cp-in with an absolute path"

# Bind mounts rw and ro; tmpfs; hostname.
X -- sh -c 'echo from-container > /mnt/rw/w'
expect_rc 0 "write to a rw bind"
checks=$((checks + 1)); [[ $(cat "$host/rw/w" 2>/dev/null) == from-container ]] || fail "rw bind: not on the host"
checks=$((checks + 1)); [[ $(stat -c %U "$host/rw/w") == "$(id -un)" ]] || fail "rw bind: host owner $(stat -c %U "$host/rw/w")"
X -- sh -c 'cat /mnt/ro/file; echo no > /mnt/ro/w'
checks=$((checks + 1)); [[ $out == from-host && $rc != 0 ]] || fail "ro bind: readable but not writable"
X -- cat /etc/one-file
checks=$((checks + 1)); [[ $out == single-file ]] || fail "file bind"
X -- sh -c 'grep " /scratch " /proc/self/mountinfo'
expect_out "tmpfs" "--tmpfs"
X -- hostname
checks=$((checks + 1)); [[ $out == box-e2e ]] || fail "hostname is '$out'"

# pid 1 is the init; ps shows the container's processes only.
X -- cat /proc/1/comm
checks=$((checks + 1)); [[ $out == cirrus-init ]] || fail "pid 1 is '$out'"
X -- ps -o pid,comm
checks=$((checks + 1)); [[ $(wc -l <<<"$out") == 3 ]] || fail "ps shows more than init and ps: $out"
X -- sh -c "tr \"\\\\0\" \" \" </proc/1/cmdline"
checks=$((checks + 1)); [[ $out != *"$rdir"* ]] || fail "pid 1's command line shows the run dir"

# Only the asked host paths are visible.
X -- sh -c 'cut -d" " -f5 /proc/1/mountinfo'
checks=$((checks + 1))
bad=$(grep -Ev '^/($|proc$|sys(/|$)|dev(/|$)|tmp$|mnt/rw$|mnt/ro$|etc/one-file$|scratch$)' <<<"$out")
[[ -z $bad ]] || fail "unexpected mount points: $bad"
X -- sh -c 'ls /home /work /var/lib/cirrus 2>&1; ls /root'
checks=$((checks + 1)); [[ $out != *cirrus-rl* && $out != *wt* ]] || fail "host directories visible: $out"

# Teardown: no process, no mount, no run dir.
checks=$((checks + 1)); [[ $(ns_procs) == 1 ]] || fail "expected only the init in the pid namespace"
stop_container
checks=$((checks + 1)); [[ ! -e $rdir ]] || fail "run dir left after teardown: $(ls -la "$rdir")"
checks=$((checks + 1)); [[ $(ns_procs) == 0 ]] || fail "processes left after teardown"

# seccomp: the default filter denies what a user namespace does not isolate (EPERM), on the
# i386 ABI too (int 0x80); --seccomp unconfined lets the same calls through to the kernel.
# Namespaces and mounts stay allowed (a step may run containers); so do other users' steps.
start_container s1 --mount "$here/seccomp_probe:/seccomp_probe:ro"
X -- sh -c 'grep "^Seccomp:" /proc/self/status; /seccomp_probe'
expect_rc 0 "seccomp_probe under the default filter"
for want in "Seccomp:	2" keyctl=EPERM keyctl_i386=EPERM reboot=EPERM reboot_i386=EPERM \
  personality_no_randomize=EPERM personality_query=ok personality_linux32=ok; do
  expect_out "$want" "default seccomp filter"
done
X -- sh -c 'grep "^Seccomp:" /proc/1/status'
expect_out "Seccomp:	0" "the init is not filtered"
X -- sh -c 'unshare -U -r id -u && unshare -m sh -c "mount -t tmpfs nested /tmp && grep -c \" /tmp .* nested \" /proc/self/mountinfo"'
expect_rc 0 "unshare and mount under the default filter"
checks=$((checks + 1)); [[ $out == $'0\n1' ]] || fail "unshare/mount under the default filter: '$out'"
if [[ $MODE != single ]]; then
  X --user 1000 -- sh -c 'id -u; grep "^Seccomp:" /proc/self/status; grep NoNewPrivs /proc/self/status'
  expect_rc 0 "a step of user 1000 under the default filter"
  expect_out "Seccomp:	2" "user 1000's step is filtered"
  expect_out "NoNewPrivs:	0" "no NO_NEW_PRIVS (setuid programs keep working)"
fi
stop_container
start_container s2 --seccomp unconfined --mount "$here/seccomp_probe:/seccomp_probe:ro"
X -- sh -c 'grep "^Seccomp:" /proc/self/status; /seccomp_probe'
expect_rc 0 "seccomp_probe unconfined"
for want in "Seccomp:	0" reboot=EINVAL reboot_i386=EINVAL personality_no_randomize=ok; do
  expect_out "$want" "--seccomp unconfined"
done
checks=$((checks + 1)); [[ $out != *keyctl=EPERM* && $out != *keyctl_i386=EPERM* ]] ||
  fail "--seccomp unconfined: keyctl still denied"
stop_container
mkdir -m 0700 "$runs/s3"
run "$RT" create --run-dir "$runs/s3" "${layers[@]}" --seccomp none </dev/null
expect_rc 1 "--seccomp none"
expect_err "--seccomp: expected default or unconfined, not 'none'"
rmdir "$runs/s3"
checks=$((checks + 1)); ! grep -q "$runs" /proc/self/mountinfo || fail "mounts left after teardown"
checks=$((checks + 1)); [[ ! -s $TMPROOT/c1.err || $MODE == single ]] || fail "create wrote: $(cat "$TMPROOT/c1.err")"
if [[ $MODE == single ]]; then
  checks=$((checks + 1))
  grep -q "no subordinate ids for $(id -un) in /etc/subuid" "$TMPROOT/c1.err" || fail "no single-mapping warning"
fi

# --network none: only lo.  Limits: cgroups as root, a warning otherwise.
start_container c2 --network none --memory-mb 200 --cpus 0.5
if [[ $MODE == root ]]; then
  checks=$((checks + 1))
  [[ $(cat /sys/fs/cgroup/memory/cirrus-rt-c2/memory.limit_in_bytes) == 209715200 ]] || fail "memory limit"
  checks=$((checks + 1))
  [[ $(cat /sys/fs/cgroup/cpu/cirrus-rt-c2/cpu.cfs_quota_us) == 50000 ]] || fail "cpu quota"
  X -- cat /proc/self/cgroup
  expect_out ":memory:/cirrus-rt-c2" "a step's memory cgroup"
  expect_out ":cpu:/cirrus-rt-c2" "a step's cpu cgroup"
else
  checks=$((checks + 1))
  grep -q "limits not applied (memory 200 MB and cpu 0.5)" "$TMPROOT/c2.err" || fail "no limits warning: $(cat "$TMPROOT/c2.err")"
fi
X -- sh -c 'ls /sys/class/net'
checks=$((checks + 1)); [[ $out == lo ]] || fail "--network none: interfaces '$out'"
stop_container
checks=$((checks + 1)); [[ ! -e $rdir ]] || fail "run dir c2 left"

# --network private: slirp4netns (the monitor's child) gives tap0 and outbound access; a second
# container joins with --netns-of and its ports are on the first one's localhost; teardown
# leaves no slirp4netns.
hostip=$(ip -4 route get 1 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p')
mkdir -p "$TMPROOT/www" && echo from-the-host >"$TMPROOT/www/f"
python3 -u -m http.server 0 -b "$hostip" -d "$TMPROOT/www" >"$TMPROOT/srv.out" 2>/dev/null &
srv=$!
for _ in $(seq 100); do port=$(sed -n 's/.* port \([0-9]*\).*/\1/p' "$TMPROOT/srv.out"); [[ -n $port ]] && break; sleep 0.05; done
start_container n1 --network private
n1=$pid n1_rdir=$rdir
exec 9>&7 # keep n1's monitor input while n2 uses fd 7
slirp=$(pgrep -P "$monitor_pid" -x slirp4netns)
checks=$((checks + 1)); [[ -n $slirp ]] || fail "no slirp4netns child of the monitor"
X -- sh -c 'ls /sys/class/net | tr "\n" " "'
checks=$((checks + 1)); [[ $out == "lo tap0 " ]] || fail "--network private: interfaces '$out'"
X -- wget -qO- "http://$hostip:$port/f"
checks=$((checks + 1)); [[ $out == from-the-host ]] || fail "--network private: no outbound access ($err)"
X -- cat /etc/resolv.conf
expect_out "nameserver" "--network private: resolv.conf"
start_container n2 --network private --netns-of "$n1"
checks=$((checks + 1))
[[ $(readlink "/proc/$pid/ns/net") == "$(readlink "/proc/$n1/ns/net")" ]] || fail "--netns-of: another network namespace"
checks=$((checks + 1))
[[ $(readlink "/proc/$pid/ns/pid") != "$(readlink "/proc/$n1/ns/pid")" ]] || fail "--netns-of: the same pid namespace"
checks=$((checks + 1)); [[ -z $(pgrep -P "$monitor_pid" -x slirp4netns) ]] || fail "--netns-of started a slirp4netns"
"$RT" exec --pid "$pid" --run-dir "$rdir" -- nc -l -p 8080 -e echo from-n2 &
listener=$!
for _ in $(seq 50); do X -- sh -c 'grep -q ":1F90 " /proc/net/tcp' && break; sleep 0.05; done
run "$RT" exec --pid "$n1" --run-dir "$n1_rdir" -- nc 127.0.0.1 8080
checks=$((checks + 1)); [[ $out == from-n2 ]] || fail "--netns-of: n2's port on n1's localhost: '$out' ($err)"
wait $listener 2>/dev/null
stop_container
checks=$((checks + 1)); [[ ! -e $rdir ]] || fail "run dir n2 left"
exec 7>&9 9>&-
rdir=$n1_rdir
stop_container
checks=$((checks + 1)); [[ ! -e $rdir ]] || fail "run dir n1 left"
checks=$((checks + 1)); ! kill -0 "$slirp" 2>/dev/null || fail "slirp4netns survives the teardown"
kill $srv 2>/dev/null
wait $srv 2>/dev/null
run "$RT" create --run-dir "$runs/n3" "${layers[@]}" --netns-of 1 </dev/null
expect_rc 1 "--netns-of without a network"
expect_err "--netns-of"

# A wrong --ppid is refused.
mkdir -m 0700 "$runs/c3"
run "$RT" create --run-dir "$runs/c3" "${layers[@]}" --ppid 1 </dev/null
expect_rc 1 "wrong --ppid"
expect_err "is gone"
rmdir "$runs/c3"

# The runner dies (SIGKILL): the monitor and the container die with it, the run dir stays for gc.
mkdir -m 0700 "$runs/c4"
# Its stdin is a fifo it holds open itself (no EOF when it dies): only PDEATHSIG ends the monitor.
mkfifo "$TMPROOT/c4.fifo"
bash -c 'exec 8<>"$1.fifo"; "$0" create --run-dir "$2" "${@:3}" --ppid $$ <&8 >"$2.out" 2>/dev/null' \
  "$RT" "$TMPROOT/c4" "$runs/c4" "${layers[@]}" --memory-mb 100 --network private &
runner=$!
for _ in $(seq 200); do [[ -s $runs/c4.out ]] && break; sleep 0.02; done
pid=$(sed -n 's/^ready \([0-9][0-9]*\)$/\1/p' "$runs/c4.out")
checks=$((checks + 1)); [[ -n $pid ]] || fail "c4 not ready"
pidns=$(readlink "/proc/$pid/ns/pid")
slirp=$(pgrep -f -- "^slirp4netns .* $pid tap0\$")
checks=$((checks + 1)); [[ -n $slirp ]] || fail "c4: no slirp4netns"
kill -9 $runner
wait $runner 2>/dev/null
for _ in $(seq 250); do [[ $(ns_procs) == 0 ]] && break; sleep 0.02; done # 5 s: a loaded machine
checks=$((checks + 1)); [[ $(ns_procs) == 0 ]] || fail "container processes survive the runner"
for _ in $(seq 100); do kill -0 "$slirp" 2>/dev/null || break; sleep 0.02; done
checks=$((checks + 1)); ! kill -0 "$slirp" 2>/dev/null || fail "slirp4netns survives the runner"
checks=$((checks + 1)); [[ -d $runs/c4 ]] || fail "the run dir of a killed runner is gone (gc has nothing to do)"
rm -f "$runs/c4.out"
run "$RT" gc --runs "$runs"
expect_rc 0 "gc"
checks=$((checks + 1)); [[ $out == "removed $runs/c4" ]] || fail "gc output: '$out'"
checks=$((checks + 1)); [[ ! -e $runs/c4 ]] || fail "gc left $runs/c4"
if [[ $MODE == root ]]; then
  checks=$((checks + 1)); [[ ! -e /sys/fs/cgroup/memory/cirrus-rt-c4 ]] || fail "gc left the cgroup of c4"
fi
checks=$((checks + 1))
[[ $MODE != root || -z $(ls -d /sys/fs/cgroup/memory/cirrus-rt-c2 /sys/fs/cgroup/cpu/cirrus-rt-c2 2>/dev/null) ]] ||
  fail "teardown left the cgroups of c2"
if [[ $MODE == root ]]; then
  # Empty cirrus-rt-* cgroups older than a minute (left by killed monitors of any store) go;
  # young ones may belong to a container being created and stay.
  old=/sys/fs/cgroup/memory/cirrus-rt-e2e-old-$$ young=/sys/fs/cgroup/memory/cirrus-rt-e2e-young-$$
  mkdir "$old" "$young" && touch -d '2 minutes ago' "$old"
fi
run "$RT" gc --runs "$runs"
expect_no_out "second gc"
if [[ $MODE == root ]]; then
  checks=$((checks + 1)); [[ ! -e $old ]] || fail "gc kept an old empty cgroup"
  checks=$((checks + 1)); [[ -e $young ]] || fail "gc removed a young cgroup"
  rmdir "$old" "$young" 2>/dev/null
fi

# ---- The root file system's drivers (--rootfs).  Two layers of our own over the image, made
# from tars as a pull makes them: the second deletes /linuxrc (a whiteout), makes /data opaque
# and replaces the directory /dirtofile by a file; the first has a file of uid 1000 and two hard
# links.  A root store keeps the image's owners; an unprivileged one makes everything root's.
mkdir -p "$TMPROOT/l2/data/sub" "$TMPROOT/l2/etc" "$TMPROOT/l2/dirtofile" "$TMPROOT/l3/data"
echo a >"$TMPROOT/l2/data/a"
echo c >"$TMPROOT/l2/data/sub/c"
echo x >"$TMPROOT/l2/dirtofile/x"
echo linked >"$TMPROOT/l2/hl1" && ln "$TMPROOT/l2/hl1" "$TMPROOT/l2/hl2"
ln -s /etc/passwd "$TMPROOT/l2/abs"
echo owned >"$TMPROOT/l2/etc/owned" && chmod 0640 "$TMPROOT/l2/etc/owned"
tar -C "$TMPROOT/l2" --numeric-owner --owner=0 --group=0 --exclude=./etc/owned -cf "$TMPROOT/l2.tar" .
tar -C "$TMPROOT/l2" --numeric-owner --owner=1000 --group=1000 -rf "$TMPROOT/l2.tar" ./etc/owned
touch "$TMPROOT/l3/data/.wh..wh..opq" "$TMPROOT/l3/.wh.linuxrc"
echo z >"$TMPROOT/l3/data/z"
echo file >"$TMPROOT/l3/dirtofile"
tar -C "$TMPROOT/l3" --numeric-owner --owner=0 --group=0 -cf "$TMPROOT/l3.tar" .
for t in l2 l3; do
  l=$("$IMG_TOOL" "${shift_opt[@]}" "$store" add-layer "$TMPROOT/$t.tar" | sed -n 's/^layer=//p')
  checks=$((checks + 1)); [[ -d $l ]] || { fail "img_tool add-layer $t: '$l'"; finish; exit 1; }
  layers+=(--layer "$l")
done
owner=0:0
[[ $MODE == root ]] && owner=1000:1000

# rootfs_checks NAME: the image as the layers say, writes and deletions seen by the next exec,
# then a teardown that leaves nothing (no process, fuse-overlayfs included, no mount, no dir).
rootfs_checks() {
  local name=$1
  X -- sh -c 'ls /data; ls /linuxrc 2>&1; stat -c "%u:%g %a" /etc/owned; cat /dirtofile; \
    stat -c %h /hl1; readlink /abs'
  checks=$((checks + 1))
  [[ $out == $'z\nls: /linuxrc: No such file or directory\n'"$owner 640"$'\nfile\n2\n/etc/passwd' ]] ||
    fail "$name: the image's layers are not what the container shows"
  X -- sh -c 'echo kept >/etc/written && rm /bin/vi /etc/owned && mkdir /newdir'
  expect_rc 0 "$name: write and delete"
  X -- sh -c 'cat /etc/written; ls /bin/vi /etc/owned 2>&1; ls -d /newdir'
  checks=$((checks + 1))
  [[ $out == $'kept\nls: /bin/vi: No such file or directory\nls: /etc/owned: No such file or directory\n/newdir' ]] ||
    fail "$name: the next exec does not see the changes"
  if [[ $MODE != single ]]; then
    X -- chown 1000:1000 /etc/written
    X --user 1000 -- sh -c 'stat -c %u:%g /etc/written; echo more >>/etc/written; cat /data/z'
    checks=$((checks + 1))
    [[ $out == $'1000:1000\nz' ]] || fail "$name: owners set by a step, or another user's access"
  fi
  checks=$((checks + 1)); ! grep -q "refused" "$TMPROOT/$name.err" || fail "$name: warned: $(cat "$TMPROOT/$name.err")"
  stop_container
  checks=$((checks + 1)); [[ ! -e $rdir ]] || fail "$name: run dir left after teardown"
  checks=$((checks + 1)); [[ $(ns_procs) == 0 ]] || fail "$name: processes left after teardown"
  checks=$((checks + 1)); [[ -z $(pgrep -f -- "$rdir") ]] || fail "$name: fuse-overlayfs left: $(pgrep -af -- "$rdir")"
  checks=$((checks + 1)); ! grep -q "$rdir" /proc/self/mountinfo || fail "$name: mount left after teardown"
}

run "$RT" check
expect_out "rootfs: overlay yes, fuse-overlayfs yes, copy yes" "check's drivers"
for driver in overlay fuse-overlayfs copy; do
  start_container "rootfs-$driver" --rootfs "$driver"
  X -- awk '$5 == "/"' /proc/self/mountinfo
  case $driver in
    overlay) expect_out " - overlay overlay " "--rootfs overlay: the root" ;;
    fuse-overlayfs) expect_out " - fuse.fuse-overlayfs " "--rootfs fuse-overlayfs: the root" ;;
    copy) checks=$((checks + 1)); [[ $out == *"/merged / "* && $out != *fuse.fuse-overlayfs* ]] || fail "--rootfs copy: the root is $out" ;;
  esac
  rootfs_checks "rootfs-$driver"
done

# A real refusal: runs on an overlay mount (set up by the outer part), which the kernel refuses
# as an upper dir.  auto takes fuse-overlayfs and says so, once.
runs=$CIRRUS_RT_OVL_RUNS
start_container rootfs-auto
X -- awk '$5 == "/"' /proc/self/mountinfo
expect_out " - fuse.fuse-overlayfs " "auto on an overlay runs dir"
checks=$((checks + 1))
[[ $(grep -c "refused" "$TMPROOT/rootfs-auto.err") == 1 ]] &&
  grep -qx "cirrus-runtime: warning: the kernel refused an overlay mount (Invalid argument, the run dir is on overlayfs): the root file system is mounted with fuse-overlayfs" "$TMPROOT/rootfs-auto.err" ||
  fail "auto's warning: $(cat "$TMPROOT/rootfs-auto.err")"
sed -i '/refused an overlay mount/d' "$TMPROOT/rootfs-auto.err"
rootfs_checks rootfs-auto
if [[ $MODE == root ]]; then
  # Nor fuse-overlayfs (hidden in a mount namespace of this test): a copy, and the warning says
  # why.
  : >"$TMPROOT/no-fuse"
  printf '#!/bin/sh\nmount --bind %s /usr/bin/fuse-overlayfs || exit 1\nPATH=/usr/bin:/bin exec "$@"\n' \
    "$TMPROOT/no-fuse" >"$TMPROOT/no-fuse.sh"
  chmod 0755 "$TMPROOT/no-fuse.sh"
  WRAP="unshare -m $TMPROOT/no-fuse.sh" start_container rootfs-nofuse
  X -- awk '$5 == "/"' /proc/self/mountinfo
  checks=$((checks + 1)); [[ $out == *"/merged / "* && $out != *fuse.fuse-overlayfs* ]] || fail "auto without fuse-overlayfs: the root is '$out'"
  checks=$((checks + 1))
  grep -qx "cirrus-runtime: warning: the kernel refused an overlay mount (Invalid argument, the run dir is on overlayfs) and fuse-overlayfs cannot be used (no fuse-overlayfs in /usr/bin or on PATH): the root file system is a copy of the image (slow)" "$TMPROOT/rootfs-nofuse.err" ||
    fail "auto's copy warning: $(cat "$TMPROOT/rootfs-nofuse.err")"
  sed -i '/refused an overlay mount/d' "$TMPROOT/rootfs-nofuse.err"
  rootfs_checks rootfs-nofuse
fi
finish
