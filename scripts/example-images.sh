#!/bin/bash
# Build the image the examples run in, from Debian packages (there is no Docker Hub here):
#   localhost/cirrus-examples/toolchain:bookworm
# a Debian 12 (bookworm) minbase rootfs made by debootstrap, with the compilers and tools the
# examples use (gcc, clang, make, ccache, cppcheck, clang-format, git, redis for the service
# example, ...).  It is published
#   (a) as an OCI image layout and a docker-archive tar, written by this script (tar, sha256sum,
#       jq: no skopeo, buildah or umoci),
#   (b) in dockerd and podman (`docker load`, `podman load`) when they answer,
#   (c) in the local registry 127.0.0.1:5000 (scripts/engines.sh starts it) when it answers.
# Idempotent and cached: the rootfs is keyed by a hash of the package list and this recipe, so a
# second run only checks that every copy is there (under a second).  Measured on a 2-core
# Debian 12 VM: a cold build takes about 2 minutes (debootstrap 70-80 s, most of it downloads;
# the 750 MB tar 15 s; docker load and podman load 30 s; the registry push 8 s).  Prints eval-able exports on stdout
# (where each copy is); progress goes to stderr.  Run as root.
#
# --dev also builds localhost/cirrus-examples/cirrus-dev:bookworm, the toolchain plus cirrus's own
# build dependencies (cmake, the -dev packages of scripts/deps.sh, cmocka, clang's sanitizer
# runtimes): the image of the project's own .cirrus.yml, for the built-in backend, so written as
# an OCI layout and a docker-archive only (CIRRUS_DEV_OCI_LAYOUT, CIRRUS_DEV_DOCKER_ARCHIVE;
# `docker load -i` the archive to use it elsewhere).  Its own debootstrap (the .debs are shared):
# about 1 minute more the first time, about 1 GB.
#
# Usage: example-images.sh [--no-engines] [--no-registry] [--dev]
# Environment:
#   CIRRUS_EXAMPLES_CACHE    cache directory (default /var/cache/cirrus-examples)
#   CIRRUS_EXAMPLES_MIRROR   Debian mirror (default: the host's, else http://deb.debian.org/debian)
#   DOCKER_HOST              dockerd to load into (default unix:///var/run/docker.sock)
#   CIRRUS_TEST_REGISTRY     registry to push to (default 127.0.0.1:5000)
#
# The layer is reproducible for one set of package versions: files are sorted, every mtime is
# 2024-01-01, logs, caches and the apt lists are removed, /etc/shadow's dates are fixed.  The
# layer is stored uncompressed (two cold builds from one archive state gave the same digest), so its digest is also its diff_id and the same bytes serve the
# OCI layout, the docker-archive and the registry.
set -eEuo pipefail
shopt -s nullglob

me=example-images.sh
usage() { sed -n 's/^# Usage: //p' "$0" >&2; exit 2; }
engines=1 registry_push=1 dev=0
while (($#)); do
  case $1 in
    --no-engines) engines=0; shift ;;
    --no-registry) registry_push=0; shift ;;
    --dev) dev=1; shift ;;
    -h|--help) usage ;;
    *) echo "$me: unknown argument '$1'" >&2; usage ;;
  esac
done
[[ $(id -u) == 0 ]] || { echo "$me: must run as root (debootstrap, chroot)" >&2; exit 1; }

CACHE=${CIRRUS_EXAMPLES_CACHE:-/var/cache/cirrus-examples}
SUITE=bookworm
TAG=bookworm
REGISTRY=${CIRRUS_TEST_REGISTRY:-127.0.0.1:5000}
REGISTRY_REPO=cirrus-examples/toolchain
EPOCH=1704067200            # 2024-01-01T00:00:00Z: every mtime in the layer, the image's date
CREATED=2024-01-01T00:00:00Z
# What the examples need.  bash: the steps run under bash when the image has it.
TOOLCHAIN_PKGS=(bash ca-certificates git make gcc libc6-dev clang ccache cppcheck clang-format
      redis-server redis-tools procps)
TOOLCHAIN_BINS=(gcc clang make ccache cppcheck clang-format git redis-server redis-cli)
# cirrus-dev: the toolchain plus what building and unit-testing cirrus itself needs (the build
# list of scripts/deps.sh, cmocka, clang's sanitizer runtimes; man, graphviz, zsh and fish for
# the command line, graph, man page and completion tests): the image of the project's own
# .cirrus.yml.
DEV_PKGS=("${TOOLCHAIN_PKGS[@]}" cmake pkg-config libyaml-dev libjansson-dev
      libcurl4-openssl-dev libgit2-dev libuv1-dev libpcre2-dev libssl-dev libarchive-dev
      libseccomp-dev libcmocka-dev libclang-rt-14-dev man-db graphviz zsh fish)
DEV_BINS=("${TOOLCHAIN_BINS[@]}" cmake pkg-config man dot zsh fish)
# Changing this recipe (the tar options, what is removed) changes the key too.
RECIPE=cirrus-examples-1

log() { echo "$me: $*" >&2; }
die() { echo "$me: error: $*" >&2; exit 1; }
trap 'die "command failed (line $LINENO): $BASH_COMMAND"' ERR

# The mirror: the host's first Debian one (deb822 or one-line sources), else deb.debian.org.
host_mirror() {
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    awk '/^URIs:/ && $2 ~ /\/debian\/?$/ { print $2; exit }' "$f"
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -f $f ]] && awk '$1 == "deb" && $2 ~ /\/debian\/?$/ { print $2; exit }' "$f"
  done
  return 0
}
MIRROR=${CIRRUS_EXAMPLES_MIRROR:-$(host_mirror | sed -n 1p)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}

# --- tools of this script: only what is missing ------------------------------------------------
need=()
for p in debootstrap jq curl; do
  command -v "$p" >/dev/null || need+=("$p")
done
if ((${#need[@]})); then
  log "installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

mkdir -p "$CACHE"
# One run at a time (test.sh and main-job.sh may overlap on one machine).
exec 9>"$CACHE/lock"
flock -w 1800 9 || die "another $me has held $CACHE/lock for 30 minutes"

# make_image NAME: steps 1 and 2 for localhost/cirrus-examples/NAME:bookworm, from PKGS and
# CHECK_BINS (what must be in the rootfs).  Sets key, out, IMAGE, layer, layer_size, config,
# manifest, oci and archive for the steps after it.
make_image() {
  local name=$1 d title
  local -n PKGS=$2 CHECK_BINS=$3
  IMAGE=localhost/cirrus-examples/$name:$TAG
  case $name in
    toolchain) title="cirrus-examples toolchain (Debian 12)" ;;
    *) title="cirrus-examples $name (Debian 12)" ;;
  esac
  key=$(printf '%s\n' "$RECIPE" "$SUITE" "$(uname -m)" "${PKGS[@]}" | sha256sum | cut -c1-16)
  out=$CACHE/$key
  mkdir -p "$out"
  [[ -f $out/image ]] || echo "$name" >"$out/image"

  # --- 1. the rootfs tar (the one slow part: minutes, once per package list) -------------------
  if [[ ! -s $out/rootfs.tar ]]; then
    t0=$SECONDS
    build=$(mktemp -d "$CACHE/build.XXXXXX")
    root=$build/root
    # Whatever happens, nothing stays mounted and the half-built tree goes.
    # mounts_under: what is mounted below $root, deepest first
    mounts_under() { findmnt -rn -o TARGET | awk -v r="$root/" 'index($0, r) == 1' | sort -r; }
    cleanup_build() {
      local m
      for m in $(mounts_under); do umount -l "$m" || true; done
      rm -rf --one-file-system "$build"
    }
    trap cleanup_build EXIT
    include=$(IFS=,; echo "${PKGS[*]}")
    log "debootstrap $SUITE (minbase + ${PKGS[*]}) from $MIRROR; the log is $out/debootstrap.log"
    mkdir -p "$CACHE/debs"
    if ! debootstrap --variant=minbase --include="$include" --cache-dir="$CACHE/debs" \
        "$SUITE" "$root" "$MIRROR" >"$out/debootstrap.log" 2>&1; then
      tail -n 15 "$out/debootstrap.log" >&2
      [[ -f $root/debootstrap/debootstrap.log ]] && tail -n 15 "$root/debootstrap/debootstrap.log" >&2
      die "debootstrap failed (full log: $out/debootstrap.log)"
    fi
    log "debootstrap done in $((SECONDS - t0)) s"
    for m in $(mounts_under); do umount -l "$m"; done
    [[ -z $(mounts_under) ]] || die "cannot unmount what debootstrap mounted under $root"

    # Make it an image: nothing that changes from one build to the next, nothing engines supply.
    rm -rf --one-file-system "$root"/debootstrap "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
      "$root"/var/lib/apt/lists/* "$root"/var/log/* "$root"/var/cache/ldconfig/aux-cache \
      "$root"/var/lib/dpkg/*-old "$root"/var/cache/debconf/*-old "$root"/usr/share/doc/* \
      "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/dev/* "$root"/proc/* "$root"/sys/* \
      "$root"/run/* "$root"/tmp/* "$root"/var/tmp/*
    mkdir -p "$root"/var/lib/apt/lists/partial
    : >"$root/etc/resolv.conf"        # the engine provides these three
    : >"$root/etc/hostname"
    printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
    rm -f "$root/etc/machine-id" "$root/var/lib/dbus/machine-id"
    # field 3 of shadow is "days since 1970 of the last change": the build day otherwise
    sed -i -E 's/^([^:]*:[^:]*:)[0-9]+:/\1'"$((EPOCH / 86400))"':/' "$root"/etc/shadow "$root"/etc/shadow- 2>/dev/null || true
    # the image's own apt needs no man pages or docs either
    cat >"$root/etc/dpkg/dpkg.cfg.d/01-cirrus-examples-nodoc" <<'CFG'
# written by cirrus scripts/example-images.sh: a CI image without documentation
path-exclude /usr/share/doc/*
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
CFG
    chmod 1777 "$root/tmp" "$root/var/tmp"
    for bin in "${CHECK_BINS[@]}"; do
      chroot "$root" sh -c "command -v $bin" >/dev/null || die "the rootfs lacks $bin"
    done

    tar --format=gnu --sort=name --mtime=@$EPOCH --numeric-owner --one-file-system \
      -C "$root" -cf "$build/rootfs.tar" .
    # the packages and versions the layer was made from, for the record
    chroot "$root" dpkg-query -W -f '${Package} ${Version}\n' >"$out/packages.txt"
    mv "$build/rootfs.tar" "$out/rootfs.tar"
    cleanup_build
    trap - EXIT
    # the rootfs of an older package list or recipe of this image is not needed any more
    # (a directory without an "image" file is an older toolchain's)
    for d in "$CACHE"/*/; do
      d=${d%/}
      [[ $d != "$out" && -f $d/rootfs.tar &&
         $(cat "$d/image" 2>/dev/null || echo toolchain) == "$name" ]] && rm -rf --one-file-system "$d"
    done
    log "rootfs: $(du -m "$out/rootfs.tar" | cut -f1) MB, built in $((SECONDS - t0)) s"
  fi

  # --- 2. the image: config, manifest, OCI layout and docker-archive ------------------------------
  if [[ ! -s $out/layer.sha256 || $out/layer.sha256 -ot $out/rootfs.tar ]]; then
    sha256sum <"$out/rootfs.tar" | cut -c1-64 >"$out/layer.sha256"
  fi
  layer=$(cat "$out/layer.sha256")
  layer_size=$(stat -c %s "$out/rootfs.tar")

  jq -cnS --arg created "$CREATED" --arg diff "sha256:$layer" --arg key "$key" --arg title "$title" '{
    architecture: "amd64", os: "linux", created: $created,
    config: {
      Env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"],
      Cmd: ["/bin/bash"], WorkingDir: "/",
      Labels: {"org.opencontainers.image.title": $title,
               "org.opencontainers.image.description": "built by cirrus scripts/example-images.sh",
               "dev.cirrus.examples.key": $key}
    },
    rootfs: {type: "layers", diff_ids: [$diff]},
    history: [{created: $created, created_by: "scripts/example-images.sh (debootstrap)"}]
  }' >"$out/config.json"
  config=$(sha256sum <"$out/config.json" | cut -c1-64)
  config_size=$(stat -c %s "$out/config.json")
  jq -cnS --arg c "sha256:$config" --argjson cs "$config_size" --arg l "sha256:$layer" \
      --argjson ls "$layer_size" '{
    schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json",
    config: {mediaType: "application/vnd.oci.image.config.v1+json", digest: $c, size: $cs},
    layers: [{mediaType: "application/vnd.oci.image.layer.v1.tar", digest: $l, size: $ls}]
  }' >"$out/manifest.json"
  manifest=$(sha256sum <"$out/manifest.json" | cut -c1-64)
  manifest_size=$(stat -c %s "$out/manifest.json")

  # link_or_copy SRC DST: the layer is hundreds of MB; a hard link costs nothing
  link_or_copy() { ln -f "$1" "$2" 2>/dev/null || cp "$1" "$2"; }

  # (a) OCI image layout, tag "bookworm"
  oci=$out/oci
  if [[ $(jq -r '.manifests[0].digest' "$oci/index.json" 2>/dev/null) != "sha256:$manifest" ]]; then
    rm -rf "$oci.tmp"
    mkdir -p "$oci.tmp/blobs/sha256"
    printf '{"imageLayoutVersion":"1.0.0"}' >"$oci.tmp/oci-layout"
    link_or_copy "$out/rootfs.tar" "$oci.tmp/blobs/sha256/$layer"
    cp "$out/config.json" "$oci.tmp/blobs/sha256/$config"
    cp "$out/manifest.json" "$oci.tmp/blobs/sha256/$manifest"
    jq -cnS --arg d "sha256:$manifest" --argjson s "$manifest_size" --arg tag "$TAG" --arg name "$IMAGE" '{
      schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json",
      manifests: [{mediaType: "application/vnd.oci.image.manifest.v1+json", digest: $d, size: $s,
                   annotations: {"org.opencontainers.image.ref.name": $tag,
                                 "io.containerd.image.name": $name}}]
    }' >"$oci.tmp/index.json"
    rm -rf "$oci"
    mv "$oci.tmp" "$oci"
  fi

  # (b) docker-archive (docker save's format): manifest.json, the config, one layer.tar
  archive=$out/docker-archive.tar
  if [[ $(cat "$out/docker-archive.id" 2>/dev/null) != "$config" || ! -s $archive ]]; then
    rm -rf "$out/archive.tmp"
    mkdir -p "$out/archive.tmp/$layer"
    link_or_copy "$out/rootfs.tar" "$out/archive.tmp/$layer/layer.tar"
    printf '1.0' >"$out/archive.tmp/$layer/VERSION"
    cp "$out/config.json" "$out/archive.tmp/$config.json"
    jq -cn --arg c "$config.json" --arg t "$IMAGE" --arg l "$layer/layer.tar" \
      '[{Config: $c, RepoTags: [$t], Layers: [$l]}]' >"$out/archive.tmp/manifest.json"
    jq -cn --arg r "${IMAGE%:*}" --arg t "$TAG" --arg id "$layer" '{($r): {($t): $id}}' \
      >"$out/archive.tmp/repositories"
    tar --format=gnu --sort=name --mtime=@$EPOCH --numeric-owner --owner=0 --group=0 \
      -C "$out/archive.tmp" -cf "$archive.tmp" .
    rm -rf "$out/archive.tmp"
    mv "$archive.tmp" "$archive"
    echo "$config" >"$out/docker-archive.id"
  fi
  log "image $IMAGE: config sha256:$config, layer sha256:$layer ($((layer_size / 1048576)) MB)"
}

make_image toolchain TOOLCHAIN_PKGS TOOLCHAIN_BINS

# --- 3. the engines: load where the image id differs --------------------------------------------
loaded=()
if ((engines)); then
  docker_host=${DOCKER_HOST:-unix:///var/run/docker.sock}
  if command -v docker >/dev/null &&
     [[ $(curl -s --max-time 3 --unix-socket "${docker_host#unix://}" http://d/_ping 2>/dev/null) == OK ]]; then
    if [[ $(docker -H "$docker_host" image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null) != "sha256:$config" ]]; then
      log "docker load ($docker_host)"
      docker -H "$docker_host" load -q -i "$archive" >&2 || die "docker load of $archive failed"
    fi
    [[ $(docker -H "$docker_host" image inspect --format '{{.Id}}' "$IMAGE") == "sha256:$config" ]] ||
      die "dockerd's $IMAGE is not the image just built"
    loaded+=("docker")
  else
    log "dockerd does not answer on $docker_host: not loaded there (scripts/engines.sh starts it)"
  fi
  # podman's store is shared by its CLI and its API service; no service is needed to load.
  if command -v podman >/dev/null; then
    if [[ $(podman image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null) != "$config" ]]; then
      log "podman load"
      podman load -q -i "$archive" >&2 || die "podman load of $archive failed"
    fi
    [[ $(podman image inspect --format '{{.Id}}' "$IMAGE") == "$config" ]] ||
      die "podman's $IMAGE is not the image just built"
    loaded+=("podman")
  else
    log "podman is not installed: not loaded there (scripts/engines.sh installs it)"
  fi
fi

# --- 4. the registry: blobs by monolithic upload, then the manifest -----------------------------
pushed=""
if ((registry_push)); then
  if curl -sf --max-time 3 "http://$REGISTRY/v2/" >/dev/null 2>&1; then
    base=http://$REGISTRY/v2/$REGISTRY_REPO
    # push_blob DIGEST FILE
    push_blob() {
      local loc
      curl -sf --max-time 10 -I "$base/blobs/sha256:$1" >/dev/null && return 0
      loc=$(curl -sf --max-time 10 -X POST -D - -o /dev/null "$base/blobs/uploads/" |
            tr -d '\r' | awk -F': ' 'tolower($1) == "location" { print $2 }')
      [[ -n $loc ]] || die "the registry $REGISTRY refused an upload"
      [[ $loc == http* ]] || loc=http://$REGISTRY$loc
      [[ $loc == *\?* ]] && loc="$loc&digest=sha256:$1" || loc="$loc?digest=sha256:$1"
      curl -sf --max-time 600 -X PUT -H 'Content-Type: application/octet-stream' \
        --data-binary "@$2" -o /dev/null "$loc" || die "uploading blob sha256:$1 to $REGISTRY failed"
    }
    cur=$(curl -sf --max-time 10 -I -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
          "$base/manifests/$TAG" | tr -d '\r' |
          awk -F': ' 'tolower($1) == "docker-content-digest" { print $2 }') || cur=""
    if [[ $cur != "sha256:$manifest" ]]; then
      log "pushing to $REGISTRY/$REGISTRY_REPO:$TAG"
      push_blob "$layer" "$out/rootfs.tar"
      push_blob "$config" "$out/config.json"
      curl -sf --max-time 30 -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' \
        --data-binary "@$out/manifest.json" -o /dev/null "$base/manifests/$TAG" ||
        die "pushing the manifest to $REGISTRY failed"
    fi
    pushed=$REGISTRY/$REGISTRY_REPO:$TAG
  else
    log "no registry answers on $REGISTRY: not pushed (scripts/engines.sh starts one)"
  fi
fi

echo "export CIRRUS_EXAMPLES_IMAGE=$IMAGE  # in: ${loaded[*]:-no engine}"
echo "export CIRRUS_EXAMPLES_OCI_LAYOUT=$oci:$TAG"
echo "export CIRRUS_EXAMPLES_DOCKER_ARCHIVE=$archive"
echo "export CIRRUS_EXAMPLES_ROOTFS_TAR=$out/rootfs.tar"
[[ -z $pushed ]] || echo "export CIRRUS_EXAMPLES_REGISTRY_IMAGE=$pushed  # plain HTTP"

# --- 5. the image of the project's own CI (--dev): an OCI layout and a docker-archive only ------
if ((dev)); then
  make_image cirrus-dev DEV_PKGS DEV_BINS
  echo "export CIRRUS_DEV_IMAGE=$IMAGE"
  echo "export CIRRUS_DEV_OCI_LAYOUT=$oci:$TAG"
  echo "export CIRRUS_DEV_DOCKER_ARCHIVE=$archive"
fi
