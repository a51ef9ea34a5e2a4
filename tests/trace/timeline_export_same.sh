#!/usr/bin/env bash
# timeline_export_same.sh APICV CHECK TEXT OTHER OUTDIR: `apicv trace export` of OTHER (a trace.dat
# or perf's text) and of TEXT (the ftrace text of the same events) must both pass the schema check
# and give the same timeline statistics (events, threads, vCPUs, flows); prints OTHER's figures.
set -u
apicv=$1 check=$2 text=$3 other=$4 dir=$5
mkdir -p "$dir"
a=$("$apicv" trace export "$text" -o "$dir/text.json") || exit 1
b=$("$apicv" trace export "$other" -o "$dir/other.json") || exit 1
"$check" "$dir/text.json" >/dev/null || { echo "text timeline fails the schema check"; exit 1; }
"$check" "$dir/other.json" || exit 1
# The statistics after "wrote PATH:" must agree.
sa=${a#*: } sb=${b#*: }
if [ "$sa" != "$sb" ]; then
  echo "differ: text gives '$sa', the other gives '$sb'"
  exit 1
fi
echo "same timeline: $sb"
