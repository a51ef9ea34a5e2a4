#!/usr/bin/env bash
# `apicv explore --shard K/N` runs the seeds s of A..B with (s - A) mod N = K, and `--merge` puts
# the shards' --jsonl files back together: complete shards merge to every seed (exit 0); a missing
# shard and one that did not finish (no summary line) are INCOMPLETE (exit 1); a shard given twice,
# a file of another campaign and a malformed line are bad input (exit 2).
#   shards.sh APICV OUTDIR
set -euo pipefail
apicv=$1 out=$2/shards
rm -rf "$out"
mkdir -p "$out"
fail() {
  echo "FAIL: $*" >&2
  exit 1
}

seeds_of() { grep -o '"type":"seed","seed":[0-9]*' "$1" | grep -o '[0-9]*$' | tr '\n' ' '; }

for k in 0 1 2; do
  rc=0
  "$apicv" explore smp --seeds 1..7 --shard "$k/3" -j 2 --jsonl "$out/s$k.jsonl" -smp 2 \
    >"$out/s$k.txt" 2>&1 || rc=$?
  cat "$out/s$k.txt"
  [[ $rc == 0 ]] || fail "shard $k/3 exited $rc"
done
# The partition: seeds 1..7 over 3 shards (in completion order, so sorted here).
for k in 0 1 2; do
  got=$(seeds_of "$out/s$k.jsonl" | tr ' ' '\n' | sort -n | tr '\n' ' ')
  want=$(for s in 1 2 3 4 5 6 7; do if (((s - 1) % 3 == k)); then echo -n "$s "; fi; done)
  [[ $got == "$want" ]] || fail "shard $k/3 ran seeds '$got', expected '$want'"
  echo "shard $k/3: seeds $got"
done
grep -q '^explore: smp, seeds 1..7, shard 1/3: 2 seeds, 2 passed, 0 failed' "$out/s1.txt" ||
  fail "shard 1/3 summary line"
grep -q '"replay"' "$out"/s*.jsonl && fail "a passing seed has a replay record"

# Complete: every seed, exit 0.
rc=0
"$apicv" explore --merge "$out/s2.jsonl" "$out/s0.jsonl" "$out/s1.jsonl" >"$out/m.txt" 2>&1 || rc=$?
cat "$out/m.txt"
[[ $rc == 0 ]] || fail "complete merge exited $rc"
grep -q '^explore --merge: smp, seeds 1..7: 7 of 7 seeds ran in 3 of 3 shards: 7 passed, 0 failed' \
  "$out/m.txt" || fail "complete merge summary"

# A missing shard: INCOMPLETE, exit 1.
rc=0
"$apicv" explore --merge "$out/s0.jsonl" "$out/s2.jsonl" >"$out/m.txt" 2>&1 || rc=$?
cat "$out/m.txt"
[[ $rc == 1 ]] || fail "merge without shard 1 exited $rc, expected 1"
grep -q '^INCOMPLETE: shard 1/3 is missing' "$out/m.txt" || fail "missing shard not reported"

# A shard that did not finish (killed before its summary line; one seed lost): INCOMPLETE.
grep -v '"type":"summary"' "$out/s1.jsonl" | head -n 2 >"$out/s1cut.jsonl"
rc=0
"$apicv" explore --merge "$out/s0.jsonl" "$out/s1cut.jsonl" "$out/s2.jsonl" >"$out/m.txt" 2>&1 ||
  rc=$?
cat "$out/m.txt"
[[ $rc == 1 ]] || fail "merge with an unfinished shard exited $rc, expected 1"
grep -q '^INCOMPLETE: shard 1/3 .* has 1 of its 2 seeds and no summary line' "$out/m.txt" ||
  fail "unfinished shard not reported"

# Bad input: one line, exit 2.
bad_merge() {  # what expected files...
  local what=$1 want=$2 rc=0
  shift 2
  "$apicv" explore --merge "$@" >"$out/m.txt" 2>"$out/m.err" || rc=$?
  cat "$out/m.err"
  [[ $rc == 2 && $(wc -l <"$out/m.err") == 1 ]] || fail "$what: exit $rc, expected 2 and one line"
  grep -q "^apicv: explore --merge: .*$want" "$out/m.err" || fail "$what: message"
}
bad_merge "a shard twice" "appears twice" "$out/s0.jsonl" "$out/s0.jsonl"
"$apicv" explore smp --seeds 1..2 --shard 0/3 --jsonl "$out/other.jsonl" -smp 2 >/dev/null 2>&1
bad_merge "another campaign" "another campaign" "$out/s0.jsonl" "$out/other.jsonl"
{
  head -n 1 "$out/s0.jsonl"
  echo '{"type":"seed","seed":'
} >"$out/corrupt.jsonl"
bad_merge "a malformed line" "corrupt.jsonl:2: not an explore record" "$out/corrupt.jsonl"
echo '{"type":"seed","seed":1,"result":"pass","exit":1,"wall_s":0.1}' >"$out/nocampaign.jsonl"
bad_merge "no campaign line" "not the campaign line" "$out/nocampaign.jsonl"
echo "PASS: shards partition the seeds and merge back"
