#!/usr/bin/env bash
# timeline_export.sh APICV CHECK TRACE OUT.json: `apicv trace export TRACE -o OUT.json`, then
# validates the JSON.
set -u
apicv=$1 check=$2 trace=$3 out=$4
rm -f "$out"
"$apicv" trace export "$trace" -o "$out" || exit 1
"$check" "$out"
