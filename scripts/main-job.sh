#!/bin/bash
# The main job, from a fresh Debian 12 machine: install what is missing, build, and run
# the example project's CI configuration.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/deps.sh"
"$root/scripts/build.sh" build
cd "$root/examples/c-project"
echo "+ cirrus validate && cirrus tasks   (examples/c-project)" >&2
"$root/build/cmd/cirrus" validate
"$root/build/cmd/cirrus" tasks
