#!/bin/bash
# The main job, from a fresh Debian 12 machine: install what is missing, build, build the
# examples' image from Debian packages, and run the example project's CI with cirrus itself.
# Needs root (or sudo) for the packages, the engines and the image.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# The backend the example runs on: docker (dockerd from scripts/engines.sh), podman or builtin.
backend=docker

as_root=()
[[ $(id -u) == 0 ]] || as_root=(sudo)
"$root/scripts/deps.sh"
"$root/scripts/build.sh" build
cirrus=$root/build/cmd/cirrus

case $backend in
  docker|podman) eval "$("${as_root[@]}" "$root/scripts/engines.sh" --only "$backend")" ;;
esac
echo "+ scripts/example-images.sh" >&2
eval "$("${as_root[@]}" "$root/scripts/example-images.sh")"
if [[ $backend == builtin ]]; then
  # the built-in backend's store takes the OCI layout the script wrote
  "$cirrus" images pull "oci:$CIRRUS_EXAMPLES_OCI_LAYOUT"
  "$cirrus" images tag "oci:$CIRRUS_EXAMPLES_OCI_LAYOUT" "$CIRRUS_EXAMPLES_IMAGE"
fi

cd "$root/examples/c-project"
echo "+ cirrus validate && cirrus tasks && cirrus run   (examples/c-project, $backend)" >&2
"$cirrus" validate
"$cirrus" tasks
"$cirrus" run --container-backend "$backend" -o simple
