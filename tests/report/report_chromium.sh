#!/usr/bin/env bash
# report_chromium.sh APICV OUTDIR: `apicv repro seed-000 --report` opened in headless Chromium.
# Passes when
#  - the page's own render check ran (body data-render-check="done") and every figure rendered:
#    each <figure data-figure> and each [data-series] in it has a non-empty layout box
#    (data-rendered="yes", set by the page's inline script from getBBox());
#  - the seed-000 panels are there side by side, and show the thrash and the calm: the legacy
#    panel's IRQWIN lane has many bars, the counted panel's IRQWIN lane none;
#  - the page made no network request: its Content-Security-Policy forbids every fetch
#    (default-src 'none'), the DOM refers to no http(s) resource, and Chromium's net log of the
#    load holds no http(s)/ws(s) request;
#  - a screenshot was written: OUTDIR/report-seed000.png (the test artifact).
# Exit 77 (skip) only when no Chromium binary is installed (scripts/install-deps installs
# Debian's chromium).
set -u
apicv=$1 out=$2
here=$(cd "$(dirname "$0")" && pwd)
browser=$(command -v chromium || command -v chromium-browser || true)
if [[ -z $browser ]]; then
  echo "SKIP: no chromium binary (scripts/install-deps installs Debian's chromium package)"
  exit 77
fi
rm -rf "$out"
mkdir -p "$out"
fail() { echo "FAIL: $*"; exit 1; }

"$apicv" repro seed-000 --accel emu --ticks 40 --report "$out/r" >"$out/repro.log" 2>&1
rc=$?
[[ $rc -eq 0 ]] || { tail -20 "$out/repro.log"; fail "apicv repro exited $rc"; }
page="$out/r/index.html"
[[ -s $page ]] || fail "no $page"
echo "report: $page"

# Headless Chromium as root needs --no-sandbox; background services off so the net log shows
# what the page asked for.
flags=(--headless --no-sandbox --disable-gpu --no-first-run --no-default-browser-check
  --disable-background-networking --disable-component-update --disable-sync
  --disable-extensions --disable-default-apps --mute-audio --hide-scrollbars
  --user-data-dir="$out/profile")
timeout 120 "$browser" "${flags[@]}" --log-net-log="$out/netlog.json" \
  --net-log-capture-mode=Everything --virtual-time-budget=3000 --dump-dom "file://$page" \
  >"$out/dom.html" 2>"$out/chromium-dom.log"
rc=$?
[[ $rc -eq 0 && -s $out/dom.html ]] || { tail -5 "$out/chromium-dom.log"; fail "chromium --dump-dom exited $rc"; }

grep -q 'data-render-check="done"' "$out/dom.html" || fail "the page's render check did not run"
figures=$(grep -o '<body[^>]*data-figures="[0-9]*"' "$out/dom.html" | grep -o '[0-9]*"$' | tr -d '"')
rendered=$(grep -o 'data-figures-rendered="[0-9]*"' "$out/dom.html" | grep -o '[0-9]*')
echo "figures rendered: ${rendered:-0} of ${figures:-0}"
[[ -n $figures && $figures -ge 3 && $rendered == "$figures" ]] || fail "not every figure rendered"
if grep -q 'data-rendered="no"' "$out/dom.html"; then
  grep -o '<[a-z]* [^>]*data-rendered="no"[^>]*>' "$out/dom.html" | head -3
  fail "a figure or series has an empty layout box"
fi
series=$(grep -o 'data-series="[^"]*" data-rendered="yes"' "$out/dom.html" | wc -l)
echo "series rendered: $series"

# The two seed-000 configurations side by side, with what they show.
panel() {  # the IRQWIN lane of the figure whose id starts with $1: its bars (rects) minus the background
  local fig
  fig=$(grep -o "<figure data-figure=\"inhibits:seed-000:$1[^\"]*\"[^>]*>.*</figure>" "$out/dom.html" | head -1)
  [[ -n $fig ]] || { echo "missing"; return; }
  local lane
  lane=$(printf '%s' "$fig" | grep -o '<g data-lane="IRQWIN">.*' | sed 's|</g>.*||')
  if [[ -z $lane ]]; then echo 0; return; fi
  echo $(($(printf '%s' "$lane" | grep -o '<rect' | wc -l) - 1))
}
legacy=$(panel "legacy avic=on irqchip=on delay")
counted=$(panel "counted avic=on irqchip=on delay")
echo "legacy IRQWIN bars: $legacy"
echo "counted IRQWIN bars: $counted"
[[ $legacy != missing && $counted != missing ]] || fail "the legacy and counted panels are not both there"
[[ $legacy -ge 10 ]] || fail "the legacy panel shows no IRQWIN thrash"
[[ $counted -le 1 ]] || fail "the counted panel shows IRQWIN toggling"

# No network: the CSP forbids fetches and the page saw none blocked and loaded no resource, the
# DOM names no remote resource, and the net log holds no request the page initiated.
grep -q "Content-Security-Policy\" content=\"default-src 'none'" "$out/dom.html" ||
  fail "no Content-Security-Policy default-src 'none'"
grep -q 'data-blocked-requests="0"' "$out/dom.html" || fail "the policy blocked a fetch"
grep -q 'data-resources="0"' "$out/dom.html" || fail "the page loaded resources"
if grep -Eo '(src|href|xlink:href)="(https?:|wss?:|//)[^"]*"' "$out/dom.html" | head -3 | grep .; then
  fail "the page refers to a remote resource"
fi
requests() {  # the page-initiated requests in net log $1
  python3 "$here/netlog_requests.py" "$1" || echo "UNREADABLE NET LOG"
}
remote=$(requests "$out/netlog.json")
echo "network requests: $(printf '%s' "$remote" | grep -c .)"
[[ -z $remote ]] || { printf '%s\n' "$remote" | head -5; fail "network requests in the net log"; }
# The net-log check can fail: a page that loads an image over http is caught.
printf '<!DOCTYPE html><html><body><img src="http://127.0.0.1:9/control.png"></body></html>\n' \
  >"$out/control.html"
timeout 120 "$browser" "${flags[@]}" --log-net-log="$out/control-netlog.json" \
  --virtual-time-budget=2000 --dump-dom "file://$out/control.html" >/dev/null 2>&1
control=$(requests "$out/control-netlog.json")
echo "control page requests: $(printf '%s' "$control" | grep -c .)"
[[ $control == *"127.0.0.1:9/control.png"* ]] || fail "the net-log check missed the control page's request"

timeout 120 "$browser" "${flags[@]}" --window-size=1400,1800 --virtual-time-budget=3000 \
  --screenshot="$out/report-seed000.png" "file://$page" >"$out/chromium-shot.log" 2>&1
rc=$?
size=$(stat -c %s "$out/report-seed000.png" 2>/dev/null || echo 0)
[[ $rc -eq 0 && $size -gt 10000 ]] || { tail -5 "$out/chromium-shot.log"; fail "no screenshot ($rc, $size bytes)"; }
echo "screenshot: $out/report-seed000.png"
echo "PASS"
