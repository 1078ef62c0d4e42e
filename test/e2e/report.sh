#!/bin/bash
# End-to-end tests of what `cirrus run` reports for programs and people, with the real binary
# on one backend:  report.sh CIRRUS BACKEND   (docker, podman or builtin)
#   -o json      every line parsed back, the sequence of events checked
#   --junit      validated against test/data/junit.xsd with xmllint, contents checked
#   clean        a SIGKILLed run leaves a labelled container (builtin: a run directory, and no
#                process); `cirrus clean` removes it
#   interactive  under tmux (a real pseudo-terminal): the live tree, then the summary
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
CIRRUS=${1:?usage: report.sh CIRRUS BACKEND}
[[ $CIRRUS == /* ]] || CIRRUS=$PWD/$CIRRUS
BACKEND=${2:?usage: report.sh CIRRUS BACKEND}
IMAGE=${CIRRUS_TEST_IMAGE:-localhost/cirrus-test/busybox:latest}
DATA=$(cd "$here/../data" && pwd)
export NO_COLOR=1 CI=true LANG=C.UTF-8
export CIRRUS_RUN_ID=e2ereport$$
unset CIRRUS_STORE # builtin: always a store of its own
backend_setup
command -v python3 >/dev/null || { echo "report.sh needs python3 (scripts/deps.sh --test)" >&2; exit 1; }

# leftovers RUN_ID: containers of that run; builtin: its run directories (named after the first
# 12 characters of the run id) and any runtime helper of this test's store
leftovers() {
  if ((${#engine[@]})); then
    "${engine[@]}" ps -a --filter "label=dev.cirrus.run-id=$1" --format '{{.ID}}' 2>/dev/null
  else
    (cd "$CIRRUS_STORE/runs" 2>/dev/null && ls -d -- "${1:0:12}"-* 2>/dev/null)
    pgrep -af "cirrus-runtime .*$CIRRUS_STORE" 2>/dev/null
  fi
}
expect_no_leftovers() {
  local left
  left=$(leftovers "$1")
  checks=$((checks + 1))
  [[ -z $left ]] || { fail "${2:-} containers left behind: $left"; ((${#engine[@]})) && "${engine[@]}" rm -f $left >/dev/null 2>&1; }
}

newproj() {
  p=$(project)
  cd "$p"
  printf 'container:\n  image: %s\n' "$IMAGE" >.cirrus.yml
  cat >>.cirrus.yml
}

# --- -o json: one object per line, parsed back; the sequence of a run with a dependency,
# an allowed failure, a failure and the task skipped because of it.
newproj <<'YML'
lint_task:
  script: printf 'caf\303\251\n'
flaky_task:
  depends_on: lint
  allow_failures: true
  script: exit 3
build_task:
  depends_on: lint
  script:
    - echo building
    - false
deploy_task:
  depends_on: build
  script: echo never
YML
run "$CIRRUS" run --container-backend="$BACKEND" -p 1 -o json
expect_rc 1 "json run"
expect_err "build failed: task build (2) failed"
expect_no_leftovers "$CIRRUS_RUN_ID" "json run"
printf '%s\n' "$out" >"$TMPROOT/events.jsonl"
checks=$((checks + 1))
if ! python3 - "$TMPROOT/events.jsonl" "$BACKEND" "$CIRRUS_RUN_ID" <<'PY'; then fail "json event stream"; fi
import json, re, sys
path, backend, run_id = sys.argv[1:4]
events = []
for n, line in enumerate(open(path, encoding="utf-8"), 1):
    try:
        events.append(json.loads(line))
    except ValueError as e:
        sys.exit(f"line {n} is not JSON: {e}: {line!r}")
def check(cond, msg):
    if not cond:
        sys.exit(msg)
for e in events:
    check(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", e.get("time", "")), f"time: {e}")
kinds = [e["event"] for e in events]
check(kinds[0] == "run_started" and kinds[-1] == "run_finished", f"first/last: {kinds}")
r = events[0]
check(r["backend"] == backend and r["run_id"] == run_id, f"run_started: {r}")
check([t["name"] for t in r["tasks"]] == ["lint", "flaky", "build", "deploy"], r)
check(r["tasks"][1]["allow_failures"] is True and r["tasks"][3]["depends_on"] == [2], r)
fin = events[-1]
check(fin["status"] == 1 and fin["failure"] == "task build (2) failed", fin)
# Per task: started, steps opened and closed in order, finished last.
by = {}
for e in events[1:-1]:
    check("task" in e and "task_id" in e, f"no task: {e}")
    by.setdefault(e["task_id"], []).append(e)
want = {0: ("succeeded", False), 1: ("failed", True), 2: ("failed", False), 3: ("skipped", False)}
for tid, (status, allowed) in want.items():
    evs = by[tid]
    last = evs[-1]
    check(last["event"] == "task_finished" and last["status"] == status
          and last["allowed_failure"] is allowed, f"task {tid}: {last}")
    check(isinstance(last["seconds"], (int, float)), last)
    if status == "skipped":
        check(len(evs) == 1 and "build" in last["reason"], f"skipped task: {evs}")
        continue
    check(evs[0]["event"] == "task_started", f"task {tid} starts with {evs[0]}")
    open_step = None
    for e in evs[1:-1]:
        if e["event"] == "step_started":
            check(open_step is None, f"nested step: {e}")
            open_step = e["step"]
        elif e["event"] == "step_finished":
            check(e["step"] == open_step and e["status"] in ("succeeded", "failed"), e)
            open_step = None
        elif e["event"] == "output":
            check(e["step"] == open_step and e["stream"] in ("stdout", "stderr"), e)
    check(open_step is None, f"task {tid}: step {open_step} never finished")
def text(tid):
    return "".join(e["text"] for e in by[tid] if e["event"] == "output")
check("caf\u00e9\n" in text(0), f"lint output: {text(0)!r}")
check("building\n" in text(2), f"build output: {text(2)!r}")
steps = [(e["step"], e["status"]) for e in by[2] if e["event"] == "step_finished"]
check(("'main' script", "failed") in steps, steps)
check(by[1][-1]["reason"] and "exit status 3" in by[1][-1]["reason"], by[1][-1])
PY

# --- --junit FILE: valid against the JUnit schema; one testcase per task; the failure has the
# end of the log; the allowed failure passes with system-out; timeouts and skips.
newproj <<'YML'
ok_task:
  script: echo fine
bad_task:
  script:
    - for i in $(seq 1 150); do echo "log line $i"; done
    - echo 'the <end> & after'
    - exit 4
flaky_task:
  allow_failures: true
  script: echo flaky-out; exit 3
slow_task:
  timeout_in: 2s
  script: sleep 60
after_task:
  depends_on: bad
  script: echo never
test_task:
  matrix:
    - env:
        V: 1
    - env:
        V: 2
  script: echo "V=$V"
YML
mkdir reports
run "$CIRRUS" run --container-backend="$BACKEND" -o simple --junit reports/junit.xml
expect_rc 1 "junit run"
expect_no_leftovers "$CIRRUS_RUN_ID" "junit run"
checks=$((checks + 1))
if [[ ! -f reports/junit.xml ]]; then
  fail "no reports/junit.xml"
else
  xerr=$(xmllint --noout --schema "$DATA/junit/junit.xsd" reports/junit.xml 2>&1) ||
    fail "junit.xml does not validate: $xerr"
  ls reports | grep -q tmp && fail "a temporary file was left in reports/: $(ls reports)"
  x() { xmllint --xpath "$1" reports/junit.xml 2>/dev/null; }
  checks=$((checks + 1))
  [[ $(x 'string(/testsuites/testsuite/@tests)') == 7 && $(x 'string(/testsuites/testsuite/@failures)') == 2 &&
     $(x 'string(/testsuites/testsuite/@skipped)') == 1 && $(x 'string(/testsuites/testsuite/@errors)') == 0 ]] ||
    fail "junit counts: $(x '/testsuites/testsuite/@*')"
  checks=$((checks + 1))
  [[ $(x 'count(//testcase[@classname="test"])') == 2 ]] || fail "matrix testcases: $(x '//testcase/@name')"
  checks=$((checks + 1))
  [[ -z $(x '//testcase[@name="ok"]/*') && $(x 'string(//testcase[@name="ok"]/@time)') =~ ^[0-9]+\.[0-9]{3}$ ]] ||
    fail "ok testcase: $(x '//testcase[@name="ok"]')"
  bad=$(x 'string(//testcase[@name="bad"]/failure)')
  checks=$((checks + 1))
  [[ $(x 'string(//testcase[@name="bad"]/failure/@message)') == *"exit status 4"* &&
     $bad == *"the <end> & after"* && $bad == *"log line 150"* && $bad != *"log line 20"$'\n'* ]] ||
    fail "bad testcase failure: $(x '//testcase[@name="bad"]/failure/@*') ${bad:0:300}"
  checks=$((checks + 1))
  (($(wc -l <<<"$bad") <= 101)) || fail "the failure holds $(wc -l <<<"$bad") lines, not the last 100"
  checks=$((checks + 1))
  [[ $(x 'string(//testcase[@name="slow"]/failure/@type)') == timed_out ]] ||
    fail "slow testcase: $(x '//testcase[@name="slow"]')"
  checks=$((checks + 1))
  [[ -z $(x '//testcase[@name="flaky"]/failure') && $(x 'string(//testcase[@name="flaky"]/system-out)') == *flaky-out* ]] ||
    fail "flaky testcase: $(x '//testcase[@name="flaky"]')"
  checks=$((checks + 1))
  [[ $(x 'string(//testcase[@name="after"]/skipped/@message)') == *bad* ]] ||
    fail "after testcase: $(x '//testcase[@name="after"]')"
fi
run "$CIRRUS" run --container-backend="$BACKEND" --junit /nonexistent/dir/j.xml
expect_rc 2 "--junit in a missing directory"
expect_err "--junit /nonexistent/dir/j.xml: cannot write in '/nonexistent/dir'"

# --- Ctrl-C: the event stream ends with run_finished status 130 and the JUnit report is still
# written: the running task as an <error>, the one that never started as <skipped/>.
newproj <<'YML'
slow_task:
  script: sleep 60
later_task:
  depends_on: slow
  script: true
YML
"$CIRRUS" run --container-backend="$BACKEND" -o json --junit int.xml >int.jsonl 2>int.err &
pid=$!
for _ in $(seq 1 100); do
  grep -q '"step":"'"'"'main'"'"' script"' int.jsonl 2>/dev/null && break
  sleep 0.2
done
kill -INT "$pid"
wait "$pid"
rc=$? out=$(tail -n 1 int.jsonl) err=$(cat int.err)
expect_rc 130 "interrupted json run"
expect_out '"event":"run_finished"' "interrupted"; expect_out '"status":130' "interrupted"
expect_no_leftovers "$CIRRUS_RUN_ID" "interrupted run"
checks=$((checks + 1))
xerr=$(xmllint --noout --schema "$DATA/junit/junit.xsd" int.xml 2>&1) || fail "interrupted junit.xml: $xerr"
checks=$((checks + 1))
[[ $(xmllint --xpath 'string(//testcase[@name="slow"]/error/@type)' int.xml) == canceled &&
   -n $(xmllint --xpath '//testcase[@name="later"]/skipped' int.xml 2>/dev/null) ]] ||
  fail "interrupted junit contents: $(cat int.xml)"

# --- cirrus clean: a SIGKILLed run cannot remove its container; clean --run-id does, and
# says so; a second clean has nothing to remove.  (Never without --run-id here: other tests
# run on the same engines.)  On builtin the killed run leaves its run directory, but none of
# its processes: the step's `sleep` (a unique path, to find it) dies with the run.
newproj <<'YML'
task:
  script:
    - mkdir -p /tmp/$KILL_ID && ln -s /bin/busybox /tmp/$KILL_ID/sleep
    - /tmp/$KILL_ID/sleep 120
YML
kill_id=e2ekilled$$
TMPDIR=$TMPROOT CIRRUS_RUN_ID=$kill_id "$CIRRUS" run --container-backend="$BACKEND" -o simple \
  -e KILL_ID=$kill_id >"$TMPROOT/killed.out" 2>&1 &
pid=$!
for _ in $(seq 1 120); do
  grep -q "Started 'main' script" "$TMPROOT/killed.out" && pgrep -f "/tmp/$kill_id/sleep" >/dev/null && break
  sleep 0.5
done
checks=$((checks + 1))
pgrep -f "/tmp/$kill_id/sleep" >/dev/null || fail "the step never started (output: $(cat "$TMPROOT/killed.out"))"
kill -9 "$pid"
wait "$pid" 2>/dev/null
checks=$((checks + 1))
left=$(leftovers "$kill_id")
[[ -n $left ]] || fail "the killed run left no labelled container (output: $(cat "$TMPROOT/killed.out"))"
if [[ $BACKEND == builtin ]]; then
  # its processes went with it (the container's init, the step): give the kernel a moment
  for _ in $(seq 1 20); do
    pgrep -f "/tmp/$kill_id/sleep|cirrus-runtime .*$CIRRUS_STORE" >/dev/null || break
    sleep 0.25
  done
  checks=$((checks + 1))
  procs=$(pgrep -af "/tmp/$kill_id/sleep|cirrus-runtime .*$CIRRUS_STORE")
  [[ -z $procs ]] || { fail "processes of the killed run are left: $procs"; pkill -9 -f "/tmp/$kill_id/sleep"; }
fi
run "$CIRRUS" clean --container-backend="$BACKEND" --run-id "$kill_id"
expect_rc 0 "clean"
if [[ $BACKEND == builtin ]]; then
  expect_out "builtin: removed run directory $CIRRUS_STORE/runs/${left%%$'\n'*}" "clean"
else
  expect_out "$BACKEND: removed container ${left:0:12} (task 'main')" "clean"
fi
expect_no_leftovers "$kill_id" "after clean"
run "$CIRRUS" clean --container-backend="$BACKEND" --run-id "$kill_id"
expect_rc 0 "second clean"
expect_out "nothing to remove for run $kill_id" "second clean"
checks=$((checks + 1))
[[ $out != *removed* ]] || fail "second clean removed something"
run "$CIRRUS" clean --run-id 'bad id'
expect_rc 2 "clean --run-id with a space"; expect_err "--run-id wants the id of a run"

# --- interactive output under a real pseudo-terminal (tmux): while a step sleeps the pane
# shows the live tree (both tasks, the running step with a spinner and its duration, its
# last output line); after the run, the summary with every task's mark and duration.
checks=$((checks + 1))
if ! command -v tmux >/dev/null; then
  fail "tmux is not installed (scripts/deps.sh --test)"
else
  newproj <<'YML'
fast_task:
  script: echo quick
slow_task:
  script:
    - echo started-sleeping
    - sleep 8
    - echo woke-up
YML
  sock=cirrus-e2e-$$
  tmux -L "$sock" -f /dev/null new-session -d -s run -x 120 -y 30 \
    "cd '$p' && env -u CI LANG=C.UTF-8 CIRRUS_RUN_ID=${CIRRUS_RUN_ID}tty '$CIRRUS' run --container-backend=$BACKEND -p 2; echo EXIT=\$?; sleep 300"
  live= final=
  for _ in $(seq 1 100); do
    pane=$(tmux -L "$sock" capture-pane -p -t run 2>/dev/null)
    if [[ $pane == *"started-sleeping"* && $pane == *"'main' script"* ]]; then
      live=$pane
      break
    fi
    sleep 0.2
  done
  sleep 1.5 # the step's duration has moved on; capture once more
  live2=$(tmux -L "$sock" capture-pane -p -t run 2>/dev/null)
  for _ in $(seq 1 150); do
    pane=$(tmux -L "$sock" capture-pane -p -t run 2>/dev/null)
    if [[ $pane == *"EXIT="* ]]; then
      final=$pane
      break
    fi
    sleep 0.2
  done
  tmux -L "$sock" kill-server 2>/dev/null
  printf 'live:\n%s\n--- later:\n%s\n--- final:\n%s\n' "$live" "$live2" "$final" >"$TMPROOT/tmux.txt"
  spin='[⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏]'
  checks=$((checks + 1))
  [[ -n $live ]] || fail "tmux: the live tree never showed the sleeping step: $(cat "$TMPROOT/tmux.txt")"
  checks=$((checks + 1))
  grep -Eq "^$spin 'slow' task [0-9.]+s" <<<"$live2" && grep -Eq "^   $spin 'main' script [0-9.]+s" <<<"$live2" &&
    grep -q "started-sleeping" <<<"$live2" ||
    fail "tmux: no running task/step with a spinner and duration: $(cat "$TMPROOT/tmux.txt")"
  checks=$((checks + 1))
  grep -q "'fast' task" <<<"$live2" || fail "tmux: the live tree lacks the other task: $(cat "$TMPROOT/tmux.txt")"
  checks=$((checks + 1))
  [[ $final == *"EXIT=0"* ]] && grep -Eq "^✅ 'fast' task [0-9.]+s" <<<"$final" &&
    grep -Eq "^✅ 'slow' task ([89]|[1-5][0-9])(\.[0-9])?s" <<<"$final" ||
    fail "tmux: the final summary: $(cat "$TMPROOT/tmux.txt")"
  checks=$((checks + 1))
  ! grep -q "started-sleeping" <<<"$final" || fail "tmux: succeeded tasks should collapse: $final"
  expect_no_leftovers "${CIRRUS_RUN_ID}tty" "interactive run"
fi

# --- messages a person can act on: the task, what failed and what to do next; -v shows every
# API call with its status and duration.
newproj <<'YML'
lint_task:
  script: true
YML
sed -i "s|image: .*|image: localhost/cirrus-test/not-there:$$|" .cirrus.yml
run "$CIRRUS" run --container-backend="$BACKEND" --pull=never -o simple
expect_rc 1 "--pull=never, missing image"
expect_out "'lint' task failed" "--pull=never"
if [[ $BACKEND == builtin ]]; then
  expect_out "image 'localhost/cirrus-test/not-there:$$' is not in the store and the pull policy is 'never': pull it first (\`cirrus images pull localhost/cirrus-test/not-there:$$\`)"
else
  expect_out "localhost/cirrus-test/not-there:$$ is not present locally and --pull=never forbids pulling it; pull it first (\`$BACKEND pull localhost/cirrus-test/not-there:$$\`) or run without --pull=never"
fi
expect_err "build failed: task lint (0) failed"
expect_no_leftovers "$CIRRUS_RUN_ID" "--pull=never"
if [[ $BACKEND == builtin ]]; then
  # no engine API: the rest is about engine calls and sockets
  finish
  exit
fi
newproj <<'YML'
lint_task:
  script: true
YML
run "$CIRRUS" run --container-backend="$BACKEND" -o simple -v
expect_rc 0 "-v"
expect_err "debug: $BACKEND GET /_ping: HTTP 200 in " "-v shows API calls"
expect_err "/containers/create" "-v shows API calls"
checks=$((checks + 1))
grep -Eq "^debug: $BACKEND POST /v[0-9.]+/containers/create[^ ]*: HTTP 201 in [0-9.]+ ms$" <<<"$err" ||
  fail "-v: no timed container create call"
run "$CIRRUS" run --container-backend="$BACKEND" -o simple
checks=$((checks + 1)); [[ $err != *"HTTP 200 in"* ]] || fail "API calls shown without -v"
if [[ $BACKEND == docker ]]; then
  DOCKER_HOST=unix://$TMPROOT/no.sock run "$CIRRUS" run --container-backend=docker -o simple
  expect_rc 1 "docker socket missing"
  expect_err "socket '$TMPROOT/no.sock' does not exist (is the engine running?)"
  expect_err "hint: start dockerd, point DOCKER_HOST at it, or choose another backend with --container-backend"
else
  CONTAINER_HOST=unix://$TMPROOT/no.sock run "$CIRRUS" run --container-backend=podman -o simple
  expect_rc 1 "podman socket missing"
  expect_err "socket '$TMPROOT/no.sock' does not exist (is the engine running?)"
  expect_err "hint: start \`podman system service\`, point CONTAINER_HOST at it"
fi

finish
