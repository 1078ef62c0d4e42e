#!/bin/bash
# End-to-end tests of the command line (no container engine needed): discovery, -f,
# help and version, exit statuses, and how diagnostics look.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
CIRRUS=${1:?usage: cli.sh PATH-TO-CIRRUS}

# --version, help
run "$CIRRUS" --version
expect_rc 0 "--version"; expect_out "cirrus version "
run "$CIRRUS" help
expect_rc 0 "help"; expect_out "validate"; expect_out "Exit status"
run "$CIRRUS" --help
expect_rc 0 "--help"; expect_out "Usage: cirrus"
run "$CIRRUS" validate --help
expect_rc 0 "validate --help"; expect_out "--file FILE"; expect_out "--json"
run "$CIRRUS" help validate
expect_rc 0 "help validate"; expect_out "Usage: cirrus validate"
run "$CIRRUS" frobnicate
expect_rc 2 "unknown command"; expect_err "unknown command 'frobnicate'"
run "$CIRRUS" validate --bogus
expect_rc 2 "unknown option"; expect_err "unknown option '--bogus'"
run "$CIRRUS" validate -f
expect_rc 2 "missing value"; expect_err "needs a value"
run "$CIRRUS"
expect_rc 2 "no command"

# Discovery: nothing, .star only, .yml, .yaml preferred over .yml.
p=$(project)
cd "$p"
run "$CIRRUS" validate
expect_rc 1 "no config"; expect_err "neither .cirrus.yml"
echo 'def main(ctx): return []' >.cirrus.star
run "$CIRRUS" validate
expect_rc 1 ".star"; expect_err "Starlark configuration is not supported"
printf 'container:\n  image: alpine\nfrom_yml_task:\n  script: true\n' >.cirrus.yml
run "$CIRRUS" validate
expect_rc 0 ".yml valid"; expect_no_out ".yml valid prints nothing"
printf 'container:\n  image: alpine\nfrom_yaml_task:\n  script: true\n' >.cirrus.yaml
run "$CIRRUS" tasks
expect_rc 0 "tasks"; expect_out "from_yaml"
[[ $out != *from_yml* ]] || fail ".cirrus.yaml must win over .cirrus.yml"

# -f: another file; wrong suffixes; missing file.
printf 'container:\n  image: alpine\nother_task:\n  script: true\n' >custom.yml
run "$CIRRUS" validate -f custom.yml --json
expect_rc 0 "-f custom.yml"; expect_out '"name": "other"'
cp custom.yml custom.txt
run "$CIRRUS" validate -f custom.txt
expect_rc 1 "-f .txt"; expect_err "must end in .yml or .yaml"
run "$CIRRUS" validate -f nope.yml
expect_rc 1 "-f missing"; expect_err "cannot open 'nope.yml'"

# Diagnostics: every error of the file at once, compiler style, with the line and a caret.
cat >bad.yml <<'YML'
container:
  image: alpine
a_task:
  depends_on: nope
  script: true
b_task:
  timeout_in: 5x
  script: true
c_task:
  container:
    memory: lots
  script: true
YML
run "$CIRRUS" validate -f bad.yml
expect_rc 1 "invalid config"
expect_err "bad.yml:4:15: error: there's no task 'nope', but task 'a' depends on it"
expect_err "bad.yml:7:15: error: invalid timeout_in '5x'"
expect_err "bad.yml:11:13: error: invalid memory value 'lots'"
expect_err "    4 |   depends_on: nope"
expect_err "      |               ^"
expect_err "3 errors in bad.yml"
expect_no_out "invalid config prints no model"
run "$CIRRUS" validate -f bad.yml --json
expect_rc 1 "invalid config --json"; expect_no_out "--json on invalid config"

# YAML syntax errors name the position too.
printf 'task:\n  script: [unclosed\n' >syntax.yml
run "$CIRRUS" validate -f syntax.yml
expect_rc 1 "syntax error"; expect_err "syntax.yml:3:1: error:"

# Warnings do not fail validation.
printf 'container:\n  image: alpine\n  colour: blue\ntask:\n  script: true\n' >warn.yml
run "$CIRRUS" validate -f warn.yml
expect_rc 0 "warnings only"; expect_err "warn.yml:3:3: warning: unknown field 'colour' in container is ignored"

# cirrus graph: the tree (dependencies indented under what needs them) and Graphviz DOT, with
# run's filters; cirrus tasks lists every task with its labels and dependencies.
cat >graph.yml <<'YML'
container:
  image: alpine
lint_task:
  script: true
test_task:
  matrix:
    - env: {V: 1}
    - env: {V: 2}
  depends_on: lint
  script: true
build_task:
  depends_on: [lint, test]
  allow_failures: true
  script: true
deploy_task:
  depends_on: build
  skip: true
  script: true
docs_task:
  script: true
YML
LANG=C run "$CIRRUS" graph -f graph.yml
expect_rc 0 "graph tree"
want='deploy [skip]
`-- build [may fail]
    |-- lint
    |-- test (V:1)
    |   `-- lint
    `-- test (V:2)
        `-- lint
docs'
checks=$((checks + 1)); [[ $out == "$want" ]] || fail "graph tree: got
$out"
LANG=C.UTF-8 run "$CIRRUS" graph -f graph.yml --format tree
expect_out "└── build [may fail]" "graph tree utf-8"; expect_out "│   └── lint" "graph tree utf-8"
run "$CIRRUS" graph -f graph.yml --format dot
expect_rc 0 "graph dot"
expect_out 't1 [label="test\nV:1"];' "dot label"; expect_out "t0 -> t3;" "dot edge"
expect_out 't4 [label="deploy", style="rounded,dashed"];' "dot skip"
checks=$((checks + 1))
if command -v dot >/dev/null; then
  svg=$(dot -Tsvg <<<"$out" 2>&1) || fail "dot -Tsvg rejects the graph: $svg"
  [[ $svg == *"<svg"* && $svg == *">deploy<"* ]] || fail "dot -Tsvg output: ${svg:0:300}"
else
  fail "graphviz is not installed (scripts/deps.sh --test installs it)"
fi
run "$CIRRUS" graph -f graph.yml build docs
expect_rc 0 "graph with filters"
checks=$((checks + 1)); [[ $out == $'build [may fail]\ndocs' ]] || fail "filtered graph (no dependencies): $out"
run "$CIRRUS" graph -f graph.yml --format dot "test V:2"
checks=$((checks + 1)); [[ $out == *t2* && $out != *t1* && $out != *"->"* ]] || fail "dot filter: $out"
run "$CIRRUS" graph -f graph.yml nope
expect_rc 1 "graph unknown filter"; expect_err "the tasks are: 'lint'"
run "$CIRRUS" graph -f graph.yml --format png
expect_rc 2 "graph --format png"; expect_err "--format wants dot or tree, not 'png'"
run "$CIRRUS" tasks -f graph.yml
expect_rc 0 "tasks"
expect_out "1   test    V:1     lint (0)"; expect_out "[skip]"; expect_out "[allow_failures]"

# -e and --env-file reach expansion; -e wins over the file; bare names pass through.
cat >env.yml <<'YML'
container:
  image: alpine
task:
  name: t-$A-$B-$C
  script: true
YML
printf 'A=file\nB=file\n# comment\n' >vars.env
export C=host
run "$CIRRUS" validate -f env.yml --env-file vars.env -e B=flag -e C -e UNSET_VAR_XYZ --json
expect_rc 0 "-e"; expect_out '"name": "t-file-flag-host"'
unset C

# NUL bytes and binary junk are refused cleanly.
printf 'task:\n  script: a\0b\n' >nul.yml
run "$CIRRUS" validate -f nul.yml
expect_rc 1 "NUL"; expect_err "NUL bytes"
head -c 4096 /dev/urandom >junk.yml
run "$CIRRUS" validate -f junk.yml
[[ $rc == 1 || $rc == 0 ]] || fail "random bytes must not crash (rc=$rc)"

finish
