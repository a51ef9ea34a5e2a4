// TraceSink; see trace_sink.h.
#include "trace/trace_sink.h"

namespace apicv::trace {

namespace {
thread_local TaskContext t_task;
}

void set_current_task(const TaskContext& task) {
  t_task = task;
}
const TaskContext& current_task() {
  return t_task;
}

TraceSink::TraceSink(const Clock& clock) : clock_(clock) {}

void TraceSink::set_output(std::FILE* out) {
  std::lock_guard<std::mutex> g(mu_);
  out_ = out;
}

void TraceSink::set_ring_capacity(size_t capacity) {
  std::lock_guard<std::mutex> g(mu_);
  ring_capacity_ = capacity;
  while (ring_.size() > ring_capacity_) ring_.pop_front();
}

void TraceSink::set_observer(Observer observer) {
  std::lock_guard<std::mutex> g(mu_);
  observer_ = std::move(observer);
}

std::vector<std::string> TraceSink::ring_lines() const {
  std::lock_guard<std::mutex> g(mu_);
  return {ring_.begin(), ring_.end()};
}

void TraceSink::clear_ring() {
  std::lock_guard<std::mutex> g(mu_);
  ring_.clear();
}

void TraceSink::emit(std::string_view event, std::string_view body) {
  if (!enabled()) return;
  // The timestamp is taken under the lock so lines come out in timestamp order.
  std::lock_guard<std::mutex> g(mu_);
  const uint64_t ts = (clock_override_ ? *clock_override_ : clock_).now_ns();
  if (observer_) observer_(current_task(), ts, event, body);
  std::string line = FormatFtraceLine(current_task(), ts, event, body);
  lines_.fetch_add(1, std::memory_order_relaxed);
  if (out_) {
    std::fwrite(line.data(), 1, line.size(), out_);
    std::fputc('\n', out_);
  }
  if (ring_capacity_ > 0) {
    if (ring_.size() == ring_capacity_) ring_.pop_front();
    ring_.push_back(std::move(line));
  }
}

}  // namespace apicv::trace
