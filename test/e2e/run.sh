#!/bin/bash
# End-to-end tests of `cirrus run` on one backend, with the real binary and a real engine:
#   run.sh CIRRUS BACKEND        (BACKEND: docker, podman or builtin)
# Uses the local test image $CIRRUS_TEST_IMAGE (scripts/engines.sh builds it: busybox, so
# steps run under /bin/sh).  After every run it checks that no container of ours is left.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
CIRRUS=${1:?usage: run.sh CIRRUS BACKEND}
BACKEND=${2:?usage: run.sh CIRRUS BACKEND}
IMAGE=${CIRRUS_TEST_IMAGE:-localhost/cirrus-test/busybox:latest}
export NO_COLOR=1 CI=true
# Our containers, and only ours: other tests may use the same engines at the same time.
export CIRRUS_RUN_ID=e2erun$$

backend_setup

leftovers() {
  if ((${#engine[@]})); then
    "${engine[@]}" ps -a --filter "label=dev.cirrus.run-id=$CIRRUS_RUN_ID" \
      --format '{{.ID}} {{.Names}}' 2>/dev/null
  else
    # builtin: no run directory, no runtime helper of this store, no process in a container
    ls -A "$CIRRUS_STORE/runs" 2>/dev/null
    pgrep -af "cirrus-runtime .*$CIRRUS_STORE" 2>/dev/null
  fi
}

# crun ARGS...: cirrus run on this backend, then check that nothing is left behind.
crun() {
  run "$CIRRUS" run --container-backend="$BACKEND" -o simple "$@"
  local left
  left=$(leftovers)
  checks=$((checks + 1))
  [[ -z $left ]] || { fail "containers left behind after: $*: $left"; ((${#engine[@]})) && "${engine[@]}" rm -f $(awk '{print $1}' <<<"$left") >/dev/null 2>&1; }
}

newproj() {
  p=$(project)
  cd "$p"
  printf 'container:\n  image: %s\n' "$IMAGE" >.cirrus.yml
  cat >>.cirrus.yml
}

# --- automatic environment, working directory, output format (B20, B23, B39)
newproj <<'YML'
task:
  show_script:
    - echo "CI=$CI CIRRUS_CI=$CIRRUS_CI CONT=$CONTINUOUS_INTEGRATION ENVN=$CIRRUS_ENVIRONMENT"
    - echo "NAME=$CIRRUS_TASK_NAME ID=$CIRRUS_TASK_ID IDX=$CI_NODE_INDEX TOTAL=$CI_NODE_TOTAL"
    - echo "OS=$CIRRUS_OS WD=$CIRRUS_WORKING_DIR PWD=$(pwd)"
    - echo "BUILD=$CIRRUS_BUILD_ID"
    - test -f .cirrus.yml
YML
crun
expect_rc 0 "automatic env"
expect_out "CI=true CIRRUS_CI=true CONT=true ENVN=CLI"
expect_out "NAME=main ID=0 IDX=0 TOTAL=1"
expect_out "OS=linux WD=/tmp/cirrus-ci/working-dir PWD=/tmp/cirrus-ci/working-dir"
expect_out "BUILD=CLI-"
expect_out "Started 'main' task"
expect_out "Started 'show' script"
expect_out "'show' script succeeded in "
expect_out "'main' task succeeded in "
# set -o verbose: script lines are echoed into the log
expect_out 'echo "NAME=$CIRRUS_TASK_NAME'

# --- env precedence and run-time expansion (B18, B22)
newproj <<'YML'
env:
  SOMEKEY: bad value
  BASE: /opt
task:
  env:
    SOMEKEY: still bad
    DERIVED: ${BASE}/bin
    FALLBACK: ${UNSET_VAR:dflt}
  script: echo "SOMEKEY=$SOMEKEY DERIVED=$DERIVED FALLBACK=$FALLBACK FROMFILE=$FROMFILE"
YML
printf 'FROMFILE=file\nSOMEKEY=file value\n' >vars.env
crun --env-file vars.env -e "SOMEKEY=good value"
expect_rc 0 "env precedence"
expect_out "SOMEKEY=good value DERIVED=/opt/bin FALLBACK=dflt FROMFILE=file"

# --- the project copy honours .gitignore and never touches the host (B24)
newproj <<'YML'
task:
  script:
    - test -f kept.txt
    - test ! -e ignored.log
    - test ! -e build
    - test -f sub/keep.log
    - test ! -e sub/drop.tmp
    - echo changed > kept.txt
    - touch created-in-container
YML
echo kept >kept.txt; echo x >ignored.log; mkdir -p build sub; echo y >build/out; echo k >sub/keep.log; echo t >sub/drop.tmp
printf '*.log\n!keep.log\nbuild/\n' >.gitignore
printf '*.tmp\n' >sub/.gitignore
crun
expect_rc 0 ".gitignore copy"
checks=$((checks + 1)); [[ $(cat kept.txt) == kept && ! -e created-in-container ]] || fail "the host tree was modified"

# --- --dirty bind-mounts the project (B25)
newproj <<'YML'
task:
  script: touch made-in-container
YML
crun --dirty
expect_rc 0 "--dirty"
checks=$((checks + 1)); [[ -e made-in-container ]] || fail "--dirty: file not created on the host"

# --- custom CIRRUS_WORKING_DIR (B26)
newproj <<'YML'
env:
  BASE_DIR: /some
task:
  env:
    CIRRUS_WORKING_DIR: $BASE_DIR/non/default/dir
  script:
    - test "$(pwd)" = /some/non/default/dir
    - test -f .cirrus.yml
YML
crun
expect_rc 0 "custom working dir"

# --- step semantics: set -e, exit statuses, on_failure/always/on_success (B27, B28)
newproj <<'YML'
task:
  first_script:
    - echo before
    - false
    - echo not reached
  second_script: echo never runs
  on_failure:
    report_script: echo reporting failure
  always:
    cleanup_script: echo always cleanup
  on_success:
    deploy_script: echo deploying
YML
crun
expect_rc 1 "failing step"
expect_out "before"
[[ $out != *"not reached"$'\n'* ]] || [[ $out == *"echo not reached"* ]] || fail "set -e not honoured"
expect_out "'first' script failed in "
expect_out "'second' script skipped in "
expect_out "reporting failure"
expect_out "always cleanup"
expect_out "'deploy' script skipped in "
expect_err "build failed: task main (0) failed"

newproj <<'YML'
task:
  script: exit 3
YML
crun
expect_rc 1 "exit 3"; expect_out "Exit status: 3"

# --- CIRRUS_ENV carries variables to later steps (B29)
newproj <<'YML'
task:
  set_script:
    - echo "FOO_TOKEN=from-step" >> $CIRRUS_ENV
    - export NOT_CARRIED=x
  use_script: echo "FOO_TOKEN=$FOO_TOKEN NOT_CARRIED=${NOT_CARRIED:-unset}"
YML
crun
expect_rc 0 "CIRRUS_ENV"; expect_out "FOO_TOKEN=from-step NOT_CARRIED=unset"

# --- CIRRUS_ENV is read inside the container: a symlink to a host path reads nothing of the host
secret=$TMPROOT/host-secret.env
echo "HOST_SECRET=leaked" >"$secret"
chmod 0644 "$secret"
newproj <<YML
task:
  link_script: rm -f \$CIRRUS_ENV; ln -s $secret \$CIRRUS_ENV
  use_script: echo "SECRET=\${HOST_SECRET:-none}"
YML
crun
expect_rc 0 "CIRRUS_ENV symlink"; expect_out "SECRET=none"

# --- background_script runs beside and is killed (B30); file instruction (B31)
newproj <<'YML'
env:
  MY_SECRET: the-content
task:
  server_background_script: while true; do date > /tmp/bg-alive; sleep 0.2; done
  config_file:
    path: conf/settings.txt
    variable_name: MY_SECRET
  check_script:
    # the background script runs beside this step: wait for it (up to 30 s on a loaded machine)
    - i=0; while [ ! -s /tmp/bg-alive ] && [ $i -lt 150 ]; do sleep 0.2; i=$((i+1)); done
    - test -s /tmp/bg-alive
    - test "$(cat conf/settings.txt)" = the-content
YML
crun
expect_rc 0 "background + file"; expect_out "Created file "

# --- timeout (B38): fails as timed out, on_timeout runs, nothing left
newproj <<'YML'
task:
  timeout_in: 3s
  slow_script: sleep 60
  on_timeout:
    dump_script: echo timeout-hook
YML
start=$SECONDS
crun
expect_rc 1 "timeout"
expect_out "Timed out!"; expect_out "timeout-hook"
expect_err "build failed: task main (0) timed out"
checks=$((checks + 1)); ((SECONDS - start < 50)) || fail "timeout took $((SECONDS - start))s"

# --- dependencies, failures, allow_failures, skip, filters (B34-B37, B13, B15)
newproj <<'YML'
a_task:
  script: exit 1
b_task:
  depends_on: a
  script: echo b-ran
c_task:
  allow_failures: true
  script: exit 1
d_task:
  depends_on: c
  script: echo d-ran
e_task:
  skip: true
  script: echo e-ran
YML
crun -p 1
expect_rc 1 "dependency failure"
expect_out "'b' task skipped: dependency 'a' failed"
expect_out "d-ran"; expect_out "'e' task skipped"
[[ $out != *b-ran* && $out != *e-ran* ]] || fail "skipped tasks ran"
crun -p 1 c d
expect_rc 0 "allowed failure does not fail the run"; expect_out "d-ran"
crun B
expect_rc 0 "filter selects b without its dependency"; expect_out "b-ran"
[[ $out != *"'a' task"* ]] || fail "filter ran a dependency"
crun nosuchtask
expect_rc 1 "no match"; expect_err "task filter yielded no matches"

# --- tasks in parallel (B34)
newproj <<'YML'
one_task:
  script: sleep 2
two_task:
  script: sleep 2
YML
start=$SECONDS
crun -p 2
expect_rc 0 "parallel"
checks=$((checks + 1)); ((SECONDS - start < 8)) || echo "note: -p 2 took $((SECONDS - start))s" >&2

# --- only_if with -e, changesInclude with --affected-files (B17, B19)
newproj <<'YML'
task:
  only_if: $PLEASE_DONT_FAIL != "okay"
  script: exit 1
docs_task:
  only_if: changesInclude('docs/**')
  script: echo docs-changed
YML
crun -e PLEASE_DONT_FAIL=okay --affected-files docs/index.md,src/a.c
expect_rc 0 "only_if + affected files"; expect_out "docs-changed"

# --- git facts (B21)
newproj <<'YML'
task:
  script: echo "BRANCH=$CIRRUS_BRANCH TAG=$CIRRUS_TAG MSG=$CIRRUS_CHANGE_MESSAGE REPO=$CIRRUS_REPO_FULL_NAME"
YML
git init -q -b feature . && git add -A && git -c user.name=t -c user.email=t@t commit -qm "first commit" && git tag v1.2.3
git remote add origin https://github.com/cirruslabs/example.git
crun
expect_rc 0 "git env"
expect_out "BRANCH=feature TAG=v1.2.3 MSG=first commit"
expect_out " REPO=cirruslabs/example"

# --- cpu and memory become container limits (cgroup v1 here, v2 elsewhere)
newproj <<'YML'
task:
  container:
    cpu: 0.5
    memory: 256M
  script:
    # the container's own cgroup: at the root of a cgroup namespace, or named in /proc/self/cgroup
    - m=$(sed -n 's/^[0-9]*:memory://p' /proc/self/cgroup); c=$(sed -n -e 's/^[0-9]*:cpu,cpuacct://p' -e 's/^[0-9]*:cpu://p' /proc/self/cgroup)
    - cat /sys/fs/cgroup/memory$m/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max
    - cat /sys/fs/cgroup/cpu$c/cpu.cfs_quota_us 2>/dev/null || cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us 2>/dev/null || cut -d' ' -f1 /sys/fs/cgroup/cpu.max
YML
crun
if [[ $BACKEND == builtin && $(id -u) != 0 ]]; then
  # no delegated cgroup for an unprivileged user on this cgroup v1 host: a warning says so
  expect_rc 0 "limits"; expect_err "memory"
else
  expect_rc 0 "limits"; expect_out "268435456"; expect_out "50000"
fi

# --- --affected-files-git: files changed since a revision feed changesInclude()
newproj <<'YML'
src_task:
  only_if: changesInclude('src/**')
  script: echo src-changed
docs_task:
  only_if: changesInclude('docs/**')
  script: echo docs-changed
YML
mkdir -p src docs && echo a >src/a.c && echo d >docs/d.md
git init -q . && git add -A && git -c user.name=t -c user.email=t@t commit -qm base
echo b >>src/a.c
crun --affected-files-git HEAD
expect_rc 0 "affected-files-git"; expect_out "src-changed"
[[ $out != *docs-changed* ]] || fail "docs task ran without docs changes"

# --- a missing image is a clear task failure
newproj <<'YML'
task:
  container:
    image: localhost/cirrus-test/does-not-exist:nope
  script: true
YML
crun --pull=never
expect_rc 1 "missing image"; expect_out "does-not-exist"

# --- output formats (B40)
newproj <<'YML'
task:
  script: echo hi
YML
crun -o github-actions
expect_rc 0 "github-actions"; expect_out "##[group]"; expect_out "##[endgroup]"
run env GITHUB_ACTIONS=true "$CIRRUS" run --container-backend="$BACKEND"
expect_rc 0 "auto -> github-actions"; expect_out "##[group]"

# --- SIGINT stops everything and removes the containers (B50)
newproj <<'YML'
a_task:
  script: sleep 120
b_task:
  script: sleep 120
YML
"$CIRRUS" run --container-backend="$BACKEND" -o simple -p 2 >"$TMPROOT/int.out" 2>&1 &
pid=$!
for _ in $(seq 1 100); do grep -q "Started 'main' script" "$TMPROOT/int.out" && break; sleep 0.2; done
sleep 1
kill -INT $pid
wait $pid; rc=$?; out=$(cat "$TMPROOT/int.out"); err=
expect_rc 130 "SIGINT"
left=$(leftovers); checks=$((checks + 1)); [[ -z $left ]] || fail "containers left after SIGINT: $left"

finish
