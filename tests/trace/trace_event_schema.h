// Trace Event Format checks, written from the format's document ("Trace Event Format", Google,
// the JSON Object Format and the event descriptions: Duration, Complete, Instant, Counter, Async,
// Flow and Metadata events), plus the invariants apicv's export promises (timeline_export.h).
// Used by the export's unit tests and by trace_json_check (the end-to-end ctests).
//
// Document rules checked:
//  - the top level is an object with a "traceEvents" array; "displayTimeUnit", when present, is
//    "ms" or "ns"; "otherData", when present, is an object;
//  - every event is an object with a one-character "ph" from the document's phase list, a string
//    "name", numeric "pid" and "tid" (metadata included), "args" an object when present, "cat" a
//    string when present;
//  - "ts" (microseconds) is a number for every phase but metadata;
//  - X (complete): a numeric "dur" >= 0;  i / I (instant): "s" is "g", "p" or "t" when present;
//  - C (counter): every args value is a number;
//  - b / n / e (nestable async) and s / t / f (flow): "id" (string or number) and "cat";
//    a flow's "bp", when present, is "e";
//  - M (metadata): name is process_name / process_labels / process_sort_index / thread_name /
//    thread_sort_index with args.name (string), args.labels (string) or args.sort_index
//    (number) as the document gives them;
//  - B / E (duration) balance per thread, an E never before its B.
// apicv's invariants:
//  - X slices on one thread nest properly (no partial overlap);
//  - every flow end (f) has a start (s) with the same id, cat and name, and never points
//    backwards (f.ts >= s.ts); no flow id starts twice;
//  - async b / e balance per (cat, id), an e never before its b;
//  - every thread that carries an event has a thread_name.
#pragma once

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <string>
#include <tuple>
#include <vector>

namespace apicv::testing {

struct TraceCheck {
  std::vector<std::string> errors;
  size_t events = 0;
  size_t vcpu_tracks = 0;                 // thread_name "CPU n/KVM"
  size_t flows = 0;                       // matched s -> f pairs
  size_t counters = 0;                    // C events
  size_t async_spans = 0;                 // b events
  std::map<std::string, size_t> by_name;  // X / i event names -> count
  bool ok() const { return errors.empty(); }
};

inline std::string IdKey(const nlohmann::json& id) {
  return id.is_string() ? "s:" + id.get<std::string>() : "n:" + id.dump();
}

// The checks, one event at a time (trace_json_check streams a large file through it, keeping
// only what the cross-event checks need), then Finish().
class TraceChecker {
 public:
  // The top-level object; its "traceEvents" may have been left out (streamed separately).
  void Top(const nlohmann::json& doc, bool events_streamed) {
    if (!doc.is_object()) {
      r_.errors.push_back("top level is not an object (JSON Object Format)");
      return;
    }
    if (!events_streamed && (!doc.contains("traceEvents") || !doc["traceEvents"].is_array()))
      r_.errors.push_back("no \"traceEvents\" array");
    if (doc.contains("displayTimeUnit")) {
      const auto& u = doc["displayTimeUnit"];
      if (!u.is_string() || (u != "ms" && u != "ns"))
        r_.errors.push_back("displayTimeUnit must be \"ms\" or \"ns\"");
    }
    if (doc.contains("otherData") && !doc["otherData"].is_object())
      r_.errors.push_back("otherData must be an object");
  }

  void Event(const nlohmann::json& e) {
    const size_t i = r_.events++;
    auto err = [&](size_t at, const std::string& what) {
      if (r_.errors.size() < 50) r_.errors.push_back("event " + std::to_string(at) + ": " + what);
    };
    if (!e.is_object()) {
      err(i, "not an object");
      return;
    }
    if (!e.contains("ph") || !e["ph"].is_string() || e["ph"].get<std::string>().size() != 1 ||
        kPhases.find(e["ph"].get<std::string>()[0]) == std::string::npos) {
      err(i, "missing or unknown \"ph\"");
      return;
    }
    const char ph = e["ph"].get<std::string>()[0];
    if (!e.contains("name") || !e["name"].is_string()) err(i, "\"name\" must be a string");
    if (e.contains("cat") && !e["cat"].is_string()) err(i, "\"cat\" must be a string");
    if (!e.contains("pid") || !e["pid"].is_number()) err(i, "\"pid\" must be a number");
    if (!e.contains("tid") || !e["tid"].is_number()) err(i, "\"tid\" must be a number");
    if (e.contains("args") && !e["args"].is_object()) err(i, "\"args\" must be an object");
    if (ph != 'M' && (!e.contains("ts") || !e["ts"].is_number())) {
      err(i, "\"ts\" must be a number (microseconds)");
      return;
    }
    if (!e.contains("pid") || !e["pid"].is_number() || !e.contains("tid") ||
        !e["tid"].is_number() || !e.contains("name") || !e["name"].is_string())
      return;
    const std::pair<double, double> thread{e["pid"].get<double>(), e["tid"].get<double>()};
    const std::string name = e["name"].get<std::string>();
    const double ts = ph == 'M' ? 0 : e["ts"].get<double>();
    const std::string cat =
        e.contains("cat") && e["cat"].is_string() ? e["cat"].get<std::string>() : std::string();
    if (ph != 'M' && ph != 'C') used_threads_.insert(thread);
    auto need_id = [&]() -> bool {
      if (!e.contains("id") || !(e["id"].is_string() || e["id"].is_number())) {
        err(i, std::string("phase ") + ph + " needs an \"id\"");
        return false;
      }
      if (!e.contains("cat")) err(i, std::string("phase ") + ph + " needs a \"cat\"");
      return true;
    };
    switch (ph) {
      case 'X': {
        if (!e.contains("dur") || !e["dur"].is_number() || e["dur"].get<double>() < 0) {
          err(i, "complete event needs a numeric \"dur\" >= 0");
          break;
        }
        slices_[thread].push_back({ts, ts + e["dur"].get<double>(), i});
        ++r_.by_name[name];
        break;
      }
      case 'i':
      case 'I':
        if (e.contains("s") &&
            (!e["s"].is_string() || (e["s"] != "g" && e["s"] != "p" && e["s"] != "t")))
          err(i, "instant scope \"s\" must be g, p or t");
        ++r_.by_name[name];
        break;
      case 'C':
        if (!e.contains("args") || !e["args"].is_object() || e["args"].empty()) {
          err(i, "counter needs args with values");
          break;
        }
        for (const auto& [k, v] : e["args"].items()) {
          if (!v.is_number()) err(i, "counter value '" + k + "' is not a number");
        }
        ++r_.counters;
        break;
      case 'B':
        open_b_[thread].push_back(ts);
        break;
      case 'E':
        if (open_b_[thread].empty()) {
          err(i, "E without B");
        } else {
          if (ts < open_b_[thread].back()) err(i, "E before its B");
          open_b_[thread].pop_back();
        }
        break;
      case 'b':
      case 'n':
      case 'e': {
        if (!need_id()) break;
        const std::string key = cat + "/" + IdKey(e["id"]);
        if (ph == 'b') {
          async_open_[key].push_back(ts);
          ++r_.async_spans;
        } else if (ph == 'e') {
          if (async_open_[key].empty()) {
            err(i, "async e without b (" + key + ")");
          } else {
            if (ts < async_open_[key].back()) err(i, "async e before its b (" + key + ")");
            async_open_[key].pop_back();
          }
        }
        break;
      }
      case 's':
      case 't':
      case 'f': {
        if (!need_id()) break;
        if (e.contains("bp") && (ph != 'f' || e["bp"] != "e"))
          err(i, "\"bp\" must be \"e\" (and only on a flow end)");
        const std::string key = IdKey(e["id"]);
        if (ph == 's') {
          if (flow_start_.count(key)) err(i, "flow id " + key + " starts twice");
          flow_start_[key] = {ts, cat, name};
        } else if (ph == 'f') {
          flow_ends_.emplace_back(i, key, ts, cat, name);
        }
        break;
      }
      case 'M': {
        static const std::set<std::string> kMeta = {"process_name", "process_labels",
                                                    "process_sort_index", "thread_name",
                                                    "thread_sort_index"};
        if (!kMeta.count(name)) {
          err(i, "unknown metadata name '" + name + "'");
          break;
        }
        if (!e.contains("args") || !e["args"].is_object()) {
          err(i, "metadata needs args");
          break;
        }
        const auto& a = e["args"];
        if ((name == "process_name" || name == "thread_name") &&
            (!a.contains("name") || !a["name"].is_string()))
          err(i, name + " needs args.name (string)");
        if (name == "process_labels" && (!a.contains("labels") || !a["labels"].is_string()))
          err(i, "process_labels needs args.labels (string)");
        if ((name == "process_sort_index" || name == "thread_sort_index") &&
            (!a.contains("sort_index") || !a["sort_index"].is_number()))
          err(i, name + " needs args.sort_index (number)");
        if (name == "thread_name" && a.contains("name") && a["name"].is_string()) {
          named_threads_.insert(thread);
          if (std::regex_match(a["name"].get<std::string>(), vcpu_re_)) ++r_.vcpu_tracks;
        }
        break;
      }
      default:
        break;
    }
  }

  TraceCheck Finish() {
    auto err = [&](size_t at, const std::string& what) {
      if (r_.errors.size() < 50) r_.errors.push_back("event " + std::to_string(at) + ": " + what);
    };
    for (auto& [thread, v] : slices_) {
      std::sort(v.begin(), v.end(), [](const Slice& a, const Slice& b) {
        return a.ts != b.ts ? a.ts < b.ts : a.end > b.end;
      });
      std::vector<Slice> stack;
      constexpr double kEps = 1e-6;  // ts and dur are printed with three decimals
      for (const Slice& s : v) {
        // The top ended before s, or ends where s starts and s has a length: s is not inside it.
        while (!stack.empty() && (stack.back().end < s.ts - kEps ||
                                  (stack.back().end <= s.ts + kEps && s.end > s.ts + kEps)))
          stack.pop_back();
        if (!stack.empty() && s.end > stack.back().end + kEps) {
          err(s.index, "complete event overlaps event " + std::to_string(stack.back().index) +
                           " on its thread without nesting");
        }
        stack.push_back(s);
      }
    }
    for (const auto& [thread, v] : open_b_) {
      if (!v.empty()) r_.errors.push_back("unbalanced B events on a thread");
    }
    for (const auto& [key, v] : async_open_) {
      if (!v.empty()) r_.errors.push_back("async span " + key + " never ends");
    }
    for (const auto& [i, key, ts, cat, name] : flow_ends_) {
      const auto it = flow_start_.find(key);
      if (it == flow_start_.end()) {
        err(i, "flow end " + key + " without a start");
        continue;
      }
      const auto& [sts, scat, sname] = it->second;
      if (scat != cat || sname != name) err(i, "flow end " + key + " differs in cat or name");
      if (ts < sts) err(i, "flow " + key + " points backwards");
      ++r_.flows;
    }
    for (const auto& t : used_threads_) {
      if (!named_threads_.count(t)) {
        r_.errors.push_back("thread " + std::to_string(static_cast<long long>(t.second)) +
                            " has events but no thread_name");
        break;
      }
    }
    return r_;
  }

 private:
  static inline const std::string kPhases = "BEXiICbnesStTpFstfPNODMVvRc()";
  struct Slice {
    double ts, end;
    size_t index;
  };
  TraceCheck r_;
  std::map<std::pair<double, double>, std::vector<Slice>> slices_;  // by (pid, tid)
  std::map<std::pair<double, double>, std::vector<double>> open_b_;
  std::map<std::string, std::tuple<double, std::string, std::string>> flow_start_;
  std::vector<std::tuple<size_t, std::string, double, std::string, std::string>> flow_ends_;
  std::map<std::string, std::vector<double>> async_open_;  // cat + id
  std::set<std::pair<double, double>> used_threads_, named_threads_;
  const std::regex vcpu_re_{"CPU [0-9]+/KVM"};
};

inline TraceCheck CheckTraceEventFormat(const nlohmann::json& doc) {
  TraceChecker c;
  c.Top(doc, false);
  if (doc.is_object() && doc.contains("traceEvents") && doc["traceEvents"].is_array()) {
    for (const auto& e : doc["traceEvents"]) c.Event(e);
  } else {
    return c.Finish();
  }
  return c.Finish();
}

}  // namespace apicv::testing
