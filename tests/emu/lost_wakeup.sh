#!/usr/bin/env bash
# -accel emu reports a lost wake-up instead of waiting it out (issue 13): a 64-bit flat guest that
# executes CLI; HLT with no timer armed. Expected: exit 125 (VMM error) and a message naming the
# lost wake-up and the halted vCPU with IF=0, within the timeout.
#   lost_wakeup.sh APICV OUTDIR
set -euo pipefail
apicv=$1 out=$2
mkdir -p "$out"
printf '\xfa\xf4' >"$out/cli_hlt.bin"  # cli; hlt
rc=0
"$apicv" run -accel emu -kernel "$out/cli_hlt.bin" --entry 64 --timeout 60 -smp 2 \
  >"$out/lost_wakeup.out" 2>&1 || rc=$?
cat "$out/lost_wakeup.out"
if [[ $rc != 125 ]]; then
  echo "FAIL: exit $rc, expected 125" >&2
  exit 1
fi
grep -q "lost wake-up" "$out/lost_wakeup.out" || { echo "FAIL: no lost wake-up report" >&2; exit 1; }
grep -q "vCPU 0 halted rip=0x[0-9a-f]* IF=0" "$out/lost_wakeup.out" ||
  { echo "FAIL: the report does not show vCPU 0 halted with IF=0" >&2; exit 1; }
grep -q "vCPU 1 wait-for-SIPI" "$out/lost_wakeup.out" ||
  { echo "FAIL: the report does not show vCPU 1 waiting for SIPI" >&2; exit 1; }
echo "PASS: lost wake-up detected"
