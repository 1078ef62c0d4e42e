#!/bin/bash
# Install and start the container engines the end-to-end tests talk to, on a fresh Debian 12
# machine (root, no TTY, no systemd, no Docker Hub):
#   - rootful Podman's REST API service   unix:///run/podman/podman.sock
#   - dockerd (Docker Engine API)          unix:///var/run/docker.sock
#   - a registry v2 (plain HTTP)           127.0.0.1:5000
#   - the test image localhost/cirrus-test/busybox:latest, built here from busybox-static
#     (root user, /bin/sh, CMD ["/bin/sh"], the applet symlinks at their usual paths), loaded
#     into both engines, pushed to the registry, and written as an OCI layout and a docker-archive
#   - with --rootless USER: a rootless Podman API service for USER
# Idempotent: a second run only checks that everything answers.  Prints eval-able exports on
# stdout; everything else goes to $STATE/engines.log.  Stop the daemons with engines-stop.sh.
#
# Usage: engines.sh [--only podman|docker|registry]... [--rootless USER]
# Environment: CIRRUS_ENGINES_STATE  state directory (default /var/tmp/cirrus-engines)
#
# Why it looks like this (measured on this kind of machine: kernel 6.x, cgroup v1 hybrid,
# RLIMIT_NOFILE hard 20000, no CAP_SYS_RESOURCE, PID 1 is not an init system):
#   - Rootful podman 4.3 asks the runtime for RLIMIT_NOFILE 1048576 and lowers its own
#     RLIMIT_NPROC to 32768; without CAP_SYS_RESOURCE runc then fails with "setrlimit ...:
#     Operation not permitted".  A containers.conf drop-in sets default_ulimits within the
#     shell's hard limits; dockerd gets the same numbers through --default-ulimit.
#   - crun refuses this hybrid cgroup layout: podman is told to use runc, cgroupfs, file events.
#   - No systemd: daemons run detached (setsid), with pid files and logs under $STATE.
#   - Package scripts must not start services (docker.io's init script would start a dockerd we
#     did not configure): a policy-rc.d that denies them is in place while apt runs.
#   - dockerd runs with --iptables=false --bridge=none: containers get loopback only (or the
#     host network), which is all the tests need; overlay2 falls back to vfs where unsupported.
#   - The registry speaks plain HTTP on loopback: dockerd treats 127.0.0.0/8 as insecure by
#     default, podman is told so by a registries.conf drop-in.
set -eEuo pipefail
shopt -s extglob

STATE=${CIRRUS_ENGINES_STATE:-/var/tmp/cirrus-engines}
LOG=$STATE/engines.log
IMAGE=localhost/cirrus-test/busybox:latest
REGISTRY=127.0.0.1:5000
REGISTRY_IMAGE=$REGISTRY/cirrus-test/busybox:latest
PODMAN_SOCK=/run/podman/podman.sock
DOCKER_SOCK=/var/run/docker.sock
PKGS=(podman runc conmon netavark aardvark-dns uidmap slirp4netns fuse-overlayfs catatonit
      skopeo busybox-static docker.io docker-registry curl)

me=engines.sh
usage() { sed -n 's/^# Usage: //p' "$0" >&2; exit 2; }
only=() rootless_user=""
args=("$@")
while (($#)); do
  case $1 in
    --only) (($# >= 2)) || usage; IFS=, read -ra o <<<"$2"; only+=("${o[@]}"); shift 2 ;;
    --rootless) (($# >= 2)) || usage; rootless_user=$2; shift 2 ;;
    -h|--help) usage ;;
    *) echo "$me: unknown argument '$1'" >&2; usage ;;
  esac
done
for o in "${only[@]}"; do
  [[ $o == @(podman|docker|registry) ]] || { echo "$me: --only takes podman, docker or registry" >&2; exit 2; }
done
want() { ((${#only[@]} == 0)) || [[ " ${only[*]} " == *" $1 "* ]]; }

[[ $(id -u) == 0 ]] || { echo "$me: must run as root" >&2; exit 1; }
mkdir -p "$STATE"

# One run at a time: two concurrent runs would race on apt, pid files and image imports.  The
# lock is held by flock(1) around a second instance of this script, and not passed on (-o):
# a process that outlives us (a daemon, rootless podman's pause process) must not hold it.
if [[ ${CIRRUS_ENGINES_LOCKED:-} != "$STATE" ]]; then
  rc=0
  CIRRUS_ENGINES_LOCKED=$STATE flock -o -E 200 -w 900 "$STATE/lock" bash "$0" "${args[@]}" || rc=$?
  ((rc != 200)) || echo "$me: error: another $me has held $STATE/lock for 15 minutes" >&2
  exit "$rc"
fi
unset CIRRUS_ENGINES_LOCKED

exec 8>>"$LOG"
log() { echo "[$(date +%T)] $*" >&8; }
# die MESSAGE: end the setup; the message is shown on stderr by the outer shell.
die() {
  echo "$*" >"$STATE/error"
  log "error: $*"
  exit 1
}

# The setup runs in a subshell whose stdout and stderr are the log: no process it starts can
# hold the caller's stdout (a pipe when run as eval "$(engines.sh)") or stderr open.
setup() {
# Any command failing outside an explicit check is reported with its line.
trap 'die "command failed (line $LINENO): $BASH_COMMAND"' ERR
log "=== $me ${args[*]} (state $STATE)"
t0=$SECONDS

# --- 1. packages: only what is missing; apt-get update only if something is -------------------
missing=()
for p in "${PKGS[@]}"; do
  [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) == "install ok installed" ]] || missing+=("$p")
done
if ((${#missing[@]})); then
  log "installing ${missing[*]}"
  policy=/usr/sbin/policy-rc.d own_policy=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\n# temporary, from cirrus engines.sh: no service starts during apt\nexit 101\n' >"$policy"
    chmod 0755 "$policy"
    own_policy=1
  fi
  apt_opts=(-o Acquire::Retries=5 -o DPkg::Lock::Timeout=600 -o Dpkg::Options::=--force-confold)
  ok=0
  for attempt in 1 2 3; do
    if apt-get "${apt_opts[@]}" update -qq >&8 2>&1 &&
       DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" install -y -qq --no-install-recommends \
         "${missing[@]}" </dev/null >&8 2>&1; then
      ok=1; break
    fi
    log "apt attempt $attempt failed; retrying"
    sleep $((attempt * 10))
  done
  ((own_policy)) && rm -f "$policy"
  ((ok)) || die "apt-get install ${missing[*]} failed 3 times"
  log "packages installed in $((SECONDS - t0)) s"
fi

# --- 2. host configuration for this kernel and cgroup layout ----------------------------------
# Rootless fuse-overlayfs and slirp4netns need these; there is no udev to set their modes.
chmod 0666 /dev/fuse /dev/net/tun 2>/dev/null || true
nofile=$(ulimit -Hn)
[[ $nofile == unlimited ]] && nofile=1048576
nproc=$(ulimit -Hu)
[[ $nproc == unlimited || $nproc -gt 32768 ]] && nproc=32768
# write_if_changed FILE: stdin becomes FILE, atomically, only when the content differs
write_if_changed() {
  local f=$1 tmp
  tmp=$(mktemp "$f.XXXXXX")
  cat >"$tmp"
  if cmp -s "$tmp" "$f"; then rm -f "$tmp"; else chmod 0644 "$tmp"; mv "$tmp" "$f"; log "wrote $f"; fi
}
mkdir -p /etc/containers/containers.conf.d /etc/containers/registries.conf.d
write_if_changed /etc/containers/containers.conf.d/50-cirrus-engines.conf <<CONF
# written by cirrus scripts/engines.sh
[containers]
# within the hard limits of this machine (no CAP_SYS_RESOURCE); podman caps its own NPROC at 32768
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
write_if_changed /etc/containers/registries.conf.d/50-cirrus-engines.conf <<CONF
# written by cirrus scripts/engines.sh: the local test registry speaks plain HTTP
[[registry]]
location = "$REGISTRY"
insecure = true
CONF

# --- helpers for daemons -----------------------------------------------------------------------
declare -A comm=([podman]=podman [rootless-podman]=podman [dockerd]=dockerd [registry]=docker-registry)
# alive NAME: the process in $STATE/NAME.pid runs and is still the program we started
alive() {
  local pid
  pid=$(cat "$STATE/$1.pid" 2>/dev/null) || return 1
  [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null &&
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "${comm[$1]}"* ]]
}
# start_daemon NAME CMD...: detached in its own session, stdio to $STATE/NAME.log
start_daemon() {
  local name=$1; shift
  log "starting $name: $*"
  echo "=== $(date -u +%FT%TZ) $*" >>"$STATE/$name.log"
  # not the lock (fd 9) nor the log (fd 8): a daemon holding the lock would block the next run
  setsid "$@" </dev/null >>"$STATE/$name.log" 2>&1 8>&- 9>&- &
  echo $! >"$STATE/$name.pid"
}
# wait_for NAME SECONDS CMD...: retry CMD every 0.25 s; give up early if NAME died
wait_for() {
  local name=$1 secs=$2 i; shift 2
  for ((i = 0; i < secs * 4; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    if [[ -f $STATE/$name.pid ]] && ! alive "$name"; then
      log "$name exited"; break
    fi
    sleep 0.25
  done
  if [[ -f $STATE/$name.log ]]; then
    { echo "last lines of $STATE/$name.log:"; tail -n 8 "$STATE/$name.log"; } >"$STATE/$name.tail"
  fi
  return 1
}
ping_sock() { [[ $(curl -s --max-time 3 --unix-socket "$1" http://d/_ping) == OK ]]; }
ping_registry() { curl -sf --max-time 3 "http://$REGISTRY/v2/" >/dev/null; }

# --- 3. the test rootfs: busybox-static, reproducible tar ----------------------------------------
# ROOTFS_FORMAT names this recipe: a tar from an older recipe (or another script) is rebuilt.
ROOTFS_FORMAT=cirrus-engines-1
images=$STATE/images
mkdir -p "$images"
if [[ ! -s $images/busybox.tar || $(cat "$images/busybox.tar.format" 2>/dev/null) != "$ROOTFS_FORMAT" ]]; then
  log "building the test rootfs"
  bb=/bin/busybox
  ! ldd "$bb" >/dev/null 2>&1 || die "$bb is not statically linked (is busybox-static installed?)"
  root=$(mktemp -d)
  mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,root,tmp,proc,sys,dev,var/tmp}
  cp "$bb" "$root/bin/busybox"
  while read -r applet; do
    [[ $applet == bin/busybox || -e $root/$applet ]] && continue
    mkdir -p "$root/${applet%/*}"
    ln -s /bin/busybox "$root/$applet"
  done < <("$root/bin/busybox" --list-full)
  [[ -L $root/bin/sh && -L $root/usr/bin/env ]] || die "busybox lacks the sh or env applet"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
  printf 'root:x:0:\nnobody:x:65534:\n' >"$root/etc/group"
  chmod 0755 "$root"
  chmod 0700 "$root/root"
  chmod 1777 "$root/tmp" "$root/var/tmp"
  tar --sort=name --mtime=@1704067200 --numeric-owner --owner=0 --group=0 \
    -C "$root" -cf "$images/busybox.tar.tmp" .
  rm -rf "$root"
  mv "$images/busybox.tar.tmp" "$images/busybox.tar"
  echo "$ROOTFS_FORMAT" >"$images/busybox.tar.format"
fi
rootfs_sum=$(sha256sum <"$images/busybox.tar" | cut -c1-64)

# --- 4. the image in podman's store; archive, OCI layout and registry copies follow from it ----
# The image carries the rootfs checksum as a label, so a store holding an image of that name
# built from anything else (an older recipe, another script) gets the right one again.
LABEL=org.cirrus-ci.test.rootfs
import_changes=(--change 'CMD ["/bin/sh"]' --change 'USER root' --change 'WORKDIR /'
                --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
                --change "LABEL $LABEL=$rootfs_sum")
# podman_image [podman command...]: make that podman's $IMAGE the one built from busybox.tar
podman_image() {
  local cur
  cur=$("$@" image inspect --format "{{index .Labels \"$LABEL\"}}" "$IMAGE" 2>/dev/null) || cur=""
  [[ $cur == "$rootfs_sum" ]] && return 0
  log "importing $IMAGE into $*"
  "$@" import -q "${import_changes[@]}" "$images/busybox.tar" "$IMAGE" >&8 2>&1
}
podman_image podman || die "podman cannot import the test image"
image_id=$(podman image inspect --format '{{.Id}}' "$IMAGE")
# Copies made from another image id are stale: make them again (new copy first, then swap).
if [[ $(cat "$images/image.id" 2>/dev/null) != "$image_id" || ! -f $images/busybox-oci/index.json ||
      ! -s $images/busybox-archive.tar ]]; then
  log "image $image_id: writing the OCI layout and the docker-archive"
  rm -rf "$images/busybox-oci.tmp" "$images/busybox-archive.tar.tmp"
  skopeo copy -q "containers-storage:$IMAGE" "oci:$images/busybox-oci.tmp:latest" >&8 2>&1 ||
    die "skopeo cannot write the OCI layout"
  skopeo copy -q "containers-storage:$IMAGE" "docker-archive:$images/busybox-archive.tar.tmp:$IMAGE" \
    >&8 2>&1 || die "skopeo cannot write the docker-archive"
  rm -rf "$images/busybox-oci"
  mv "$images/busybox-oci.tmp" "$images/busybox-oci"
  mv "$images/busybox-archive.tar.tmp" "$images/busybox-archive.tar"
  echo "$image_id" >"$images/image.id"
fi

# --- 5. rootful podman API service --------------------------------------------------------------
if want podman; then
  # A container run proves the runtime, rlimits and network settings before anything listens.
  podman run --rm --network none "$IMAGE" /bin/true >&8 2>&1 ||
    die "podman cannot run the test image (see the log for the runtime's message)"
  if ! alive podman; then
    if ping_sock "$PODMAN_SOCK"; then
      log "a podman service not started by $me answers on $PODMAN_SOCK; using it"
    else
      mkdir -p "${PODMAN_SOCK%/*}"
      rm -f "$PODMAN_SOCK"
      start_daemon podman podman system service --time=0 "unix://$PODMAN_SOCK"
    fi
  fi
  wait_for podman 60 ping_sock "$PODMAN_SOCK" || die "the podman API service did not answer on $PODMAN_SOCK"
  log "podman API up on $PODMAN_SOCK"
fi

# --- 6. dockerd ---------------------------------------------------------------------------------
if want docker; then
  if ! alive dockerd && ! ping_sock "$DOCKER_SOCK"; then
    dargs=(--iptables=false --ip-masq=false --bridge=none --log-level=warn
           --exec-opt native.cgroupdriver=cgroupfs
           --default-ulimit "nofile=$nofile:$nofile" --default-ulimit "nproc=$nproc:$nproc")
    driver=$(cat "$STATE/dockerd.driver" 2>/dev/null || echo overlay2)
    start_daemon dockerd dockerd "${dargs[@]}" --storage-driver="$driver"
    if ! wait_for dockerd 90 ping_sock "$DOCKER_SOCK"; then
      [[ $driver == overlay2 ]] || die "dockerd did not answer on $DOCKER_SOCK"
      log "dockerd failed with overlay2; retrying with vfs"
      if alive dockerd; then
        kill "$(cat "$STATE/dockerd.pid")"
        for _ in $(seq 1 40); do alive dockerd || break; sleep 0.25; done
      fi
      driver=vfs
      start_daemon dockerd dockerd "${dargs[@]}" --storage-driver=vfs
      wait_for dockerd 90 ping_sock "$DOCKER_SOCK" || die "dockerd did not answer on $DOCKER_SOCK"
    fi
    echo "$driver" >"$STATE/dockerd.driver"
  elif ! alive dockerd; then
    log "a dockerd not started by $me answers on $DOCKER_SOCK; using it"
  fi
  wait_for dockerd 90 ping_sock "$DOCKER_SOCK" || die "dockerd did not answer on $DOCKER_SOCK"
  docker=(docker -H "unix://$DOCKER_SOCK")
  # docker load of the archive keeps podman's image id: the same id means the same image.
  cur=$("${docker[@]}" image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null) || cur=""
  if [[ $cur != "sha256:$image_id" ]]; then
    log "loading $IMAGE into dockerd"
    "${docker[@]}" load -q -i "$images/busybox-archive.tar" >&8 2>&1 || die "docker cannot load the test image"
  fi
  "${docker[@]}" run --rm "$IMAGE" /bin/true >&8 2>&1 ||
    die "docker cannot run the test image (see the log for the daemon's message)"
  log "dockerd up on $DOCKER_SOCK"
fi

# --- 7. registry holding the test image ---------------------------------------------------------
if want registry; then
  if ! alive registry; then
    if ping_registry; then
      log "a registry not started by $me answers on $REGISTRY; using it"
    else
      write_if_changed "$STATE/registry.yml" <<REG
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $STATE/registry-data
  delete:
    enabled: true
http:
  addr: $REGISTRY
REG
      start_daemon registry docker-registry serve "$STATE/registry.yml"
    fi
  fi
  wait_for registry 30 ping_registry || die "the registry did not answer on $REGISTRY"
  # The manifest is OCI (skopeo copies podman's image as is).
  if [[ $(cat "$images/pushed" 2>/dev/null) != "$image_id" ]] ||
     ! curl -sf --max-time 5 -o /dev/null -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
       "http://$REGISTRY/v2/cirrus-test/busybox/manifests/latest"; then
    skopeo copy -q --dest-tls-verify=false "containers-storage:$IMAGE" "docker://$REGISTRY_IMAGE" >&8 2>&1 ||
      die "cannot push the test image to $REGISTRY"
    echo "$image_id" >"$images/pushed"
  fi
  log "registry up on $REGISTRY"
fi

# --- 8. rootless podman for one unprivileged user -------------------------------------------------
if [[ -n $rootless_user ]]; then
  if ! id "$rootless_user" >/dev/null 2>&1; then
    useradd -m -s /bin/bash "$rootless_user" >&8 2>&1 || die "cannot create user '$rootless_user'"
  fi
  ruid=$(id -u "$rootless_user") rgid=$(id -g "$rootless_user")
  rhome=$(getent passwd "$rootless_user" | cut -d: -f6)
  ((ruid != 0)) || die "--rootless needs an unprivileged user, not '$rootless_user'"
  # subordinate ids: 65536 per user, above anything already given out
  for f in subuid subgid; do
    grep -q "^$rootless_user:" "/etc/$f" 2>/dev/null && continue
    start=$(awk -F: 'BEGIN { m = 100000 } { if ($2 + $3 > m) m = $2 + $3 } END { print m }' "/etc/$f" 2>/dev/null || echo 100000)
    [[ $f == subuid ]] && flag=--add-subuids || flag=--add-subgids
    usermod "$flag" "$start-$((start + 65535))" "$rootless_user" >&8 2>&1 || die "cannot add /etc/$f range for '$rootless_user'"
  done
  rrun=/run/user/$ruid
  rsock=$rrun/podman/podman.sock
  install -d -m 0700 -o "$ruid" -g "$rgid" "$rrun" "$rrun/podman"
  as_user=(setpriv --reuid="$ruid" --regid="$rgid" --init-groups
           env -i PATH=/usr/local/bin:/usr/bin:/bin HOME="$rhome" USER="$rootless_user"
           LOGNAME="$rootless_user" XDG_RUNTIME_DIR="$rrun")
  (cd / && podman_image "${as_user[@]}" podman) || die "rootless podman cannot import the test image for '$rootless_user'"
  (cd / && "${as_user[@]}" podman run --rm --network none "$IMAGE" /bin/true >&8 2>&1) ||
    die "rootless podman cannot run the test image as '$rootless_user'"
  if ! alive rootless-podman; then
    rm -f "$rsock"
    (cd / && start_daemon rootless-podman "${as_user[@]}" podman system service --time=0 "unix://$rsock")
    echo "$ruid" >"$STATE/rootless-podman.uid"
  fi
  wait_for rootless-podman 60 ping_sock "$rsock" || die "the rootless podman API did not answer on $rsock"
  log "rootless podman API up on $rsock"
fi

log "done in $((SECONDS - t0)) s"
}

rm -f "$STATE/error" "$STATE"/*.tail
set +e
(setup) </dev/null >&8 2>&8
rc=$?
set -e
if ((rc != 0)); then
  echo "$me: error: $(cat "$STATE/error" 2>/dev/null || echo "setup failed (exit $rc)")" >&2
  for t in "$STATE"/*.tail; do
    [[ -f $t ]] && sed "s/^/$me: /" "$t" >&2
  done
  echo "$me: full log: $LOG" >&2
  exit 1
fi

want podman && echo "export CONTAINER_HOST=unix://$PODMAN_SOCK"
want docker && echo "export DOCKER_HOST=unix://$DOCKER_SOCK"
if [[ -n $rootless_user ]]; then
  echo "export CIRRUS_ROOTLESS_CONTAINER_HOST=unix:///run/user/$(id -u "$rootless_user")/podman/podman.sock  # for $rootless_user"
fi
images=$STATE/images
echo "export CIRRUS_TEST_IMAGE=$IMAGE"
echo "export CIRRUS_TEST_ROOTFS_TAR=$images/busybox.tar"
if want registry; then
  echo "export CIRRUS_TEST_REGISTRY=$REGISTRY  # plain HTTP; image $REGISTRY_IMAGE"
fi
echo "export CIRRUS_TEST_OCI_LAYOUT=$images/busybox-oci:latest"
echo "export CIRRUS_TEST_DOCKER_ARCHIVE=$images/busybox-archive.tar"
