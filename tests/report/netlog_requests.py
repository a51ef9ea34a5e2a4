#!/usr/bin/env python3
"""netlog_requests.py NETLOG.json: prints the URL of every request a page made (one per line).

Chromium's net log (--log-net-log) also holds the browser's own background requests (component
updater, time, accounts); those carry no initiator ("not an origin"). A page's request carries
its initiator (the page's origin; "null" for a file:// page). file: and data: URLs are not
network requests. Exit 0 always when the log parses, 2 when it does not.
"""
import json
import sys


def main() -> int:
    try:
        with open(sys.argv[1], encoding="utf-8") as f:
            text = f.read()
        # Chromium may be killed before it closes the events array.
        try:
            log = json.loads(text)
        except json.JSONDecodeError:
            log = json.loads(text.rstrip().rstrip(",") + "]}")
    except (OSError, IndexError, json.JSONDecodeError) as e:
        print(f"netlog_requests: cannot read the net log: {e}", file=sys.stderr)
        return 2
    types = log["constants"]["logEventTypes"]
    start = types["URL_REQUEST_START_JOB"]
    for ev in log.get("events", []):
        if ev.get("type") != start:
            continue
        p = ev.get("params", {})
        url = p.get("url", "")
        if p.get("initiator", "not an origin") == "not an origin":
            continue
        if url.startswith(("file:", "data:", "blob:")):
            continue
        print(url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
