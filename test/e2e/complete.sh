#!/bin/bash
# Shell completions, the man page and `cmake --install`:
#   complete.sh CIRRUS SOURCE_DIR BUILD_DIR
# bash: source completions/cirrus.bash, set COMP_WORDS/COMP_CWORD, call the function, check
# COMPREPLY; fish: `complete -C`; zsh: _cirrus with the completion builtins stubbed.  The man page renders with man -l.
# cmake --install into a DESTDIR puts binary, man page and completions where they belong.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
CIRRUS=${1:?usage: complete.sh CIRRUS SOURCE_DIR BUILD_DIR}
SRC=${2:?}
BUILD=${3:?}
bindir=$(mktemp -d "$TMPROOT/bin.XXXXXX")
ln -s "$CIRRUS" "$bindir/cirrus"
export PATH=$bindir:$PATH

p=$(project)
cd "$p"
cat >.cirrus.yml <<'YML'
container:
  image: alpine
lint_task:
  script: true
Build Linux_task:
  alias: bl
  script: true
test_task:
  matrix:
    - env: {V: 1}
    - env: {V: 2}
  script: true
YML
printf 'container:\n  image: alpine\nother_task:\n  script: true\n' >other.yml

run cirrus __complete tasks
expect_rc 0 "__complete tasks"
checks=$((checks + 1)); [[ $out == $'lint\nBuild Linux\nbl\ntest' ]] || fail "__complete tasks: $out"
run cirrus __complete tasks -f other.yml
checks=$((checks + 1)); [[ $out == other ]] || fail "__complete tasks -f: $out"
cd "$TMPROOT"
run cirrus __complete tasks
expect_rc 1 "__complete tasks without a configuration"; expect_no_out; checks=$((checks + 1)); [[ -z $err ]] || fail "__complete printed errors: $err"
cd "$p"

# bash: complete "cirrus run l", "cirrus run B", "cirrus graph -f other.yml o", "cirrus r",
# "cirrus run --ju", "cirrus run -o j".
bcomplete() { # words...: the line to complete, the last word being completed
  bash -c '
    source "$1"; shift
    COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1))
    _cirrus
    printf "%s\n" "${COMPREPLY[@]}"' _ "$SRC/completions/cirrus.bash" "$@"
}
out=$(bcomplete cirrus run l); rc=$?
checks=$((checks + 1)); [[ $out == lint ]] || fail "bash: cirrus run l -> $out"
out=$(bcomplete cirrus run b)
checks=$((checks + 1)); [[ $out == $'Build\\ Linux\nbl' ]] || fail "bash: cirrus run b -> $out"
out=$(bcomplete cirrus -v run --dirty t)
checks=$((checks + 1)); [[ $out == test ]] || fail "bash: cirrus run --dirty t -> $out"
out=$(bcomplete cirrus graph -f other.yml o)
checks=$((checks + 1)); [[ $out == other ]] || fail "bash: cirrus graph -f other.yml o -> $out"
out=$(bcomplete cirrus r)
checks=$((checks + 1)); [[ $out == run ]] || fail "bash: cirrus r -> $out"
out=$(bcomplete cirrus c)
checks=$((checks + 1)); [[ $out == clean ]] || fail "bash: cirrus c -> $out"
out=$(bcomplete cirrus run --ju)
checks=$((checks + 1)); [[ $out == --junit ]] || fail "bash: cirrus run --ju -> $out"
out=$(bcomplete cirrus run -o j)
checks=$((checks + 1)); [[ $out == json ]] || fail "bash: cirrus run -o j -> $out"
out=$(bcomplete cirrus clean --run)
checks=$((checks + 1)); [[ $out == --run-id ]] || fail "bash: cirrus clean --run -> $out"
out=$(bcomplete cirrus --ver)
checks=$((checks + 1)); [[ $out == --version ]] || fail "bash: cirrus --ver -> $out"

# fish: its own completion engine, through complete -C.
checks=$((checks + 1))
if command -v fish >/dev/null; then
  out=$(fish --no-config -c "source $SRC/completions/cirrus.fish; complete -C 'cirrus run l'" 2>&1)
  [[ $out == lint* ]] || fail "fish: cirrus run l -> $out"
  out=$(fish --no-config -c "source $SRC/completions/cirrus.fish; complete -C 'cirrus gr'" 2>&1)
  [[ $out == graph* ]] || fail "fish: cirrus gr -> $out"
  out=$(fish --no-config -c "source $SRC/completions/cirrus.fish; complete -C 'cirrus run --jun'" 2>&1)
  [[ $out == --junit* ]] || fail "fish: cirrus run --jun -> $out"
else
  fail "fish is not installed (scripts/deps.sh --test)"
fi
# zsh: the completion system's builtins are stubbed (compadd and _describe print what they
# are offered; zsh itself would then filter by $PREFIX), the function runs for real.
zcomplete() {
  zsh -f -c '
    compadd() { while [[ $1 == -* && $1 != -- ]]; do [[ $1 == -M ]] && shift; shift; done
                [[ $1 == -- ]] && shift; print -l -- "$@"; }
    _describe() { local -a arr; arr=("${(@P)${@[-1]}}"); print -l -- ${arr%%:*}; }
    _files() { print FILES; }
    src=$1; shift
    words=("$@"); CURRENT=$#; PREFIX=${words[-1]}
    source $src' _ "$SRC/completions/_cirrus" "$@"
}
checks=$((checks + 1))
if command -v zsh >/dev/null; then
  zerr=$(zsh -n "$SRC/completions/_cirrus" 2>&1) || fail "zsh cannot parse _cirrus: $zerr"
  out=$(zcomplete cirrus run "")
  checks=$((checks + 1)); [[ $out == $'lint\nBuild Linux\nbl\ntest' ]] || fail "zsh: cirrus run '' -> $out"
  out=$(zcomplete cirrus graph -f other.yml "")
  checks=$((checks + 1)); [[ $out == other ]] || fail "zsh: cirrus graph -f other.yml '' -> $out"
  out=$(zcomplete cirrus "")
  checks=$((checks + 1)); [[ $out == *$'run\nvalidate'* && $out == *graph* ]] || fail "zsh: cirrus '' -> $out"
  out=$(zcomplete cirrus run --ju)
  checks=$((checks + 1)); [[ $out == *--junit* ]] || fail "zsh: cirrus run --ju -> $out"
  out=$(zcomplete cirrus run -o "")
  checks=$((checks + 1)); [[ $out == *json* ]] || fail "zsh: cirrus run -o '' -> $out"
else
  fail "zsh is not installed (scripts/deps.sh --test)"
fi

# The man page: generated at build time from the help texts; man renders it without warnings.
page=$BUILD/cmd/cirrus.1
checks=$((checks + 1))
if [[ ! -f $page ]]; then
  fail "no $page"
else
  text=$(LC_ALL=C.UTF-8 MANWIDTH=100 man --warnings -l "$page" 2>"$TMPROOT/man.err")
  [[ ! -s $TMPROOT/man.err ]] || fail "man warnings: $(cat "$TMPROOT/man.err")"
  for want in "cirrus - run the CI tasks" "COMMANDS" "EXIT STATUS" "--junit FILE" "--format F" \
    "--run-id ID" "interrupted by SIGINT"; do
    checks=$((checks + 1))
    [[ $text == *"$want"* ]] || fail "the man page lacks: $want"
  done
  # One source: every option of `cirrus run --help` is in the page.
  for flag in $(cirrus __complete flags run); do
    checks=$((checks + 1))
    [[ $text == *"$flag"* ]] || fail "the man page lacks $flag"
  done
fi

# cmake --install into a DESTDIR.
dest=$TMPROOT/dest
DESTDIR=$dest run cmake --install "$BUILD" --prefix /usr
expect_rc 0 "cmake --install"
for f in usr/bin/cirrus usr/share/man/man1/cirrus.1 usr/share/bash-completion/completions/cirrus \
  usr/share/zsh/site-functions/_cirrus usr/share/fish/vendor_completions.d/cirrus.fish; do
  checks=$((checks + 1))
  [[ -s $dest/$f ]] || fail "cmake --install did not install $f"
done
checks=$((checks + 1))
[[ -x $dest/usr/bin/cirrus ]] && "$dest/usr/bin/cirrus" --version | grep -q "cirrus version" ||
  fail "the installed binary does not run"
finish
