#!/usr/bin/env bash
# ipi_report.sh APICV OUTDIR: `apicv bench ipi --accel emu --report` draws every round trip.
# With fixed quanta (--sched-seed 0) every round trip takes the same virtual time, so the round-trip
# histogram has one bar; --sched-seed 2 preempts the vCPUs in the middle of some round trips, so it
# has a tail (more than one bar). Both pages have the round-trip and timer-lateness figures with an
# apicv series, axis labels in virtual microseconds and the targets NOT EVALUATED (no KVM irqchip).
set -u
apicv=$1 out=$2
rm -rf "$out"
mkdir -p "$out"
fail() { echo "FAIL: $*"; exit 1; }
bars() {  # the histogram bars of series apicv in figure $2 of page $1
  local fig
  fig=$(tr -d '\n' <"$1" | grep -o "<figure data-figure=\"$2\">.*" | sed 's|</figure>.*||')
  [[ -n $fig ]] || { echo missing; return; }
  local g
  g=$(printf '%s' "$fig" | grep -o '<g class="series" data-series="apicv">.*' | sed 's|</g>.*||')
  [[ -n $g ]] || { echo missing; return; }
  # Every bar is a rect with fill-opacity; the legend swatch has none.
  printf '%s' "$g" | grep -o '<rect[^>]*fill-opacity' | wc -l
}
for seed in 0 2; do
  "$apicv" bench ipi --accel emu --n 200 --sched-seed "$seed" --report "$out/s$seed" \
    >"$out/s$seed.log" 2>&1 || { cat "$out/s$seed.log"; fail "bench ipi --sched-seed $seed exited $?"; }
  page=$out/s$seed/index.html
  [[ -s $page ]] || fail "no $page"
  grep -q 'round trip (us, virtual time)' "$page" || fail "seed $seed: no round-trip axis label"
  grep -q 'NOT EVALUATED: KVM' "$page" || fail "seed $seed: the targets are not NOT EVALUATED"
  for fig in ipi_round_trip timer_lateness; do
    n=$(bars "$page" "$fig")
    echo "seed $seed $fig bars: $n"
    [[ $n != missing && $n -ge 1 ]] || fail "seed $seed: figure $fig has no apicv bars"
  done
done
[[ $(bars "$out/s0/index.html" ipi_round_trip) -eq 1 ]] || fail "fixed quanta: round trips differ"
[[ $(bars "$out/s2/index.html" ipi_round_trip) -ge 2 ]] || fail "--sched-seed 2: no preemption tail"
echo "PASS"
