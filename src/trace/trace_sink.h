// Where tracepoints write: ftrace-format text lines to a FILE* and/or an in-memory ring (tests,
// repro excerpts). Thread-safe; the disabled check is one relaxed atomic load so a tracepoint
// costs no formatting when tracing is off (kvm_events.h checks enabled() before formatting).
//
// The timestamp comes from the sink's Clock; comm/pid/cpu from the calling thread's TaskContext
// (set_current_task), which backends set per vCPU thread ("CPU n/KVM") and the deterministic
// scheduler sets before each step.
//
// Not supported: per-event enable filters, binary (trace.dat) output, trace_pipe consumption.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "devices/clock.h"
#include "trace/ftrace_line.h"

namespace apicv::trace {

// The calling thread's identity in trace lines.
void set_current_task(const TaskContext& task);
const TaskContext& current_task();

class TraceSink {
 public:
  // `clock` must outlive the sink. Starts enabled, no file, no ring.
  explicit TraceSink(const Clock& clock);

  bool enabled() const { return enabled_.load(std::memory_order_relaxed); }
  // Timestamps from `clock` instead of the constructor's (null: back to it). A virtual-time
  // backend points the sink at its virtual clock for the run; set while no vCPU emits.
  void set_clock(const Clock* clock) { clock_override_ = clock; }
  void set_enabled(bool on) { enabled_.store(on, std::memory_order_relaxed); }
  // kvm_entry / kvm_exit (kvm_events.h): off by default, two lines per VM exit.
  bool run_events() const { return enabled() && run_events_.load(std::memory_order_relaxed); }
  void set_run_events(bool on) { run_events_.store(on, std::memory_order_relaxed); }
  // Called with every event as it is written, in emission order and under the sink's lock (so it
  // must not emit): the timeline export reads a run this way, with nanosecond timestamps.
  using Observer = std::function<void(const TaskContext& task, uint64_t ts_ns,
                                      std::string_view event, std::string_view body)>;
  void set_observer(Observer observer);

  // Lines go to `out` (not owned; nullptr = none), each followed by '\n'.
  void set_output(std::FILE* out);
  // Keep the last `capacity` lines in memory (0 = no ring).
  void set_ring_capacity(size_t capacity);
  std::vector<std::string> ring_lines() const;
  void clear_ring();

  // Formats the prefix for the current thread and time, then writes "event: body".
  void emit(std::string_view event, std::string_view body);

  uint64_t lines_emitted() const { return lines_.load(std::memory_order_relaxed); }

 private:
  const Clock& clock_;
  const Clock* clock_override_ = nullptr;
  std::atomic<bool> enabled_{true};
  std::atomic<bool> run_events_{false};
  Observer observer_;
  std::atomic<uint64_t> lines_{0};
  mutable std::mutex mu_;  // leaf lock: nothing is called while holding it
  std::FILE* out_ = nullptr;
  size_t ring_capacity_ = 0;
  std::deque<std::string> ring_;
};

}  // namespace apicv::trace
