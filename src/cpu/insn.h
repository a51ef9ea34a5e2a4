// Internal: apicv's compact form of one decoded instruction (decoded once by Zydis, executed many
// times from the block cache) and the decoded blocks that hold them.
#pragma once

#include <cstdint>
#include <vector>

namespace apicv::cpu {

struct Core;
struct Insn;
using Handler = void (*)(Core&, const Insn&);

// The code-segment modes the decoder distinguishes (part of a block's cache key).
enum class DecodeMode : uint8_t { kReal16, kProt16, kProt32, kCompat16, kCompat32, kLong64 };

inline constexpr uint8_t kNoReg = 0xFF;
inline constexpr uint8_t kRipReg = 0xFE;  // RIP-relative base

enum InsnFlags : uint8_t {
  kInsnMem = 1,     // the r/m operand is memory (base/index/scale/disp/seg)
  kInsnLock = 2,    // LOCK prefix
  kInsnRep = 4,     // REP / REPE
  kInsnRepne = 8,   // REPNE
};

struct Insn {
  Handler fn = nullptr;
  int64_t disp = 0;
  uint64_t imm = 0;   // immediate (sign-extended to the operand size), moffs, far offset
  uint64_t imm2 = 0;  // second immediate: far selector, ENTER level
  uint8_t len = 0;    // bytes
  uint8_t osz = 4;    // operand size in bytes
  uint8_t asz = 8;    // address size in bytes
  uint8_t op = 0;     // sub-operation: ALU kind, condition code, shift kind, CR/DR number...
  uint8_t reg = kNoReg;  // register operand (ModRM.reg or opcode register); 16..19 = AH..BH
  uint8_t rm = kNoReg;   // register r/m operand when not memory
  uint8_t base = kNoReg, index = kNoReg;
  uint8_t scale = 0;     // shift count: 0..3
  uint8_t seg = 3;       // SegIndex of the memory operand
  uint8_t flags = 0;
  uint8_t src_size = 0;  // MOVZX/MOVSX source size; string element size
  bool is_mem() const { return (flags & kInsnMem) != 0; }
};

// A straight-line run of decoded instructions, keyed by the physical address of its first byte
// and the decode mode. Ends at a control transfer, an instruction that changes IF/shadow/mode/
// paging, a page boundary, or kMaxInsns.
struct Block {
  static constexpr unsigned kMaxInsns = 64;
  uint64_t pa = ~0ull;
  DecodeMode mode = DecodeMode::kReal16;
  uint64_t pfn0 = 0, pfn1 = ~0ull;  // pages the bytes came from (pfn1: an instruction crossed)
  uint32_t gen0 = 0, gen1 = 0;
  std::vector<Insn> insns;
};

}  // namespace apicv::cpu
