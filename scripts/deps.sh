#!/bin/bash
# Install the Debian 12 packages that cirrus needs, only those missing.
#   scripts/deps.sh            build dependencies (compiler, cmake, -dev libraries) and what
#                              the built-in runtime runs (fuse-overlayfs where the kernel
#                              refuses overlayfs; slirp4netns: --container-network private)
#   scripts/deps.sh --test     plus what the test suite needs (clang for sanitizers/fuzzing;
#                              xmllint, graphviz, tmux, zsh, fish, man for the reports,
#                              graph, interactive-output, completion and man page tests)
# Runs apt-get as root (through sudo when not root).  Idempotent.
set -euo pipefail

build=(gcc make cmake pkg-config git ca-certificates
       libyaml-dev libjansson-dev libcurl4-openssl-dev libgit2-dev libuv1-dev
       libpcre2-dev libssl-dev libarchive-dev libseccomp-dev)
# What the built-in backend runs: fuse-overlayfs is its root file system where the kernel
# refuses overlayfs (see backends/runtime/README.md); without it such containers get a copy.
# slirp4netns gives --container-network private its outbound access.  libseccomp2 compiles
# the steps' default seccomp filter (cirrus-runtime dlopens it; libseccomp-dev above: its header).
runtime=(fuse-overlayfs slirp4netns libseccomp2)
test=(clang libclang-rt-14-dev libcmocka-dev python3 libxml2-utils graphviz tmux zsh fish man-db)

want=("${build[@]}" "${runtime[@]}")
for arg in "$@"; do
  case $arg in
    --test) want+=("${test[@]}") ;;
    *) echo "deps.sh: unknown argument '$arg'" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${want[@]}"; do
  [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) == "install ok installed" ]] || missing+=("$p")
done
((${#missing[@]})) || exit 0

as_root=()
if [[ $(id -u) != 0 ]]; then
  command -v sudo >/dev/null || { echo "deps.sh: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  as_root=(sudo)
fi
echo "deps.sh: installing ${missing[*]}" >&2
"${as_root[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq --no-install-recommends \
  "${missing[@]}" >/dev/null
