#!/bin/bash
# A whole end-to-end suite (run.sh, or run-features.sh) on the built-in backend as unprivileged
# users: one with subordinate ids in /etc/subuid (full mapping through newuidmap), one without
# (a single mapping).  Needs root to prepare the users; the image comes from the local registry.
#   builtin-user.sh CIRRUS WHO [SUITE]     (WHO: subuid or single; SUITE: run.sh by default)
here=$(cd "$(dirname "$0")" && pwd)
CIRRUS=${1:?usage: builtin-user.sh CIRRUS WHO}
WHO=${2:?usage: builtin-user.sh CIRRUS WHO [SUITE]}
SUITE=${3:-run.sh}
case $SUITE in
  run.sh | run-features.sh) ;;
  *) echo "unknown SUITE $SUITE" >&2; exit 2 ;;
esac
[[ $(id -u) == 0 ]] || { echo "FAIL: this test prepares users and must run as root" >&2; exit 1; }
case $WHO in
  subuid) user=cirrus-e2e-rl ;;
  single) user=cirrus-e2e-single ;;
  *) echo "unknown WHO $WHO" >&2; exit 2 ;;
esac
id "$user" >/dev/null 2>&1 || useradd -m -s /bin/bash "$user" ||
  { echo "FAIL: cannot create $user" >&2; exit 1; }
if [[ $WHO == subuid ]]; then
  grep -q "^$user:" /etc/subuid || echo "$user:200000:65536" >>/etc/subuid
  grep -q "^$user:" /etc/subgid || echo "$user:200000:65536" >>/etc/subgid
else
  sed -i "/^$user:/d" /etc/subuid /etc/subgid
fi
dir=$(mktemp -d /tmp/cirrus-builtin-user.XXXXXX)
trap 'rm -rf "$dir"' EXIT
chmod 0755 "$dir"
install -m 0755 "$CIRRUS" "$(dirname "$CIRRUS")/cirrus-runtime" "$dir/"
install -m 0644 "$here/$SUITE" "$here/lib.sh" "$dir/"
home=$(getent passwd "$user" | cut -d: -f6)
# A store of this run's own: other tests may use this user at the same time.
store=$home/.cache/cirrus-e2e-store.$$
trap 'su "$user" -s /bin/bash -c "chmod -R u+rwx '"'$store'"' 2>/dev/null; rm -rf '"'$store'"'"; rm -rf "$dir"' EXIT
su "$user" -s /bin/bash -c "cd '$dir' && export HOME='$home' CIRRUS_STORE='$store' &&
  bash '$dir/$SUITE' '$dir/cirrus' builtin"
