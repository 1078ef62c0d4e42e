#!/bin/bash
# End-to-end tests of what real configurations use beyond scripts: caches, artifacts,
# additional containers, Dockerfile environments, pipes (issue 6), on one backend:
#   run-features.sh CIRRUS BACKEND        (BACKEND: docker, podman or builtin)
# Uses the local test image $CIRRUS_TEST_IMAGE (busybox; scripts/engines.sh builds it).  Caches
# go to a private $XDG_CACHE_HOME.  After every run no container or volume of ours may be left;
# the images this script builds or tags are removed at the end.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
CIRRUS=${1:?usage: run-features.sh CIRRUS BACKEND}
BACKEND=${2:?usage: run-features.sh CIRRUS BACKEND}
IMAGE=${CIRRUS_TEST_IMAGE:-localhost/cirrus-test/busybox:latest}
export NO_COLOR=1 CI=true
export CIRRUS_RUN_ID=e2efeat$$
export XDG_CACHE_HOME=$TMPROOT/cache

backend_setup

# Images of ours: built from a Dockerfile (unique template) and a second tag of the test image.
TEMPLATE="localhost/cirrus-e2e-$$/built-%s:latest"
IMAGE2="localhost/cirrus-e2e-$$/second:latest"
cleanup_images() {
  if ((${#engine[@]})); then
    local imgs
    imgs=$("${engine[@]}" images --format '{{.Repository}}:{{.Tag}}' 2>/dev/null | grep "^localhost/cirrus-e2e-$$/")
    [[ -z $imgs ]] || "${engine[@]}" rmi -f $imgs >/dev/null 2>&1
  fi
  rm -rf "$TMPROOT"
}
trap cleanup_images EXIT

leftovers() {
  if ((${#engine[@]})); then
    "${engine[@]}" ps -a --filter "label=dev.cirrus.run-id=$CIRRUS_RUN_ID" --format '{{.ID}} {{.Names}}' 2>/dev/null
    "${engine[@]}" volume ls --filter "label=dev.cirrus.run-id=$CIRRUS_RUN_ID" --format '{{.Name}}' 2>/dev/null
  else
    # builtin: no run directory, volume, runtime helper of this store or container process
    ls -A "$CIRRUS_STORE/runs" "$CIRRUS_STORE/volumes" 2>/dev/null | grep -v -e '^$' -e ':$'
    pgrep -af "cirrus-runtime .*$CIRRUS_STORE" 2>/dev/null
  fi
}

crun() {
  run "$CIRRUS" run --container-backend="$BACKEND" -o simple "$@"
  local left
  left=$(leftovers)
  checks=$((checks + 1))
  [[ -z $left ]] || fail "containers or volumes left behind after: $*: $left"
}

newproj() {
  p=$(project)
  cd "$p"
  printf 'container:\n  image: %s\n' "$IMAGE" >.cirrus.yml
  cat >>.cirrus.yml
}

# --- caches: a dependent task reads what its dependency populated; a second run hits (B32)
newproj <<'YML'
populate_task:
  deps_cache:
    folder: deps
    fingerprint_script: echo v1
    populate_script: mkdir -p deps && echo populated > deps/data.txt
  build_script: echo built > deps/built.txt
read_task:
  depends_on: populate
  deps_cache:
    folder: deps
    fingerprint_script: echo v1
    populate_script: echo "must not populate"; exit 1
  check_script: cat deps/data.txt deps/built.txt
YML
crun -p 1
expect_rc 0 "cache"
expect_out "Cache miss for deps-"
expect_out "Uploading cache deps..."
expect_out "Cache hit for deps-"
expect_out "populated"
expect_out "built"
expect_out "Skipping change detection for deps cache!"
checks=$((checks + 1)); ls "$XDG_CACHE_HOME/cirrus/projects/$(basename "$p")"/deps-* >/dev/null 2>&1 || fail "no blob in the store"
crun -p 1 populate
expect_rc 0 "cache, second run"
expect_out "Cache hit for deps-"
checks=$((checks + 1)); [[ $out != *"Cache miss"* ]] || fail "second run missed the cache"

# A cache without a fingerprint changes and is uploaded again (reupload_on_changes).
newproj <<'YML'
task:
  counter_cache:
    folder: counter
  bump_script: mkdir -p counter && date +%s%N >> counter/runs
YML
crun
expect_rc 0 "reupload 1"; expect_out "Cache miss for counter-"; expect_out "Uploading cache counter..."
crun
expect_rc 0 "reupload 2"; expect_out "Cache hit for counter-"; expect_out "Cache counter has changed!"
expect_out "modified: runs"; expect_out "Uploading cache counter..."

# Cache folders outside the working directory are refused (several folders).
newproj <<'YML'
task:
  bad_cache:
    folders:
      - deps
      - /etc
  script: true
YML
crun
expect_rc 1 "cache outside"
expect_out "all folders should be relative to the current working directory, yet, folder '/etc' points above"

# --- artifacts at D/<task>/<artifact>/<path>; junit annotations under github-actions (B33)
newproj <<'YML'
task:
  name: make
  build_script:
    - mkdir -p out/sub
    - echo one > out/a.txt
    - echo two > out/sub/b.txt
    - echo skip > out/c.log
    - |
      cat > report.xml <<'EOF'
      <testsuite name="s"><testcase classname="pkg" name="passes"/>
      <testcase classname="pkg" name="breaks" file="src/x.c" line="7"><failure message="boom">src/x.c:7 expected 1</failure></testcase></testsuite>
      EOF
  binaries_artifacts:
    path: "out/**/*.txt"
  junit_artifacts:
    path: report.xml
    format: junit
YML
crun --artifacts-dir "$p/arts" -o github-actions
expect_rc 0 "artifacts"
checks=$((checks + 1)); [[ $(cat "$p/arts/make/binaries/out/a.txt" 2>/dev/null) == one ]] || fail "artifact out/a.txt not stored"
checks=$((checks + 1)); [[ $(cat "$p/arts/make/binaries/out/sub/b.txt" 2>/dev/null) == two ]] || fail "artifact out/sub/b.txt not stored"
checks=$((checks + 1)); [[ ! -e "$p/arts/make/binaries/out/c.log" ]] || fail "unmatched file stored"
checks=$((checks + 1)); [[ -f "$p/arts/make/junit/report.xml" ]] || fail "junit report not stored"
expect_out "::error file=src/x.c,line=7"
expect_out "title=pkg.breaks::"

# Hostile artifact paths are refused with a clear error.
newproj <<'YML'
task:
  script: echo secret > /tmp/secret
  leak_artifacts:
    path: ../../secret
YML
crun --artifacts-dir "$p/arts"
expect_rc 1 "hostile artifact"
expect_out "Failed to upload artifacts: path is outside of CIRRUS_WORKING_DIR"
checks=$((checks + 1)); [[ -z $(find "$p/arts" -type f 2>/dev/null) ]] || fail "hostile artifact stored"

# --- additional containers answer on localhost (B44, B45)
# On the host's network (builtin's default) a fixed port would collide with the tests that run
# beside this one (ctest -j): one that is free now.
svc=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
newproj <<'YML'
task:
  container:
    image: IMAGE
    cpu: 1000
    memory: 100G
    additional_containers:
      - name: web
        image: IMAGE
        port: 8080
        command: sh -c "mkdir -p /www && echo hello-from-service > /www/index.html && exec httpd -f -p 8080 -h /www"
  script: wget -qO- http://localhost:8080/index.html
YML
sed -i -e "s|IMAGE|$IMAGE|g" -e "s|8080|$svc|g" .cirrus.yml
crun -v
expect_rc 0 "additional container"
expect_out "Waiting on port $svc..."
expect_out "hello-from-service"
expect_out "(clamped to the host)"
# ... and are removed when the task fails too.
sed -i 's|  script: wget.*|  script: false|' .cirrus.yml
crun
expect_rc 1 "additional container, failing task"

# ... and on SIGINT.
sed -i 's|  script: false|  script: sleep 120|' .cirrus.yml
"$CIRRUS" run --container-backend="$BACKEND" -o simple >"$TMPROOT/int.out" 2>&1 &
pid=$!
for _ in $(seq 1 100); do grep -q "Started 'main' script" "$TMPROOT/int.out" && break; sleep 0.2; done
sleep 1
kill -INT $pid
wait $pid; rc=$?; out=$(cat "$TMPROOT/int.out"); err=
expect_rc 130 "additional container, SIGINT"
left=$(leftovers); checks=$((checks + 1)); [[ -z $left ]] || fail "left after SIGINT: $left"

# --- --container-network (issue 5): host, private (builtin: slirp4netns), none; a task's
# additional containers share its network in every mode.
# Servers on the host: one on its non-loopback address, one on loopback only.
hostip=$(ip -4 route get 1 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p')
[[ -n $hostip ]] || hostip=$(hostname -I | awk '{print $1}')
mkdir -p "$TMPROOT/www"
echo from-the-host >"$TMPROOT/www/host.txt"
serve() { # serve ADDR: a python http.server on a free port; sets $srv_pid and $srv_port
  python3 -u -m http.server 0 -b "$1" -d "$TMPROOT/www" >"$TMPROOT/srv.$1" 2>/dev/null &
  srv_pid=$!
  srv_port=
  for _ in $(seq 100); do
    srv_port=$(sed -n 's/.* port \([0-9]*\).*/\1/p' "$TMPROOT/srv.$1")
    [[ -n $srv_port ]] && break
    sleep 0.05
  done
}
serve "$hostip"; pub_pid=$srv_pid pub=$srv_port
serve 127.0.0.1; lo_pid=$srv_pid lo=$srv_port
checks=$((checks + 1)); [[ -n $pub && -n $lo ]] || fail "cannot start the host's test servers"
# slirp4netns processes of ours (cirrus-runtime starts them with these options): none may
# outlive a run.  Only those that were not there before count (other tests may run).
# Ours only: other tests run beside this one (ctest -j); a slirp4netns writes its log into the
# run dir of the store it serves.
slirps() {
  local p
  for p in $(pgrep -x slirp4netns); do
    [[ $(readlink "/proc/$p/fd/1" 2>/dev/null) == "$CIRRUS_STORE"/* ]] && echo "$p"
  done | sort
}
slirps_before=$(slirps)
new_slirps() { comm -13 <(echo "$slirps_before") <(slirps); }
newproj <<'YML'
task:
  container:
    image: IMAGE
    additional_containers:
      - name: web
        image: IMAGE
        port: 8080
        command: sh -c "mkdir -p /www && echo hello-from-service > /www/index.html && exec httpd -f -p 8080 -h /www"
  script:
    - echo "interfaces:" $(ls /sys/class/net)
    - wget -qO- http://localhost:8080/index.html
    - wget -qO- http://HOSTIP:PUB/host.txt || echo "no outbound access"
    - wget -qO- http://127.0.0.1:LO/host.txt || echo "no host loopback"
    - if [ -e /sys/class/net/tap0 ]; then wget -qO- http://10.0.2.2:LO/host.txt || echo "no host loopback through the gateway"; fi
YML
sed -i -e "s|IMAGE|$IMAGE|g" -e "s|HOSTIP|$hostip|" -e "s|PUB|$pub|" -e "s|LO/|$lo/|g" \
  -e "s|8080|$svc|g" .cirrus.yml
crun --container-network none
expect_rc 0 "--container-network none"
expect_out "interfaces: lo"$'\n' "none: only lo"
expect_out "hello-from-service" "none: the service on localhost"
expect_out "no outbound access" "none"
expect_out "no host loopback"$'\n' "none"
if [[ $BACKEND == builtin ]]; then
  # As root, a shared mount of the host with a mount below it (as podman's /run/netns and
  # docker's /var/lib/docker are): slirp4netns's sandbox once unmounted such mounts on the host.
  if [[ $(id -u) == 0 ]]; then
    shr=$TMPROOT/shared
    mkdir -p "$shr"
    mount --bind "$shr" "$shr" && mount --make-shared "$shr" && mkdir -p "$shr/sub" &&
      mount -t tmpfs cirrus-e2e "$shr/sub" || fail "cannot set up a shared mount"
  fi
  crun --container-network private
  expect_rc 0 "--container-network private"
  if [[ $(id -u) == 0 ]]; then
    checks=$((checks + 1))
    mountpoint -q "$shr/sub" || fail "a private network's run unmounted a shared mount of the host"
    umount "$shr/sub" "$shr" 2>/dev/null
  fi
  expect_out "interfaces: lo tap0" "private: slirp4netns's tap0"
  expect_out "hello-from-service" "private: the service of an additional container on localhost"
  expect_out "from-the-host" "private: outbound access to $hostip"
  expect_out "no host loopback"$'\n' "private: the host's 127.0.0.1:$lo"
  expect_out "no host loopback through the gateway" "private: 10.0.2.2 is not the host's loopback"
  checks=$((checks + 1)); [[ -z $(new_slirps) ]] || fail "slirp4netns left after a run: $(new_slirps)"
  # The host's network (builtin's default): the host's loopback is reachable.
  crun
  expect_rc 0 "host network"
  expect_out "echo \"no host loopback\""$'\n'"from-the-host" "host: the host's 127.0.0.1:$lo"
  # resolv.conf: the host's resolvers unless they are loopback, then slirp's forwarder.
  sed -i 's|^  script:$|  resolv_script: cat /etc/resolv.conf\n  script:|' .cirrus.yml
  crun --container-network private
  if grep -Eq '^[[:space:]]*nameserver[[:space:]]+127\.' /etc/resolv.conf; then
    expect_out "nameserver 10.0.2.3" "private: resolv.conf"
  else
    expect_out "$(grep -m1 -E '^[[:space:]]*nameserver' /etc/resolv.conf)" "private: resolv.conf"
  fi
  # cirrus SIGKILLed: slirp4netns dies with the container's monitor.
  sed -i 's|  script:$|  script:\n    - sleep 120|' .cirrus.yml
  "$CIRRUS" run --container-backend="$BACKEND" --container-network private -o simple >"$TMPROOT/kill.out" 2>&1 &
  pid=$!
  for _ in $(seq 1 150); do grep -q "Started 'main' script" "$TMPROOT/kill.out" && break; sleep 0.2; done
  checks=$((checks + 1)); [[ -n $(new_slirps) ]] || fail "no slirp4netns while a private task runs"
  kill -KILL $pid
  wait $pid 2>/dev/null
  for _ in $(seq 1 50); do [[ -z $(new_slirps) ]] && break; sleep 0.1; done
  checks=$((checks + 1)); [[ -z $(new_slirps) ]] || fail "slirp4netns survives a SIGKILLed cirrus: $(new_slirps)"
  for _ in $(seq 1 50); do pgrep -f "cirrus-runtime .*$CIRRUS_STORE" >/dev/null || break; sleep 0.1; done
  checks=$((checks + 1)); ! pgrep -af "cirrus-runtime .*$CIRRUS_STORE" || fail "helpers survive a SIGKILLed cirrus"
  run "$CIRRUS" clean --container-backend="$BACKEND"
  expect_rc 0 "clean after SIGKILL"
fi
kill "$pub_pid" "$lo_pid" 2>/dev/null
wait "$pub_pid" "$lo_pid" 2>/dev/null

# --- Dockerfile environments: built once for two tasks, reused on the next run (B46)
newproj <<'YML'
one_task:
  container:
    dockerfile: ci/Dockerfile
    docker_arguments:
      GREETING: hello
  script: cat /greeting
two_task:
  container:
    dockerfile: ci/Dockerfile
    docker_arguments:
      GREETING: hello
  script: cat /greeting
YML
mkdir ci
# (what COPY puts in /tmp is there for RUN, as with Docker)
printf 'FROM %s\nARG GREETING\nCOPY ci/extra.txt /extra.txt\nCOPY ci/extra.txt /tmp/\nRUN echo "$GREETING" > /greeting && cp /tmp/extra.txt /from-tmp\n' "$IMAGE" >ci/Dockerfile
echo extra >ci/extra.txt
crun --dockerfile-image-template "$TEMPLATE"
expect_rc 0 "dockerfile"
checks=$((checks + 1)); n=$(grep -c "is not available locally, building it" <<<"$out"); [[ $n == 1 ]] || fail "expected one build, got $n"
checks=$((checks + 1)); n=$(grep -c "^hello$" <<<"$out"); [[ $n == 2 ]] || fail "expected two tasks on the built image, got $n"
crun --dockerfile-image-template "$TEMPLATE"
expect_rc 0 "dockerfile, second run"
expect_out "Re-using local image localhost/cirrus-e2e-$$/built-"
checks=$((checks + 1)); [[ $out != *"building it"* ]] || fail "the image was built again"

# ... a failing step or an unsupported instruction fails the build, naming the Dockerfile's
# line (builtin: our builder's messages; nothing is left behind).
if [[ $BACKEND == builtin ]]; then
  printf 'FROM %s\nRUN echo before\nRUN exit 7\n' "$IMAGE" >ci/Dockerfile
  crun --dockerfile-image-template "$TEMPLATE"
  expect_rc 1 "build, failing RUN"
  expect_out "ci/Dockerfile:3: RUN exit 7: the command returned a non-zero code: 7"
  printf 'FROM %s\n\nVOLUME /data\n' "$IMAGE" >ci/Dockerfile
  crun --dockerfile-image-template "$TEMPLATE"
  expect_rc 1 "build, unsupported instruction"
  expect_out "ci/Dockerfile:3: unsupported instruction 'VOLUME'"
fi

# ... a Ctrl-C stops a running build (builtin: the RUN container goes at once, nothing is left).
if [[ $BACKEND == builtin ]]; then
  printf 'FROM %s\nRUN echo started-sleeping; sleep 300\n' "$IMAGE" >ci/Dockerfile
  "$CIRRUS" run --container-backend="$BACKEND" -o simple --dockerfile-image-template "$TEMPLATE" \
    >"$TMPROOT/bint.out" 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do grep -q "started-sleeping" "$TMPROOT/bint.out" && break; sleep 0.2; done
  kill -INT $pid
  wait $pid; rc=$?; out=$(cat "$TMPROOT/bint.out"); err=
  expect_rc 130 "build, SIGINT"
  expect_out "build canceled"
  left=$(leftovers); checks=$((checks + 1)); [[ -z $left ]] || fail "left after SIGINT: $left"
  checks=$((checks + 1))
  [[ -z $(ls "$CIRRUS_STORE/build-cache" | grep -v '\.json$') ]] || fail "temporary layers left"
fi

# --- builtin: $CIRRUS_ROOTFS picks the root file system's driver; steps of a task share it
if [[ $BACKEND == builtin ]]; then
  newproj <<'YML'
rootfs_task:
  write_script: echo kept > /etc/written && rm /bin/vi
  read_script:
    - cat /etc/written
    - test ! -e /bin/vi
    - awk '$5 == "/" { print "root=" $4 " " $8 }' /proc/self/mountinfo
YML
  for driver in fuse-overlayfs copy; do
    CIRRUS_ROOTFS=$driver crun
    expect_rc 0 "CIRRUS_ROOTFS=$driver"
    expect_out "kept" "CIRRUS_ROOTFS=$driver: the second script sees the first's write"
    expect_not_err "refused" "CIRRUS_ROOTFS=$driver"
    case $driver in
      fuse-overlayfs) expect_out "root=/ fuse.fuse-overlayfs" "CIRRUS_ROOTFS=$driver" ;;
      copy) expect_out "/merged " "CIRRUS_ROOTFS=$driver" ;;
    esac
  done
  # A real refusal (root: it mounts): a store on an overlay mount, which the kernel refuses as
  # an upper dir.  auto falls back to fuse-overlayfs, says so once, and the task passes.
  if [[ $(id -u) == 0 ]]; then
    ovl=$TMPROOT/ovl
    mkdir -p "$ovl/l" "$ovl/u" "$ovl/w" "$ovl/m"
    if mount -t overlay overlay -o "lowerdir=$ovl/l,upperdir=$ovl/u,workdir=$ovl/w" "$ovl/m"; then
      chmod 0755 "$ovl/m"
      CIRRUS_STORE=$ovl/m/store "$CIRRUS" images pull "$REGISTRY/cirrus-test/busybox:latest" >/dev/null &&
        CIRRUS_STORE=$ovl/m/store "$CIRRUS" images tag "$REGISTRY/cirrus-test/busybox:latest" "$IMAGE"
      CIRRUS_STORE=$ovl/m/store crun
      expect_rc 0 "a store on overlayfs"
      expect_out "root=/ fuse.fuse-overlayfs" "a store on overlayfs"
      checks=$((checks + 1))
      [[ $(grep -c "refused" <<<"$err") == 1 ]] || fail "a store on overlayfs: not one warning"
      expect_err "warning: the kernel refused an overlay mount (Invalid argument, the run dir is on overlayfs): the root file system is mounted with fuse-overlayfs"
      expect_not_err "warning: warning:"
      checks=$((checks + 1)); [[ -z $(ls -A "$ovl/m/store/runs") ]] || fail "a store on overlayfs: run dir left"
      umount -l "$ovl/m"
    else
      fail "cannot mount an overlay for the refusal test"
    fi
  fi
  CIRRUS_ROOTFS=fuse crun
  expect_rc 1 "CIRRUS_ROOTFS=fuse"
  expect_err "CIRRUS_ROOTFS must be auto, overlay, fuse-overlayfs or copy, not 'fuse'"
fi

# --- builtin: steps run under the default seccomp filter; $CIRRUS_SECCOMP=unconfined lifts it
if [[ $BACKEND == builtin ]]; then
  newproj <<'YML'
seccomp_task:
  script: grep '^Seccomp:' /proc/self/status
YML
  crun
  expect_rc 0 "default seccomp"
  expect_out "Seccomp:	2" "a step under the default seccomp filter"
  CIRRUS_SECCOMP=unconfined crun
  expect_rc 0 "CIRRUS_SECCOMP=unconfined"
  expect_out "Seccomp:	0" "CIRRUS_SECCOMP=unconfined"
  CIRRUS_SECCOMP=off crun
  expect_rc 1 "CIRRUS_SECCOMP=off"
  expect_err "CIRRUS_SECCOMP must be default or unconfined, not 'off'"
fi

# --- --export-bundle: a failed task's container as an OCI runtime bundle that runc runs
newproj <<'YML'
task:
  name: broken build
  env:
    GREETING: hello from the task
  script:
    - echo "$GREETING" > /root/marker
    - echo made > made-by-step
    - exit 3
passing_task:
  script: true
YML
mkdir "$p/bundles"
crun --export-bundle "$p/bundles"
expect_rc 1 "export bundle"
expect_out "container exported as an OCI bundle: $p/bundles/broken-build"
b=$p/bundles/broken-build
checks=$((checks + 1)); [[ $(ls "$p/bundles") == broken-build ]] || fail "bundles: $(ls "$p/bundles") (only the failed task's expected)"
checks=$((checks + 1)); [[ $(cat "$b/rootfs/root/marker" 2>/dev/null) == "hello from the task" ]] || fail "the step's change to /root is not in the bundle"
checks=$((checks + 1)); [[ -f $b/rootfs/tmp/cirrus-ci/working-dir/made-by-step && -f $b/rootfs/tmp/cirrus-ci/working-dir/.cirrus.yml ]] || fail "the working directory is not in the bundle"
checks=$((checks + 1)); [[ -z $(find "$b/rootfs/proc" "$b/rootfs/sys" -mindepth 1 2>&1) ]] || fail "/proc or /sys content exported"
python3 - "$b/config.json" "$(id -u)" <<'PY' || fail "config.json: see above"
import json, sys
c = json.load(open(sys.argv[1]))
assert c["root"]["path"] == "rootfs", c["root"]
p = c["process"]
assert p["cwd"] == "/tmp/cirrus-ci/working-dir", p["cwd"]
assert "GREETING=hello from the task" in p["env"], p["env"]
assert any(e.startswith("CIRRUS_TASK_NAME=broken build") for e in p["env"]), p["env"]
ns = [n["type"] for n in c["linux"]["namespaces"]]
if sys.argv[2] != "0":
    assert "user" in ns and c["linux"]["uidMappings"][0]["hostID"] == int(sys.argv[2]), c["linux"]
PY
checks=$((checks + 1))
# runc runs it (unprivileged: in a user namespace, with a state dir of ours): the shell sees
# the task's files, environment and working directory.
runc_root=()
[[ $(id -u) == 0 ]] || runc_root=(--root "$TMPROOT/runc")
python3 - "$b/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["process"]["terminal"] = False
c["process"]["args"] = ["sh", "-c", 'cat /root/marker; pwd; echo "$GREETING"; cat made-by-step; grep "^Seccomp:" /proc/self/status']
json.dump(c, open(sys.argv[1], "w"))
PY
got=$(cd "$b" && timeout 60 runc "${runc_root[@]}" run "cirrus-e2e-bundle-$$" 2>&1)
runc "${runc_root[@]}" delete -f "cirrus-e2e-bundle-$$" >/dev/null 2>&1
# (Seccomp 2: runc loaded the bundle's linux.seccomp, the built-in runtime's default filter)
[[ $got == $'hello from the task\n/tmp/cirrus-ci/working-dir\nhello from the task\nmade\nSeccomp:\t2' ]] ||
  fail "runc run of the bundle printed: $got"
# The directory is never overwritten: a second export goes beside it.
crun --export-bundle "$p/bundles" "broken build"
expect_rc 1 "export bundle again"
checks=$((checks + 1)); [[ -d $p/bundles/broken-build-0 ]] || fail "second export: $(ls "$p/bundles")"

# --- pipes: each step in its own image, one working directory
if ((${#engine[@]})); then "${engine[@]}" tag "$IMAGE" "$IMAGE2"; else "$CIRRUS" images tag "$IMAGE" "$IMAGE2"; fi
newproj <<YML
task_pipe:
  steps:
    - image: $IMAGE
      write_script: echo passed-along > shared.txt
    - image: $IMAGE2
      read_script:
        - cat shared.txt
        - test -f .cirrus.yml
YML
sed -i '1,2d' .cirrus.yml # no top-level container for a pipe
crun
expect_rc 0 "pipe"
expect_out "passed-along"
expect_out "'read' script succeeded"

finish
