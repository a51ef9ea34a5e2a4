#!/usr/bin/env bash
# ctest driver: runs a command and passes only when its exit status AND its output are right
# (PASS_REGULAR_EXPRESSION alone ignores the exit status; issue 10 items 3-4).
#
#   run_checked.sh [--rc N] [--expect ERE]... [--reject ERE]... [--file PATH --file-expect ERE]...
#                  -- COMMAND [ARGS...]
#
# --rc N          required exit status (default 0)
# --expect ERE    a line of the output (stdout, then stderr) must match (grep -E); every --expect
#                 must match
# --reject ERE    no line of the output may match
# --file PATH     a file the command writes (removed before the run); each following
#                 --file-expect ERE must match one of its lines
# Exit 77 from COMMAND means "cannot run here" (no /dev/kvm) unless --rc 77 was asked: the driver
# exits 77 too and the test sets SKIP_RETURN_CODE 77. A sanitizer report on stderr fails the
# test whatever the exit status (ASan and UBSan exit 1, the status of a passing guest).
set -u
rc_want=0
expects=()
rejects=()
file=""
file_expects=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --rc) rc_want=$2; shift 2 ;;
    --expect) expects+=("$2"); shift 2 ;;
    --reject) rejects+=("$2"); shift 2 ;;
    --file) file=$2; shift 2 ;;
    --file-expect) file_expects+=("$2"); shift 2 ;;
    --) shift; break ;;
    *) echo "run_checked.sh: unknown option '$1'" >&2; exit 2 ;;
  esac
done
if [[ $# -eq 0 ]]; then
  echo "run_checked.sh: no command after --" >&2
  exit 2
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
[[ -n "$file" ]] && rm -f "$file"
"$@" >"$tmp/out" 2>"$tmp/err"
rc=$?
cat "$tmp/out"
cat "$tmp/err" >&2
cat "$tmp/out" "$tmp/err" >"$tmp/all"
echo "run_checked.sh: $* -> exit $rc"

fail() {
  echo "run_checked.sh: FAILED: $*"
  exit 1
}

if [[ $rc -eq 77 && $rc_want -ne 77 ]]; then
  echo "run_checked.sh: skipped (exit 77: cannot run here)"
  exit 77
fi
if grep -aEq 'ERROR: (Address|Leak|Thread)Sanitizer|WARNING: ThreadSanitizer|runtime error:' \
    "$tmp/err"; then
  fail "sanitizer report on stderr"
fi
[[ $rc -eq $rc_want ]] || fail "exit status $rc, expected $rc_want"
for re in "${expects[@]+"${expects[@]}"}"; do
  grep -aEq -- "$re" "$tmp/all" || fail "no output line matches '$re'"
done
for re in "${rejects[@]+"${rejects[@]}"}"; do
  if line=$(grep -aE -m1 -- "$re" "$tmp/all"); then
    fail "output line matches '$re': $line"
  fi
done
if [[ -n "$file" ]]; then
  [[ -f "$file" ]] || fail "$file was not written"
  for re in "${file_expects[@]+"${file_expects[@]}"}"; do
    grep -aEq -- "$re" "$file" || fail "no line of $file matches '$re'"
  done
fi
echo "run_checked.sh: passed"
exit 0
