// trace_json_check FILE [--vcpus N] [--min-flows N]: validates a Trace Event Format file with the
// checks of trace_event_schema.h and prints what it found. Exit 0 valid (and the expectations
// hold), 1 invalid, 2 bad usage or unreadable JSON. Used by the timeline ctests.
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <string>

#include "trace_event_schema.h"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: trace_json_check FILE [--vcpus N] [--min-flows N]\n");
    return 2;
  }
  long want_vcpus = -1, min_flows = 0;
  for (int i = 2; i + 1 < argc; i += 2) {
    const std::string o = argv[i];
    if (o == "--vcpus") {
      want_vcpus = std::strtol(argv[i + 1], nullptr, 10);
    } else if (o == "--min-flows") {
      min_flows = std::strtol(argv[i + 1], nullptr, 10);
    } else {
      std::fprintf(stderr, "trace_json_check: unknown option %s\n", o.c_str());
      return 2;
    }
  }
  std::ifstream f(argv[1]);
  if (!f) {
    std::fprintf(stderr, "trace_json_check: cannot open %s\n", argv[1]);
    return 2;
  }
  // Streamed: each element of "traceEvents" is checked as soon as it is parsed and dropped, so a
  // large timeline (hundreds of thousands of events) needs little memory, under ASan/TSan too.
  apicv::testing::TraceChecker checker;
  int events_depth = -1;
  bool saw_events = false;
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(
        f, [&](int depth, nlohmann::json::parse_event_t ev, nlohmann::json& parsed) {
          using E = nlohmann::json::parse_event_t;
          if (ev == E::key && depth == 1 && parsed == "traceEvents") {
            events_depth = depth + 1;  // the array's elements
            saw_events = true;
          } else if (ev == E::array_end && events_depth >= 0 && depth == events_depth - 1) {
            events_depth = -1;
          } else if (events_depth >= 0 && depth == events_depth &&
                     (ev == E::object_end || ev == E::value)) {
            checker.Event(parsed);
            return false;  // checked: not kept
          }
          return true;
        });
  } catch (const std::exception& e) {
    std::fprintf(stderr, "trace_json_check: %s: not JSON: %s\n", argv[1], e.what());
    return 2;
  }
  checker.Top(doc, saw_events);
  const apicv::testing::TraceCheck c = checker.Finish();
  std::printf(
      "events: %zu\nvCPU tracks: %zu\nIPI flows: %zu\ncounter events: %zu\n"
      "async spans: %zu\n",
      c.events, c.vcpu_tracks, c.flows, c.counters, c.async_spans);
  for (const char* n : {"guest", "halt", "IPI sent", "IPI received"}) {
    const auto it = c.by_name.find(n);
    std::printf("slices '%s': %zu\n", n, it == c.by_name.end() ? 0 : it->second);
  }
  bool ok = c.ok();
  for (const auto& e : c.errors) std::printf("schema error: %s\n", e.c_str());
  if (want_vcpus >= 0 && static_cast<long>(c.vcpu_tracks) != want_vcpus) {
    std::printf("expected %ld vCPU tracks\n", want_vcpus);
    ok = false;
  }
  if (static_cast<long>(c.flows) < min_flows) {
    std::printf("expected at least %ld IPI flows\n", min_flows);
    ok = false;
  }
  std::printf("%s\n", ok ? "schema: valid" : "schema: INVALID");
  return ok ? 0 : 1;
}
