// Shared decoding helpers for apicv's hostile-guest fuzzers and their deterministic replay tests.
// A fuzz input is read as a stream of small operations; running out of bytes yields zeros, so
// every byte string is a valid program. Not supported: nothing device-specific lives here.
#pragma once

#include <cstddef>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace apicv::fuzz {

// Upper bound on operations per input, so one input can never run for long.
inline constexpr size_t kMaxOpsPerInput = 4096;

class OpReader {
 public:
  OpReader(const uint8_t* data, size_t size) : data_(data), size_(size) {}

  bool done() const { return pos_ >= size_; }
  uint8_t u8() { return pos_ < size_ ? data_[pos_++] : 0; }
  uint16_t u16() { return static_cast<uint16_t>(u8() | (u8() << 8)); }
  uint32_t u32() { return static_cast<uint32_t>(u16()) | (static_cast<uint32_t>(u16()) << 16); }
  uint64_t u64() { return static_cast<uint64_t>(u32()) | (static_cast<uint64_t>(u32()) << 32); }
  bool flag() { return u8() & 1; }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

// The first failed invariant of a run ("" while all hold). Decoders stop at the first failure.
class Verdict {
 public:
  bool ok() const { return msg_.empty(); }
  const std::string& message() const { return msg_; }
  // Records `what` (with the op index) if `cond` is false. Returns cond. Messages are literals
  // so the common, passing case costs no allocation; use fail() for a formatted one.
  bool check(bool cond, size_t op, const char* what) {
    if (!cond) fail(op, what);
    return cond;
  }
  void fail(size_t op, const std::string& what) {
    if (msg_.empty()) msg_ = "op " + std::to_string(op) + ": " + what;
  }

 private:
  std::string msg_;
};

// Deterministic pseudo-random input for the replay tests: `bytes` bytes from a fixed seed.
inline std::vector<uint8_t> ReplayInput(uint64_t seed, size_t bytes) {
  std::mt19937_64 rng(seed);
  std::vector<uint8_t> v(bytes);
  for (auto& b : v) b = static_cast<uint8_t>(rng());
  return v;
}

}  // namespace apicv::fuzz
