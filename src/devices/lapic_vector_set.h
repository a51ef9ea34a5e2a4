// A 256-bit vector bitmap as the local APIC keeps IRR, ISR and TMR: eight 32-bit words in the
// register layout of Intel SDM vol. 3A 11.8.4 (Figure 11-20), word i holding vectors 32*i..32*i+31.
// A one-byte summary of non-empty words makes the highest-vector search two count-leading-zeros.
// Not supported: nothing; this is plain storage with no guest-visible policy.
#pragma once

#include <array>
#include <bit>
#include <cstdint>

namespace apicv {

class ApicVectorSet {
 public:
  static constexpr int kWords = 8;

  bool test(uint8_t vector) const { return (words_[vector >> 5] >> (vector & 31)) & 1u; }

  // Returns true if the bit was not set before.
  bool set(uint8_t vector) {
    uint32_t& w = words_[vector >> 5];
    const uint32_t bit = 1u << (vector & 31);
    const bool was_clear = (w & bit) == 0;
    w |= bit;
    summary_ |= static_cast<uint8_t>(1u << (vector >> 5));
    return was_clear;
  }

  void clear(uint8_t vector) {
    uint32_t& w = words_[vector >> 5];
    w &= ~(1u << (vector & 31));
    if (w == 0) summary_ &= static_cast<uint8_t>(~(1u << (vector >> 5)));
  }

  void assign(uint8_t vector, bool value) {
    if (value) {
      set(vector);
    } else {
      clear(vector);
    }
  }

  // Highest set vector, or -1 when empty.
  int highest() const {
    if (summary_ == 0) return -1;
    const int word = 31 - std::countl_zero(static_cast<uint32_t>(summary_));
    return word * 32 + 31 - std::countl_zero(words_[word]);
  }

  bool empty() const { return summary_ == 0; }

  uint32_t word(int i) const { return words_[i & 7]; }

  // Merges `bits` into word i; returns the bits that were newly set.
  uint32_t or_word(int i, uint32_t bits) {
    i &= 7;
    const uint32_t fresh = bits & ~words_[i];
    words_[i] |= bits;
    if (words_[i] != 0) summary_ |= static_cast<uint8_t>(1u << i);
    return fresh;
  }

  // Replaces the bits selected by `mask` in word i with those of `bits`.
  void merge_word(int i, uint32_t mask, uint32_t bits) {
    i &= 7;
    words_[i] = (words_[i] & ~mask) | (bits & mask);
    if (words_[i] != 0) {
      summary_ |= static_cast<uint8_t>(1u << i);
    } else {
      summary_ &= static_cast<uint8_t>(~(1u << i));
    }
  }

  int count() const {
    int n = 0;
    for (uint32_t w : words_) n += std::popcount(w);
    return n;
  }

  void reset() {
    words_.fill(0);
    summary_ = 0;
  }

 private:
  std::array<uint32_t, kWords> words_{};
  uint8_t summary_ = 0;  // bit i set <=> words_[i] != 0
};

}  // namespace apicv
