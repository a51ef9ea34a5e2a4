#!/usr/bin/env bash
# timeline_run.sh APICV CHECK OUT.json: runs the smp guest with 4 vCPUs on -accel emu with
# --trace-json OUT.json, requires the guest's pass status (1), then validates the JSON.
set -u
apicv=$1 check=$2 out=$3
rm -f "$out"
"$apicv" run -accel emu --guest smp -smp 4 -serial none --trace-json "$out"
rc=$?
if [[ $rc -ne 1 ]]; then
  echo "apicv run exited $rc, expected 1 (the guest's pass status)"
  exit 1
fi
"$check" "$out" --vcpus 4 --min-flows 1
