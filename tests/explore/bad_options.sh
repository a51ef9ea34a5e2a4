#!/usr/bin/env bash
# `apicv explore` refuses bad command lines with one `apicv: ...` line on stderr and exit 2, before
# any seed runs (nothing on stdout).
#   bad_options.sh APICV OUTDIR
set -uo pipefail
apicv=$1 out=$2
mkdir -p "$out"
fails=0
bad() {  # expected-substring args...
  local want=$1 rc=0
  shift
  "$apicv" explore "$@" >"$out/bad.out" 2>"$out/bad.err" || rc=$?
  local lines
  lines=$(wc -l <"$out/bad.err")
  if [[ $rc != 2 || $lines != 1 || -s $out/bad.out ]] || ! grep -q "^apicv: .*$want" "$out/bad.err"; then
    echo "FAIL: explore $* -> exit $rc, $lines stderr lines, expected one 'apicv: ...$want' line:" >&2
    cat "$out/bad.err" "$out/bad.out" >&2
    fails=$((fails + 1))
  else
    echo "ok: explore $* -> $(cat "$out/bad.err")"
  fi
}
bad "expected GUEST first"
bad "expected GUEST first" --seeds 1..2 apic
bad "--seeds A..B is required" apic
bad "empty range" apic --seeds 5..1
bad "expected A..B" apic --seeds 1..x
bad "larger than" apic --seeds 1..9999999999999999999
bad "0 <= K < N" apic --seeds 1..4 --shard 2/2
bad "expected K/N" apic --seeds 1..4 --shard 2
bad "-j: expected an integer" apic --seeds 1..4 -j 0
bad "neither a built-in guest" nosuchguest --seeds 1..4
bad "neither a built-in guest" /dev/null --seeds 1..4
bad "is set by explore" apic --seeds 1..4 --sched-seed 3
bad "is set by explore" apic --seeds 1..4 --trace "$out/t.txt"
bad "is set by explore" apic --seeds 1..4 -serial stdio
bad "deterministic mode" apic --seeds 1..4 -accel kvm
bad "deterministic mode" apic --seeds 1..4 -accel emu,thread=multi
bad "-smp" apic --seeds 1..4 -smp 0
bad "unknown option" apic --seeds 1..4 --no-such-option
bad "--jsonl: cannot write" apic --seeds 1..4 --jsonl /nonexistent-dir/x.jsonl
bad "cannot open" --merge /nonexistent-dir/x.jsonl
bad "give the result files" --merge
if ((fails)); then
  echo "FAIL: $fails bad command lines were not refused as one line with exit 2" >&2
  exit 1
fi
echo "PASS: every bad explore command line is one apicv: line and exit 2"
