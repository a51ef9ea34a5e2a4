// Internal: lazily evaluated arithmetic flags (SDM vol. 1 3.4.3.1, appendix A "EFLAGS cross
// reference"). The common flag writers record what they computed; CF/PF/AF/ZF/SF/OF are derived
// only when something reads them. Jcc/SETcc/CMOVcc after CMP/SUB/TEST/logic ops evaluate their
// condition straight from the record.
#pragma once

#include <cstdint>

namespace apicv::cpu {

enum class LazyOp : uint8_t {
  kNone,   // RFLAGS holds the flags
  kAdd,    // ADD/ADC: res = a + b (+ carry)
  kSub,    // SUB/SBB/CMP/NEG: res = a - b (- borrow)
  kLogic,  // AND/OR/XOR/TEST: CF = OF = 0, AF = 0
  kInc,    // INC: like ADD with b = 1; CF is the recorded `cf` (INC does not change it)
  kDec,    // DEC: like SUB with b = 1; CF is the recorded `cf`
};

struct LazyFlags {
  LazyOp op = LazyOp::kNone;
  uint8_t size = 4;
  bool cf = false;  // kInc/kDec: the carry flag from before the instruction
  uint64_t res = 0, a = 0, b = 0;
};

inline uint64_t size_mask(unsigned size) {
  return size == 8 ? ~0ull : (1ull << (size * 8)) - 1;
}
inline uint64_t sign_bit(unsigned size) { return 1ull << (size * 8 - 1); }
inline int64_t sign_extend(uint64_t v, unsigned size) {
  const unsigned sh = 64 - size * 8;
  return static_cast<int64_t>(v << sh) >> sh;
}
inline bool parity_even(uint64_t v) { return (__builtin_popcount(static_cast<unsigned>(v & 0xFF)) & 1) == 0; }

}  // namespace apicv::cpu
