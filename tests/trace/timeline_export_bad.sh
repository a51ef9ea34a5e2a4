#!/usr/bin/env bash
# timeline_export_bad.sh APICV DIR: exports a trace whose last line is malformed into an empty
# DIR; passes when apicv exits 2 with one "apicv: " line naming the line and DIR stays empty
# (no half-written JSON, no temporary file).
set -u
apicv=$1 dir=$2
rm -rf "$dir"
mkdir -p "$dir"
printf '%s\n' \
  'CPU 0/KVM-1 [000] ..... 1.000001: kvm_entry: vcpu 0, rip 0x0' \
  'CPU 0/KVM-1 [000] ..... 1.000002: kvm_exit: vcpu 0 reason hlt rip 0x0' \
  'CPU 0/KVM-1 [000] ..... 1.0003: kvm_entry: vcpu 0, rip 0x0' >"$dir.trace"
err=$("$apicv" trace export "$dir.trace" -o "$dir/out.json" 2>&1 >/dev/null)
rc=$?
echo "exit $rc: $err"
[[ $rc -eq 2 ]] || { echo "FAIL: expected exit 2"; exit 1; }
[[ $(printf '%s\n' "$err" | wc -l) -eq 1 && $err == "apicv: $dir.trace:3:"*"bad timestamp"* ]] ||
  { echo "FAIL: expected one line 'apicv: FILE:3:COL: bad timestamp...'"; exit 1; }
left=$(ls -A "$dir")
[[ -z $left ]] || { echo "FAIL: left behind: $left"; exit 1; }
echo "PASS: nothing left behind"
