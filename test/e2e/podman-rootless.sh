#!/bin/bash
# `cirrus run --container-backend=podman` as an unprivileged user on a machine where no podman
# socket answers for that user: cirrus must start `podman system service` itself (rootless),
# run the task, and stop the service afterwards.  Needs root to prepare the user; the image
# comes from the local registry of scripts/engines.sh.
#   podman-rootless.sh CIRRUS
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
CIRRUS=${1:?usage: podman-rootless.sh CIRRUS}
if [[ ${CIRRUS_TEST_SKIP:-} == *podman* ]]; then echo "skipped: CIRRUS_TEST_SKIP"; exit 77; fi
[[ $(id -u) == 0 ]] || { echo "FAIL: this test prepares a user and must run as root" >&2; exit 1; }
REGISTRY=${CIRRUS_TEST_REGISTRY:-127.0.0.1:5000}
user=cirrus-e2e-rl
if ! id "$user" >/dev/null 2>&1; then
  useradd -m -s /bin/bash "$user" || { echo "FAIL: cannot create $user" >&2; exit 1; }
fi
uid=$(id -u "$user")
grep -q "^$user:" /etc/subuid || echo "$user:200000:65536" >>/etc/subuid
grep -q "^$user:" /etc/subgid || echo "$user:200000:65536" >>/etc/subgid
# What a login session (logind) would provide.
install -d -m 0700 -o "$user" -g "$user" "/run/user/$uid"
dir=$(mktemp -d /tmp/cirrus-rootless.XXXXXX)
install -m 0755 "$CIRRUS" "$dir/cirrus"
mkdir "$dir/project"
printf 'container:\n  image: %s/cirrus-test/busybox:latest\ntask:\n  script:\n    - id -u\n    - echo rootless-ok > from-step.txt\n    - cat from-step.txt\n' \
  "$REGISTRY" >"$dir/project/.cirrus.yml"
chown -R "$user:$user" "$dir"
trap 'rm -rf "$dir"; rm -rf "$TMPROOT"' EXIT

run su "$user" -s /bin/bash -c "cd '$dir/project' && unset CONTAINER_HOST DOCKER_HOST &&
  export XDG_RUNTIME_DIR=/run/user/$uid HOME=\$(getent passwd $user | cut -d: -f6) &&
  '$dir/cirrus' run -o simple --debug --container-backend=podman"
expect_rc 0 "rootless run"
expect_out "rootless-ok"
expect_err "backend: podman"
expect_err "cirrus-podman-"   # the service cirrus started, on its private socket
checks=$((checks + 1))
[[ ! -e $dir/project/from-step.txt ]] || fail "the step wrote into the user's tree"
sleep 0.5
left=$(pgrep -u "$user" -f "podman system service" || true)
checks=$((checks + 1)); [[ -z $left ]] || fail "podman service left running: $left"
left=$(su "$user" -s /bin/bash -c "XDG_RUNTIME_DIR=/run/user/$uid podman ps -aq --filter label=dev.cirrus.run-id" 2>/dev/null)
checks=$((checks + 1)); [[ -z $left ]] || fail "containers left: $left"
finish
