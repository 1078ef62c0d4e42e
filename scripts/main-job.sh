#!/bin/bash
# The main job, from a fresh Debian 12 machine: install what is missing, build, build the
# examples' image from Debian packages, and run the example project's CI with cirrus itself on
# the built-in backend (no dockerd, no podman: cirrus runs the containers itself).
# Needs root (or sudo) for the packages and the image (debootstrap); the run itself does not.
#   CIRRUS_STORE   the built-in backend's image store (default: /var/lib/cirrus as root, else
#                  $XDG_DATA_HOME/cirrus); the image goes there from the OCI layout.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

as_root=()
[[ $(id -u) == 0 ]] || as_root=(sudo)
"$root/scripts/deps.sh"
echo "+ scripts/build.sh build" >&2
"$root/scripts/build.sh" build
cirrus=$root/build/cmd/cirrus

# The image: built once (about 2 minutes, then cached), written as an OCI image layout; not
# loaded into any engine or registry.
echo "+ scripts/example-images.sh --no-engines --no-registry" >&2
eval "$("${as_root[@]}" "$root/scripts/example-images.sh" --no-engines --no-registry)"
# Into the built-in backend's store, under the name the example's .cirrus.yml uses (a second
# run finds the layer already there).
echo "+ cirrus images pull oci:$CIRRUS_EXAMPLES_OCI_LAYOUT" >&2
"$cirrus" images pull "oci:$CIRRUS_EXAMPLES_OCI_LAYOUT"
echo "+ cirrus images tag oci:$CIRRUS_EXAMPLES_OCI_LAYOUT $CIRRUS_EXAMPLES_IMAGE" >&2
"$cirrus" images tag "oci:$CIRRUS_EXAMPLES_OCI_LAYOUT" "$CIRRUS_EXAMPLES_IMAGE"

cd "$root/examples/c-project"
echo "+ cirrus validate && cirrus tasks && cirrus run --container-backend builtin   (examples/c-project)" >&2
"$cirrus" validate
"$cirrus" tasks
"$cirrus" run --container-backend builtin -o simple
