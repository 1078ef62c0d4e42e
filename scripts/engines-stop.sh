#!/bin/bash
# Stop the daemons that engines.sh started, found by the pid files it wrote under $STATE, and
# nothing else: a daemon that was already running when engines.sh came is left alone, and a pid
# that now belongs to another program is not signalled.  Installed packages, configuration,
# images and the state directory stay, so the next engines.sh starts quickly.
#
# Usage: engines-stop.sh [--only podman|docker|registry|rootless-podman]...
# Environment: CIRRUS_ENGINES_STATE  state directory (default /var/tmp/cirrus-engines)
set -uo pipefail

STATE=${CIRRUS_ENGINES_STATE:-/var/tmp/cirrus-engines}
me=engines-stop.sh
usage() { sed -n 's/^# Usage: //p' "$0" >&2; exit 2; }
names=()
while (($#)); do
  case $1 in
    --only) (($# >= 2)) || usage; IFS=, read -ra o <<<"$2"; names+=("${o[@]}"); shift 2 ;;
    -h|--help) usage ;;
    *) echo "$me: unknown argument '$1'" >&2; usage ;;
  esac
done
for n in "${names[@]}"; do
  case $n in
    podman|registry|rootless-podman) ;;
    docker) ;;
    *) echo "$me: --only takes podman, docker, registry or rootless-podman" >&2; exit 2 ;;
  esac
done
((${#names[@]})) || names=(registry rootless-podman podman docker)
[[ $(id -u) == 0 ]] || { echo "$me: must run as root" >&2; exit 1; }

declare -A comm=([podman]=podman [rootless-podman]=podman [dockerd]=dockerd [registry]=docker-registry)
declare -A sock=([podman]=/run/podman/podman.sock [dockerd]=/var/run/docker.sock)
for n in "${names[@]}"; do
  name=$n
  [[ $n == docker ]] && name=dockerd
  f=$STATE/$name.pid
  [[ -f $f ]] || continue
  pid=$(cat "$f")
  if [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null &&
     [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "${comm[$name]}"* ]]; then
    kill -TERM "$pid"
    # dockerd stops its containers and its containerd first: give it time
    for _ in $(seq 1 120); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    if kill -0 "$pid" 2>/dev/null; then
      kill -KILL "$pid"
      echo "$me: killed $name (pid $pid) after 30 s" >&2
    else
      echo "$me: stopped $name (pid $pid)" >&2
    fi
    # a socket left behind would answer "connection refused" instead of "no such file"
    [[ -n ${sock[$name]:-} && -S ${sock[$name]} ]] && rm -f "${sock[$name]}"
  fi
  rm -f "$f"
  # Rootless podman leaves its user's pause process (holding the user namespace) behind.
  if [[ $name == rootless-podman && -f $STATE/rootless-podman.uid ]]; then
    uid=$(cat "$STATE/rootless-podman.uid")
    ppid_file=/run/user/$uid/libpod/tmp/pause.pid
    pause=$(cat "$ppid_file" 2>/dev/null)
    if [[ $pause =~ ^[0-9]+$ ]] && [[ $(cat "/proc/$pause/comm" 2>/dev/null) == catatonit ]] &&
       [[ $(stat -c %u "/proc/$pause" 2>/dev/null) == "$uid" ]]; then
      kill "$pause" && echo "$me: stopped the rootless pause process (pid $pause)" >&2
    fi
    rm -f "$STATE/rootless-podman.uid"
  fi
done
exit 0
