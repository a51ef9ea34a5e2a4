// kvm_apicv_inhibit_changed line parser; see inhibit_trace_parser.h.
#include "trace/inhibit_trace_parser.h"

#include <charconv>

#include "x86/inhibit_reason.h"

namespace apicv::trace {

namespace {

constexpr std::string_view kEvent = "kvm_apicv_inhibit_changed:";

class Cursor {
 public:
  explicit Cursor(std::string_view s) : s_(s) {}
  size_t pos() const { return pos_; }
  bool done() const { return pos_ >= s_.size(); }
  char peek() const { return done() ? '\0' : s_[pos_]; }
  void skip_spaces() {
    while (!done() && s_[pos_] == ' ') ++pos_;
  }
  bool eat(std::string_view lit) {
    if (s_.substr(pos_, lit.size()) != lit) return false;
    pos_ += lit.size();
    return true;
  }
  std::string_view token() {  // up to the next space
    const size_t start = pos_;
    while (!done() && s_[pos_] != ' ') ++pos_;
    return s_.substr(start, pos_ - start);
  }
  template <typename T>
  bool number(T& out, int base = 10) {
    const char* b = s_.data() + pos_;
    const char* e = s_.data() + s_.size();
    auto [p, ec] = std::from_chars(b, e, out, base);
    if (ec != std::errc() || p == b) return false;
    pos_ += static_cast<size_t>(p - b);
    return true;
  }
  std::string_view rest() const { return s_.substr(pos_ < s_.size() ? pos_ : s_.size()); }

 private:
  std::string_view s_;
  size_t pos_ = 0;
};

ParseResult Fail(size_t col, const std::string& what) {
  ParseResult r;
  r.column = col + 1;
  r.error = "column " + std::to_string(r.column) + ": " + what;
  return r;
}

template <typename T>
bool ParseAll(std::string_view s, T& out) {
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}

}  // namespace

ParseResult ParseInhibitChangedLine(std::string_view line) {
  if (line.size() > kMaxLineLength) return Fail(kMaxLineLength, "line too long");
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.remove_suffix(1);

  // The CPU column "[NNN]" ends the task column; comm itself may hold spaces, '-' and '['.
  size_t lb = std::string_view::npos;
  for (size_t i = line.find('['); i != std::string_view::npos; i = line.find('[', i + 1)) {
    size_t j = i + 1;
    while (j < line.size() && line[j] >= '0' && line[j] <= '9') ++j;
    if (j > i + 1 && j < line.size() && line[j] == ']' && i > 0 && line[i - 1] == ' ') {
      lb = i;
      break;
    }
  }
  if (lb == std::string_view::npos) return Fail(0, "missing \"[cpu]\" column");

  ParseResult r;
  InhibitChangedRecord& rec = r.record;
  std::string_view head = line.substr(0, lb);
  while (!head.empty() && head.back() == ' ') head.remove_suffix(1);
  size_t lead = 0;
  while (lead < head.size() && head[lead] == ' ') ++lead;
  const size_t dash = head.rfind('-');
  if (dash == std::string_view::npos || dash < lead) return Fail(lead, "missing \"comm-pid\"");
  if (dash == lead) return Fail(lead, "empty task name");
  if (!ParseAll(head.substr(dash + 1), rec.pid) || rec.pid < 0) {
    return Fail(dash + 1, "bad pid");
  }
  rec.comm = std::string(head.substr(lead, dash - lead));

  Cursor c(line);
  c.eat(line.substr(0, lb + 1));
  if (!c.number(rec.cpu) || rec.cpu < 0 || !c.eat("]")) return Fail(c.pos(), "bad cpu number");
  c.skip_spaces();

  std::string_view tok = c.token();
  if (tok.empty()) return Fail(c.pos(), "missing timestamp");
  if (tok.back() != ':') {
    rec.flags = std::string(tok);
    c.skip_spaces();
    tok = c.token();
  }
  {
    const size_t col = c.pos() - tok.size();
    if (tok.size() < 3 || tok.back() != ':') return Fail(col, "bad timestamp");
    tok.remove_suffix(1);
    const size_t dot = tok.find('.');
    uint64_t secs = 0, frac = 0;
    // 6 digits: ftrace's microseconds; 9: nanoseconds (`trace-cmd report -t`, `perf script --ns`).
    const size_t digits = dot == std::string_view::npos ? 0 : tok.size() - dot - 1;
    if (dot == std::string_view::npos || !ParseAll(tok.substr(0, dot), secs) ||
        (digits != 6 && digits != 9) || !ParseAll(tok.substr(dot + 1), frac)) {
      return Fail(col, "bad timestamp (want <secs>.<6-digit usecs>: or 9-digit nsecs)");
    }
    if (secs > UINT64_MAX / 1000000000ull - 1) return Fail(col, "timestamp out of range");
    rec.ts_ns = secs * 1000000000ull + (digits == 6 ? frac * 1000ull : frac);
  }
  c.skip_spaces();
  if (!c.eat(kEvent)) return Fail(c.pos(), "not a kvm_apicv_inhibit_changed line");
  if (!c.eat(" ")) return Fail(c.pos(), "missing event body");

  if (c.eat("set ")) {
    rec.set = true;
  } else if (c.eat("cleared ")) {
    rec.set = false;
  } else {
    return Fail(c.pos(), "expected \"set\" or \"cleared\"");
  }
  if (!c.eat("reason=")) return Fail(c.pos(), "expected \"reason=\"");
  if (!c.number(rec.reason)) return Fail(c.pos(), "bad reason number");
  if (rec.reason >= 64) return Fail(c.pos(), "reason out of range");
  if (!c.eat(", inhibits=0x")) return Fail(c.pos(), "expected \", inhibits=0x\"");
  if (!c.number(rec.inhibits, 16)) return Fail(c.pos(), "bad inhibits mask");

  if (c.done()) {
    // Pre-2024 format, or a zero mask.
    r.ok = true;
    return r;
  }
  if (rec.inhibits == 0) return Fail(c.pos(), "trailing text after a zero mask");
  if (!c.eat(" ")) return Fail(c.pos(), "expected a space before reason names");
  rec.has_names = true;
  const size_t names_col = c.pos();
  std::string_view names = c.rest();
  unsigned long mask = 0;
  while (true) {
    const size_t bar = names.find('|');
    const std::string_view name = names.substr(0, bar);
    bool known = false;
    for (int i = 0; i < x86::kNrApicvInhibitReasons; ++i) {
      if (x86::kInhibitReasonNames[i] == name) {
        mask |= 1ul << i;
        known = true;
      }
    }
    if (!known && name.size() > 2 && name.substr(0, 2) == "0x") {
      // __print_flags() prints bits without a name as one hex value.
      unsigned long extra = 0;
      const char* e = name.data() + name.size();
      auto [p, ec] = std::from_chars(name.data() + 2, e, extra, 16);
      if (ec == std::errc() && p == e) {
        mask |= extra;
        known = true;
      }
    }
    if (!known) {
      return Fail(names_col + static_cast<size_t>(name.data() - c.rest().data()),
                  "unknown inhibit reason name \"" + std::string(name.substr(0, 40)) + "\"");
    }
    if (bar == std::string_view::npos) break;
    names.remove_prefix(bar + 1);
  }
  if (mask != rec.inhibits) return Fail(names_col, "reason names do not match the inhibits mask");
  r.ok = true;
  return r;
}

}  // namespace apicv::trace
