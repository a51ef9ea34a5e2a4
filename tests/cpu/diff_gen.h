// Differential test: random sequences of general-purpose x86-64 instructions with operands biased
// towards the edge cases, and the record of what the SDM leaves undefined after each instruction.
//
// Encoding: Zydis's encoder (ZydisEncoderEncodeInstruction) builds each instruction from a
// mnemonic and operands, so ModRM/SIB/REX/prefix details and operand-size forms come from a
// maintained table instead of hand-written templates; the string instructions (whose operands
// are implicit) and a few fixed probes are literal bytes. Every instruction, from either source,
// is decoded again with Zydis's decoder: that checks the length, gives the registers it reads and
// writes (the generator keeps RSP and R15 = scratch base intact and never reads a register whose
// value is undefined) and the flags it tests, writes and leaves undefined.
//
// Undefined flags (SDM vol. 2 "Flags Affected" of each instruction) come from Zydis's
// per-instruction table (ZydisDecodedInstruction::cpu_flags->undefined), except where they depend
// on the count, which Zydis cannot know statically; the generator knows every count (CL is loaded
// right before):
//   SHL/SHR/SAR  count (masked to 5/6 bits) 0: no flag changes; else AF undefined, OF undefined
//                unless count = 1, CF undefined for SHL/SHR when count >= operand width.
//   ROL/ROR/RCL/RCR  masked count 0: no flag changes; else OF undefined unless count = 1
//                (SF/ZF/AF/PF untouched).
//   SHLD/SHRD    count 0: no flag changes; else AF undefined, OF undefined unless count = 1.
//   REP CMPS/SCAS with RCX = 0: no flag changes.
// A flag left undefined is never tested by a later instruction: the generator inserts
// `cmp r15, imm8` (defines all six) before an instruction that would read it.
// Undefined results, masked or not generated:
//   BSF/BSR with a zero source: the destination register is masked until fully rewritten.
//   SHLD/SHRD 16-bit with a count > 16 (undefined result): not generated.
//   BSWAP r16 (undefined result): not generated.
// Host-dependent behaviour kept out by construction: no locked access splits a cache line
// (split-lock detection), POPF never sets TF, AC or NT, no RDTSC/CPUID/RDRAND.
//
// Instructions: ADD/ADC/SUB/SBB/AND/OR/XOR/CMP/TEST, INC/DEC/NEG/NOT, shifts and rotates (counts
// 0, 1, w-1, w, w+1, any; immediate or CL), SHLD/SHRD, MUL/IMUL (1-3 operands)/DIV/IDIV (with
// #DE), BT/BTS/BTR/BTC (register bit offsets reaching outside the operand), BSF/BSR, POPCNT,
// SETcc/CMOVcc, MOVZX/MOVSX/MOVSXD, LEA (64/32-bit addressing), XCHG/XADD/CMPXCHG/CMPXCHG8B/16B
// (LOCK half of the time), BSWAP, CBW..CQO, LAHF/SAHF, CLC/STC/CMC, PUSH/POP (16/64), PUSHF/POPF,
// MOVS/STOS/LODS/CMPS/SCAS with REP/REPE/REPNE and DF = 0/1, forward Jcc/JMP/LOOPcc/JrCXZ,
// CALL/POP, MOV, self-modifying stores, and faulting probes (#UD, #GP at CPL 3, #PF read/write/
// read-modify-write, non-canonical #GP/#SS, #DE). Memory operands: [r15 + disp] (page-crossing
// ones included), [r15 + r14 * scale + disp], [rip + rel32], absolute disp32.
#pragma once

#include <Zydis/Zydis.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <random>
#include <vector>

#include "diff_layout.h"

namespace apicv::cpu::difftest {

inline constexpr uint32_t kFlagCF = 1u << 0, kFlagPF = 1u << 2, kFlagAF = 1u << 4,
                          kFlagZF = 1u << 6, kFlagSF = 1u << 7, kFlagOF = 1u << 11;
inline constexpr uint32_t kArith6 = kFlagCF | kFlagPF | kFlagAF | kFlagZF | kFlagSF | kFlagOF;
inline constexpr unsigned kR15 = 15, kR14 = 14, kRspId = 4;

class Generator {
 public:
  // compat32: 32-bit code in compatibility mode (CS.L = 0, CS.D = 1 under IA-32e paging): the
  // legacy 32-bit encodings and semantics (no REX, 8 GPRs, INC/DEC r32 short forms, BCD
  // adjustments), with EBP as the scratch base instead of R15.
  // qemu_oracle: the sequence runs under qemu-i386 (diff_qemu_i386.h), whose known translation
  // bugs are steered around where that changes nothing architecturally (see cmpxchg_wide).
  explicit Generator(uint64_t seed, bool compat32 = false, bool qemu_oracle = false)
      : rng_(seed),
        c32_(compat32),
        qemu_oracle_(qemu_oracle),
        mode_(compat32 ? ZYDIS_MACHINE_MODE_LONG_COMPAT_32 : ZYDIS_MACHINE_MODE_LONG_64),
        base_id_(compat32 ? 5 : kR15),
        nat_(compat32 ? 32 : 64) {
    seq_.seed = seed;
    seq_.compat32 = compat32;
    ZydisDecoderInit(&dec_, mode_, compat32 ? ZYDIS_STACK_WIDTH_32 : ZYDIS_STACK_WIDTH_64);
  }

  Sequence generate(unsigned items) {
    init_state();
    for (unsigned k = 0; k < items && !full_; ++k) {
      for (int attempt = 0; attempt < 16; ++attempt) {
        if (item()) break;
      }
    }
    seq_.undef_flags.push_back(undef_flags_);
    seq_.undef_gprs.push_back(undef_gprs_);
    return std::move(seq_);
  }

 private:
  // ---------------------------------------------------------------- random values
  uint64_t rnd(uint64_t n) { return n == 0 ? 0 : rng_() % n; }
  bool chance(unsigned pct) { return rnd(100) < pct; }
  static uint64_t mask(unsigned w) { return w == 64 ? ~0ull : (1ull << w) - 1; }

  // A value of `w` bits biased to the edges: 0, +-1, the sign bit and its neighbours, all ones.
  uint64_t edge(unsigned w) {
    const uint64_t sign = 1ull << (w - 1);
    uint64_t v;
    switch (rnd(14)) {
      case 0:
        v = 0;
        break;
      case 1:
        v = 1;
        break;
      case 2:
        v = ~0ull;
        break;
      case 3:
        v = ~0ull - 1;
        break;
      case 4:
        v = sign;
        break;
      case 5:
        v = sign - 1;
        break;
      case 6:
        v = sign + 1;
        break;
      case 7:
        v = 2;
        break;
      case 8:
        v = rnd(w + 1);
        break;  // shift-count-like
      case 9:
        v = 1ull << rnd(w);
        break;
      case 10:
        v = (rng_() & 1) ? 0x5555555555555555ull : 0xAAAAAAAAAAAAAAAAull;
        break;
      case 11:
        v = rnd(256);
        break;
      default:
        v = rng_();
        break;
    }
    return v & mask(w);
  }
  // A 64-bit register value: an edge value of some width with edge or random upper bits.
  uint64_t reg_value() {
    static constexpr unsigned kW[] = {8, 16, 32, 64};
    const unsigned w = kW[rnd(4)];
    uint64_t v = edge(w);
    if (w < 64) {
      switch (rnd(3)) {
        case 0:
          break;
        case 1:
          v |= ~mask(w);
          break;
        default:
          v |= rng_() & ~mask(w);
          break;
      }
    }
    return v;
  }
  // A signed immediate that fits in `w` bits (imm8/16/32; 64-bit operations take simm32).
  int64_t imm(unsigned w) {
    const unsigned iw = w > 32 ? 32 : w;
    const uint64_t v = edge(iw);
    const unsigned sh = 64 - iw;
    return static_cast<int64_t>(v << sh) >> sh;
  }

  void init_state() {
    for (unsigned r = 0; r < 16; ++r) seq_.gpr[r] = reg_value();
    seq_.gpr[kRspId] = kStackInit;
    seq_.gpr[base_id_] = kScratchVa;
    // 64-bit mode: R14 is a fixed small signed index for [r15 + r14 * scale + disp] operands.
    if (!c32_) seq_.gpr[kR14] = static_cast<uint64_t>(static_cast<int64_t>(rnd(256)) - 128);
    rsp_off_ = kStackInit - kScratchVa;
    seq_.rflags = 0x202 | (rng_() & kArith6);
    seq_.scratch.resize(kScratchSize);
    for (uint64_t o = 0; o < kScratchSize; o += 8) {
      const uint64_t v = reg_value();
      std::memcpy(&seq_.scratch[o], &v, 8);
    }
  }

  // ---------------------------------------------------------------- operands
  // GPRs the generator may write: all but RSP (stack), the scratch base (R15 / EBP) and the
  // index R14 (64-bit mode), which are only read.
  unsigned pick_gpr() {
    static constexpr unsigned kPool[] = {0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12, 13};
    static constexpr unsigned kPool32[] = {0, 1, 2, 3, 6, 7};
    return c32_ ? kPool32[rnd(6)] : kPool[rnd(13)];
  }
  static ZydisRegister gpr(unsigned w, unsigned id) {
    switch (w) {
      case 8: {
        static constexpr ZydisRegister kLow[] = {
            ZYDIS_REGISTER_AL,   ZYDIS_REGISTER_CL,   ZYDIS_REGISTER_DL,   ZYDIS_REGISTER_BL,
            ZYDIS_REGISTER_SPL,  ZYDIS_REGISTER_BPL,  ZYDIS_REGISTER_SIL,  ZYDIS_REGISTER_DIL,
            ZYDIS_REGISTER_R8B,  ZYDIS_REGISTER_R9B,  ZYDIS_REGISTER_R10B, ZYDIS_REGISTER_R11B,
            ZYDIS_REGISTER_R12B, ZYDIS_REGISTER_R13B, ZYDIS_REGISTER_R14B, ZYDIS_REGISTER_R15B};
        return kLow[id];
      }
      case 16:
        return ZydisRegisterEncode(ZYDIS_REGCLASS_GPR16, static_cast<ZyanU8>(id));
      case 32:
        return ZydisRegisterEncode(ZYDIS_REGCLASS_GPR32, static_cast<ZyanU8>(id));
      default:
        return ZydisRegisterEncode(ZYDIS_REGCLASS_GPR64, static_cast<ZyanU8>(id));
    }
  }
  // A register operand of width w; 8-bit picks AH..BH one time in five.
  ZydisRegister pick_reg(unsigned w) {
    if (w == 8 && chance(20)) {
      static constexpr ZydisRegister kHigh[] = {ZYDIS_REGISTER_AH, ZYDIS_REGISTER_CH,
                                                ZYDIS_REGISTER_DH, ZYDIS_REGISTER_BH};
      return kHigh[rnd(4)];
    }
    if (w == 8 && c32_) return gpr(8, static_cast<unsigned>(rnd(4)));  // no SIL/DIL/BPL
    return gpr(w, pick_gpr());
  }
  unsigned pick_width(bool with8 = true) {
    static constexpr unsigned kW[] = {8, 16, 32, 64};
    const unsigned n = c32_ ? 3 : 4;
    return with8 ? kW[rnd(n)] : kW[1 + rnd(n - 1)];
  }
  // A scratch displacement for an access of `bytes`: anywhere in the two pages, sometimes
  // straddling the page boundary inside them.
  int64_t pick_disp(unsigned bytes) {
    if (bytes > 1 && chance(10)) return 0x1000 - 1 - static_cast<int64_t>(rnd(bytes - 1));
    if (chance(50)) return static_cast<int64_t>(rnd(0x100 / bytes) * bytes);  // aligned, low
    return static_cast<int64_t>(rnd(kScratchSize - bytes + 1));
  }

  static ZydisEncoderOperand R(ZydisRegister r) {
    ZydisEncoderOperand o;
    std::memset(&o, 0, sizeof o);
    o.type = ZYDIS_OPERAND_TYPE_REGISTER;
    o.reg.value = r;
    return o;
  }
  // The scratch location at offset `disp`, addressed as [base + disp] mostly, else (64-bit mode)
  // [r15 + r14 * scale + disp'], [rip + rel32] or an absolute disp32 / moffs (the effective
  // address is the same: enc() resolves the RIP-relative displacement once it knows the length).
  ZydisEncoderOperand M(int64_t disp, unsigned bytes) {
    const uint64_t k = rnd(100);
    if (k < 8)
      return Mx(static_cast<int64_t>(kScratchVa) + disp, bytes, ZYDIS_REGISTER_NONE,
                ZYDIS_REGISTER_NONE, 0);
    if (!c32_ && k < 18) return Mx(disp, bytes, ZYDIS_REGISTER_RIP, ZYDIS_REGISTER_NONE, 0);
    if (!c32_ && k < 30) {
      static constexpr unsigned kScale[] = {1, 2, 4, 8};
      const unsigned sc = kScale[rnd(4)];
      const int64_t idx = static_cast<int64_t>(seq_.gpr[kR14]);
      return Mx(disp - idx * sc, bytes, gpr(64, kR15), gpr(64, kR14), sc);
    }
    return Mx(disp, bytes, gpr(nat_, base_id_), ZYDIS_REGISTER_NONE, 0);
  }
  static ZydisEncoderOperand Mx(int64_t disp, unsigned bytes, ZydisRegister base,
                                ZydisRegister index, unsigned scale) {
    ZydisEncoderOperand o;
    std::memset(&o, 0, sizeof o);
    o.type = ZYDIS_OPERAND_TYPE_MEMORY;
    o.mem.base = base;
    o.mem.index = index;
    o.mem.scale = static_cast<ZyanU8>(scale);
    o.mem.displacement = disp;
    o.mem.size = static_cast<ZyanU16>(bytes);
    return o;
  }
  static ZydisEncoderOperand I(int64_t v) {
    ZydisEncoderOperand o;
    std::memset(&o, 0, sizeof o);
    o.type = ZYDIS_OPERAND_TYPE_IMMEDIATE;
    o.imm.s = v;
    return o;
  }
  // r/m of width w: a register or a scratch location.
  ZydisEncoderOperand rm(unsigned w) {
    return chance(60) ? R(pick_reg(w)) : M(pick_disp(w / 8), w / 8);
  }

  // ---------------------------------------------------------------- emission
  bool enc(ZydisMnemonic m, std::initializer_list<ZydisEncoderOperand> ops, ZyanU64 prefixes = 0,
           ZydisAddressSizeHint asz = ZYDIS_ADDRESS_SIZE_HINT_NONE) {
    uint8_t buf[ZYDIS_MAX_INSTRUCTION_LENGTH];
    size_t len = 0;
    if (!encode(m, ops, buf, &len, prefixes, asz)) {
      clear_rule();
      return false;
    }
    // A RIP-relative operand holds its scratch offset: re-encode with rel32 measured from the end
    // of the instruction, after the flag definer append() may insert before it.
    int rip_op = -1;
    for (size_t k = 0; k < ops.size(); ++k) {
      const ZydisEncoderOperand& o = ops.begin()[k];
      if (o.type == ZYDIS_OPERAND_TYPE_MEMORY && o.mem.base == ZYDIS_REGISTER_RIP)
        rip_op = static_cast<int>(k);
    }
    if (rip_op >= 0) {
      ZydisDecodedInstruction insn;
      ZydisDecodedOperand dops[ZYDIS_MAX_OPERAND_COUNT];
      if (!ZYAN_SUCCESS(ZydisDecoderDecodeFull(&dec_, buf, len, &insn, dops))) return reject();
      const bool definer =
          insn.cpu_flags != nullptr && (insn.cpu_flags->tested & undef_flags_ & kArith6) != 0;
      const uint64_t next = kCodeVa + seq_.code.size() + (definer ? 4 : 0) + len;
      std::vector<ZydisEncoderOperand> v(ops.begin(), ops.end());
      v[static_cast<size_t>(rip_op)].mem.displacement = static_cast<int64_t>(kScratchVa) +
                                                        ops.begin()[rip_op].mem.displacement -
                                                        static_cast<int64_t>(next);
      size_t len2 = 0;
      if (!encode_ops(m, v.data(), v.size(), buf, &len2, prefixes, asz) || len2 != len)
        return reject();
    }
    return append(buf, len);
  }
  bool encode(ZydisMnemonic m, std::initializer_list<ZydisEncoderOperand> ops, uint8_t* buf,
              size_t* out_len, ZyanU64 prefixes = 0,
              ZydisAddressSizeHint asz = ZYDIS_ADDRESS_SIZE_HINT_NONE) {
    return encode_ops(m, ops.begin(), ops.size(), buf, out_len, prefixes, asz);
  }
  bool encode_ops(ZydisMnemonic m, const ZydisEncoderOperand* ops, size_t n, uint8_t* buf,
                  size_t* out_len, ZyanU64 prefixes, ZydisAddressSizeHint asz) {
    ZydisEncoderRequest r;
    std::memset(&r, 0, sizeof r);
    r.machine_mode = mode_;
    r.mnemonic = m;
    r.prefixes = prefixes;
    r.address_size_hint = asz;
    r.operand_count = static_cast<ZyanU8>(n);
    for (size_t k = 0; k < n; ++k) r.operands[k] = ops[k];
    ZyanUSize len = ZYDIS_MAX_INSTRUCTION_LENGTH;
    if (!ZYAN_SUCCESS(ZydisEncoderEncodeInstruction(&r, buf, &len))) return false;
    *out_len = len;
    return true;
  }
  bool bytes(std::initializer_list<uint8_t> b) {
    uint8_t buf[ZYDIS_MAX_INSTRUCTION_LENGTH];
    size_t n = 0;
    for (uint8_t x : b) buf[n++] = x;
    return append(buf, n);
  }
  void clear_rule() {
    rule_set_ = false;
    rule_written_ = rule_undef_ = 0;
    result_undef_ = 0;
  }
  int gpr_id(ZydisRegister r) const {
    const ZydisRegister big = ZydisRegisterGetLargestEnclosing(mode_, r);
    const ZydisRegisterClass cls = ZydisRegisterGetClass(big);
    if (cls != ZYDIS_REGCLASS_GPR64 && cls != ZYDIS_REGCLASS_GPR32) return -1;
    return ZydisRegisterGetId(big);
  }

  // Decodes `b`, checks the register rules, inserts a flag definer when needed, appends it and
  // updates the undefined-state record. False (nothing appended) when the instruction breaks a
  // rule or does not fit.
  bool append(const uint8_t* b, size_t n) {
    ZydisDecodedInstruction insn;
    ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
    if (!ZYAN_SUCCESS(ZydisDecoderDecodeFull(&dec_, b, n, &insn, ops)) || insn.length != n) {
      clear_rule();
      return false;
    }
    if (seq_.code.size() + n + 4 > kMaxSeqBytes) {
      full_ = true;
      clear_rule();
      return false;
    }
    uint16_t now_defined = 0;
    for (unsigned k = 0; k < insn.operand_count; ++k) {
      const ZydisDecodedOperand& o = ops[k];
      if (o.type == ZYDIS_OPERAND_TYPE_MEMORY) {
        for (ZydisRegister r : {o.mem.base, o.mem.index}) {
          const int id = r == ZYDIS_REGISTER_NONE ? -1 : gpr_id(r);
          if (id >= 0 && (undef_gprs_ >> id & 1)) return reject();
        }
        continue;
      }
      if (o.type != ZYDIS_OPERAND_TYPE_REGISTER) continue;
      const int id = gpr_id(o.reg.value);
      if (id < 0) continue;
      const bool explicit_op = o.visibility == ZYDIS_OPERAND_VISIBILITY_EXPLICIT;
      const bool writes = (o.actions & ZYDIS_OPERAND_ACTION_MASK_WRITE) != 0;
      const bool reads = (o.actions & ZYDIS_OPERAND_ACTION_MASK_READ) != 0;
      if (id == static_cast<int>(kRspId) && explicit_op) return reject();
      if (id == static_cast<int>(base_id_) && writes) return reject();
      if (!c32_ && id == static_cast<int>(kR14) && writes) return reject();
      if (undef_gprs_ >> id & 1) {
        if (reads) return reject();
        if ((o.actions & ZYDIS_OPERAND_ACTION_WRITE) != 0 && o.size >= 32) now_defined |= 1u << id;
      }
    }
    const ZydisAccessedFlags* f = insn.cpu_flags;
    const bool definer = f != nullptr && (f->tested & undef_flags_ & kArith6) != 0;
    if (splits_cache_line_locked(insn, ops, n, definer)) return reject();
    if (definer) {
      // cmp r15, imm8 (cmp ebp, imm8): defines CF/PF/AF/ZF/SF/OF and changes nothing else.
      static constexpr uint8_t kDefiner[] = {0x49, 0x83, 0xFF, 0x5A};
      static constexpr uint8_t kDefiner32[] = {0x83, 0xFD, 0x5A};
      if (c32_) {
        push_insn(kDefiner32, sizeof kDefiner32);
      } else {
        push_insn(kDefiner, sizeof kDefiner);
      }
      undef_flags_ = 0;
    }
    push_insn(b, n);
    uint32_t written, undefined;
    if (rule_set_) {
      written = rule_written_;
      undefined = rule_undef_;
    } else if (f != nullptr) {
      undefined = f->undefined;
      written = f->modified | f->set_0 | f->set_1 | undefined;
    } else {
      written = undefined = 0;
    }
    undef_flags_ = ((undef_flags_ & ~written) | undefined) & kArith6;
    undef_gprs_ = static_cast<uint16_t>((undef_gprs_ & ~now_defined) | result_undef_);
    clear_rule();
    return true;
  }
  bool reject() {
    clear_rule();
    return false;
  }
  // A locked access (LOCK prefix, or XCHG with memory) that splits a cache line: on Intel hosts
  // with split-lock detection it raises #AC or is throttled by the kernel (~10 ms each), which
  // is the host's configuration, not the architecture; the generator keeps locked accesses
  // inside one line. BTS/BTR/BTC with a register bit offset address an operand-sized word from
  // the operand's address, so an aligned operand address is enough there.
  bool splits_cache_line_locked(const ZydisDecodedInstruction& insn, const ZydisDecodedOperand* ops,
                                size_t len, bool definer) const {
    const bool locked =
        (insn.attributes & ZYDIS_ATTRIB_HAS_LOCK) != 0 || insn.mnemonic == ZYDIS_MNEMONIC_XCHG;
    if (!locked) return false;
    for (unsigned k = 0; k < insn.operand_count; ++k) {
      const ZydisDecodedOperand& o = ops[k];
      if (o.type != ZYDIS_OPERAND_TYPE_MEMORY ||
          o.visibility != ZYDIS_OPERAND_VISIBILITY_EXPLICIT) {
        continue;
      }
      uint64_t ea = static_cast<uint64_t>(o.mem.disp.value);
      if (o.mem.base == ZYDIS_REGISTER_RIP) {
        ea += kCodeVa + seq_.code.size() + (definer ? 4 : 0) + len;
      } else if (o.mem.base != ZYDIS_REGISTER_NONE) {
        ea += seq_.gpr[static_cast<size_t>(gpr_id(o.mem.base))];
      }
      if (o.mem.index != ZYDIS_REGISTER_NONE) {
        ea += seq_.gpr[static_cast<size_t>(gpr_id(o.mem.index))] * o.mem.scale;
      }
      if (c32_) ea &= 0xFFFFFFFFu;
      const uint64_t bytes = o.size / 8;
      const bool bit_offset =
          insn.operand_count_visible == 2 && ops[1].type == ZYDIS_OPERAND_TYPE_REGISTER &&
          (insn.mnemonic == ZYDIS_MNEMONIC_BTS || insn.mnemonic == ZYDIS_MNEMONIC_BTR ||
           insn.mnemonic == ZYDIS_MNEMONIC_BTC);
      if (bit_offset) return ea % bytes != 0;
      return (ea & 63) + bytes > 64;
    }
    return false;
  }
  void push_insn(const uint8_t* b, size_t n) {
    seq_.undef_flags.push_back(undef_flags_);
    seq_.undef_gprs.push_back(undef_gprs_);
    seq_.offs.push_back(static_cast<uint32_t>(seq_.code.size()));
    seq_.maybe_skipped.push_back(next_skippable_ ? 1 : 0);
    next_skippable_ = false;
    seq_.code.insert(seq_.code.end(), b, b + n);
  }
  void set_rule(uint32_t written, uint32_t undefined) {
    rule_set_ = true;
    rule_written_ = written;
    rule_undef_ = undefined;
  }

  // ---------------------------------------------------------------- items
  bool item() {
    if (c32_ && chance(3)) return bcd();
    const uint64_t k = rnd(1000);
    if (k < 150) return alu();
    if (k < 190) return test();
    if (k < 250) return unary();
    if (k < 340) return shift();
    if (k < 380) return shxd();
    if (k < 430) return muldiv();
    if (k < 460) return imul();
    if (k < 510) return bt();
    if (k < 540) return bitscan();
    if (k < 555) return popcnt();
    if (k < 615) return setcc_cmov();
    if (k < 650) return movx();
    if (k < 690) return lea();
    if (k < 740) return xchg();
    if (k < 755) return bswap();
    if (k < 780) return convert();
    if (k < 805) return flag_ops();
    if (k < 855) return stack();
    if (k < 905) return string();
    if (k < 930) return mov();
    if (k < 938) return frame();
    if (k < 945) return xlat();
    if (k < 965) return branch();
    if (k < 975) return flags_stack();
    if (k < 985) return cmpxchg_wide();
    if (k < 993) return smc();
    return fault_probe();
  }

  bool alu() {
    static constexpr ZydisMnemonic kM[] = {
        ZYDIS_MNEMONIC_ADD, ZYDIS_MNEMONIC_ADC, ZYDIS_MNEMONIC_SUB, ZYDIS_MNEMONIC_SBB,
        ZYDIS_MNEMONIC_AND, ZYDIS_MNEMONIC_OR,  ZYDIS_MNEMONIC_XOR, ZYDIS_MNEMONIC_CMP};
    const ZydisMnemonic m = kM[rnd(8)];
    const unsigned w = pick_width();
    const bool lock = m != ZYDIS_MNEMONIC_CMP && chance(20);
    switch (rnd(5)) {
      case 0:
        return enc(m, {R(pick_reg(w)), R(pick_reg(w))});
      case 1:
        return enc(m, {R(pick_reg(w)), M(pick_disp(w / 8), w / 8)});
      case 2:
        return enc(m, {M(pick_disp(w / 8), w / 8), R(pick_reg(w))},
                   lock ? ZYDIS_ATTRIB_HAS_LOCK : 0);
      case 3:
        return enc(m, {R(pick_reg(w)), I(imm(w))});
      default:
        return enc(m, {M(pick_disp(w / 8), w / 8), I(imm(w))}, lock ? ZYDIS_ATTRIB_HAS_LOCK : 0);
    }
  }
  bool test() {
    const unsigned w = pick_width();
    if (chance(50)) return enc(ZYDIS_MNEMONIC_TEST, {rm(w), R(pick_reg(w))});
    return enc(ZYDIS_MNEMONIC_TEST, {rm(w), I(imm(w))});
  }
  bool unary() {
    static constexpr ZydisMnemonic kM[] = {ZYDIS_MNEMONIC_INC, ZYDIS_MNEMONIC_DEC,
                                           ZYDIS_MNEMONIC_NEG, ZYDIS_MNEMONIC_NOT};
    const unsigned w = pick_width();
    const ZydisEncoderOperand d = rm(w);
    const bool lock = d.type == ZYDIS_OPERAND_TYPE_MEMORY && chance(20);
    return enc(kM[rnd(4)], {d}, lock ? ZYDIS_ATTRIB_HAS_LOCK : 0);
  }
  // A shift/rotate count biased to 0, 1, width-1, width and width+1, or anything in 0..255.
  unsigned pick_count(unsigned w) {
    switch (rnd(7)) {
      case 0:
        return 0;
      case 1:
        return 1;
      case 2:
        return w - 1;
      case 3:
        return w;
      case 4:
        return w + 1;
      case 5:
        return static_cast<unsigned>(rnd(256));
      default:
        return static_cast<unsigned>(rnd(w));
    }
  }
  // Loads CL with `count` when the instruction uses CL; false when RCX cannot be written.
  bool load_cl(unsigned count) {
    return enc(ZYDIS_MNEMONIC_MOV, {R(ZYDIS_REGISTER_CL), I(static_cast<int8_t>(count))});
  }

  bool shift() {
    static constexpr ZydisMnemonic kM[] = {
        ZYDIS_MNEMONIC_SHL, ZYDIS_MNEMONIC_SHR, ZYDIS_MNEMONIC_SAR, ZYDIS_MNEMONIC_ROL,
        ZYDIS_MNEMONIC_ROR, ZYDIS_MNEMONIC_RCL, ZYDIS_MNEMONIC_RCR};
    const unsigned mi = static_cast<unsigned>(rnd(7));
    const unsigned w = pick_width();
    const unsigned count = pick_count(w) & 0xFF;
    const bool use_cl = chance(35);
    const ZydisEncoderOperand d = rm(w);
    if (use_cl && !load_cl(count)) return false;
    const unsigned c = count & (w == 64 ? 63 : 31);
    if (c == 0) {
      set_rule(0, 0);
    } else if (mi < 3) {
      uint32_t u = kFlagAF | (c != 1 ? kFlagOF : 0);
      if (mi < 2 && c >= w) u |= kFlagCF;
      set_rule(kArith6, u);
    } else {
      set_rule(kFlagCF | kFlagOF, c != 1 ? kFlagOF : 0);
    }
    return enc(kM[mi], {d, use_cl ? R(ZYDIS_REGISTER_CL) : I(static_cast<int8_t>(count))});
  }
  bool shxd() {
    const ZydisMnemonic m = chance(50) ? ZYDIS_MNEMONIC_SHLD : ZYDIS_MNEMONIC_SHRD;
    const unsigned w = pick_width(false);
    unsigned count = pick_count(w) & 0xFF;
    if (w == 16 && (count & 31) > 16) count = 16;  // a count > 16 leaves the result undefined
    const bool use_cl = chance(35);
    const ZydisEncoderOperand d = rm(w);
    const ZydisRegister s = pick_reg(w);
    if (use_cl && !load_cl(count)) return false;
    const unsigned c = count & (w == 64 ? 63 : 31);
    if (c == 0) {
      set_rule(0, 0);
    } else {
      set_rule(kArith6, kFlagAF | (c != 1 ? kFlagOF : 0));
    }
    return enc(m, {d, R(s), use_cl ? R(ZYDIS_REGISTER_CL) : I(static_cast<int8_t>(count))});
  }
  bool muldiv() {
    static constexpr ZydisMnemonic kM[] = {ZYDIS_MNEMONIC_MUL, ZYDIS_MNEMONIC_IMUL,
                                           ZYDIS_MNEMONIC_DIV, ZYDIS_MNEMONIC_IDIV};
    const unsigned mi = static_cast<unsigned>(rnd(4));
    const unsigned w = pick_width();
    const ZydisEncoderOperand s = rm(w);
    if (mi >= 2) {
      // Mostly a dividend that cannot overflow (zero- or sign-extended); sometimes anything.
      const uint64_t p = rnd(10);
      bool ok = true;
      if (p < 4) {
        if (w == 8) {
          ok = enc(ZYDIS_MNEMONIC_MOVZX, {R(ZYDIS_REGISTER_EAX), R(ZYDIS_REGISTER_AL)});
        } else {
          ok = enc(ZYDIS_MNEMONIC_MOV, {R(ZYDIS_REGISTER_EDX), I(0)});
        }
      } else if (p < 8) {
        static constexpr ZydisMnemonic kExt[] = {ZYDIS_MNEMONIC_CBW, ZYDIS_MNEMONIC_CWD,
                                                 ZYDIS_MNEMONIC_CDQ, ZYDIS_MNEMONIC_CQO};
        ok = enc(kExt[w == 8 ? 0 : w == 16 ? 1 : w == 32 ? 2 : 3], {});
      }
      if (!ok) return false;
    }
    return enc(kM[mi], {s});
  }
  bool imul() {
    const unsigned w = pick_width(false);
    if (chance(50)) return enc(ZYDIS_MNEMONIC_IMUL, {R(pick_reg(w)), rm(w)});
    return enc(ZYDIS_MNEMONIC_IMUL, {R(pick_reg(w)), rm(w), I(imm(chance(50) ? 8 : w))});
  }
  bool bt() {
    static constexpr ZydisMnemonic kM[] = {ZYDIS_MNEMONIC_BT, ZYDIS_MNEMONIC_BTS,
                                           ZYDIS_MNEMONIC_BTR, ZYDIS_MNEMONIC_BTC};
    const ZydisMnemonic m = kM[rnd(4)];
    const unsigned w = pick_width(false);
    const ZyanU64 lock = m != ZYDIS_MNEMONIC_BT && chance(20) ? ZYDIS_ATTRIB_HAS_LOCK : 0;
    switch (rnd(4)) {
      case 0:
        return enc(m, {R(pick_reg(w)), R(pick_reg(w))});
      case 1:
        return enc(m, {R(pick_reg(w)), I(static_cast<int64_t>(rnd(256)))});
      case 2:
        return enc(m, {M(pick_disp(w / 8), w / 8), I(static_cast<int64_t>(rnd(256)))}, lock);
      default: {
        // Register bit offset into memory: signed, may reach outside the operand; keep the
        // addressed word inside the scratch pages.
        const int64_t bytes = w / 8;
        const int64_t d = pick_disp(static_cast<unsigned>(bytes));
        // Bounds: inside the scratch pages, and |offset| < 2^15 for a 16-bit offset register.
        const int64_t kmin = std::max<int64_t>(-(d / bytes), w == 16 ? -2047 : INT32_MIN);
        const int64_t kmax = std::min<int64_t>(
            (static_cast<int64_t>(kScratchSize) - bytes - d) / bytes, w == 16 ? 2046 : INT32_MAX);
        int64_t k = kmin + static_cast<int64_t>(rnd(static_cast<uint64_t>(kmax - kmin + 1)));
        if (chance(50))
          k = static_cast<int64_t>(rnd(2)) - (d >= bytes ? 1 : 0);  // near the operand
        if (k < kmin) k = kmin;
        if (k > kmax) k = kmax;
        const int64_t off = k * w + static_cast<int64_t>(rnd(w));
        const unsigned r = pick_gpr();
        if (!enc(ZYDIS_MNEMONIC_MOV, {R(gpr(w == 64 ? 64 : 32, r)), I(off)})) return false;
        return enc(m, {M(d, static_cast<unsigned>(bytes)), R(gpr(w, r))}, lock);
      }
    }
  }
  bool bitscan() {
    const ZydisMnemonic m = chance(50) ? ZYDIS_MNEMONIC_BSF : ZYDIS_MNEMONIC_BSR;
    const unsigned w = pick_width(false);
    // The source is loaded right before, so the generator knows when it is zero (destination
    // undefined, SDM BSF/BSR).
    const uint64_t v = chance(25) ? 0 : static_cast<uint64_t>(imm(w)) & mask(w);
    const ZydisRegister dst = pick_reg(w);
    if (chance(50)) {
      const ZydisRegister src = pick_reg(w);
      if (!enc(ZYDIS_MNEMONIC_MOV, {R(src), I(imm_of(v, w))})) return false;
      if ((v & mask(w)) == 0) result_undef_ = static_cast<uint16_t>(1u << gpr_id(dst));
      return enc(m, {R(dst), R(src)});
    }
    const int64_t d = pick_disp(w / 8);
    if (!enc(ZYDIS_MNEMONIC_MOV, {M(d, w / 8), I(imm_of(v, w))})) return false;
    if ((v & mask(w)) == 0) result_undef_ = static_cast<uint16_t>(1u << gpr_id(dst));
    return enc(m, {R(dst), M(d, w / 8)});
  }
  // The immediate whose sign extension to w bits is v (v came from imm(w), so it fits).
  static int64_t imm_of(uint64_t v, unsigned w) {
    const unsigned iw = w > 32 ? 32 : w;
    const unsigned sh = 64 - iw;
    return static_cast<int64_t>(v << sh) >> sh;
  }
  bool popcnt() {
    const unsigned w = pick_width(false);
    return enc(ZYDIS_MNEMONIC_POPCNT, {R(pick_reg(w)), rm(w)});
  }
  bool setcc_cmov() {
    static constexpr ZydisMnemonic kSet[] = {
        ZYDIS_MNEMONIC_SETO, ZYDIS_MNEMONIC_SETNO, ZYDIS_MNEMONIC_SETB,  ZYDIS_MNEMONIC_SETNB,
        ZYDIS_MNEMONIC_SETZ, ZYDIS_MNEMONIC_SETNZ, ZYDIS_MNEMONIC_SETBE, ZYDIS_MNEMONIC_SETNBE,
        ZYDIS_MNEMONIC_SETS, ZYDIS_MNEMONIC_SETNS, ZYDIS_MNEMONIC_SETP,  ZYDIS_MNEMONIC_SETNP,
        ZYDIS_MNEMONIC_SETL, ZYDIS_MNEMONIC_SETNL, ZYDIS_MNEMONIC_SETLE, ZYDIS_MNEMONIC_SETNLE};
    static constexpr ZydisMnemonic kCmov[] = {
        ZYDIS_MNEMONIC_CMOVO, ZYDIS_MNEMONIC_CMOVNO, ZYDIS_MNEMONIC_CMOVB,  ZYDIS_MNEMONIC_CMOVNB,
        ZYDIS_MNEMONIC_CMOVZ, ZYDIS_MNEMONIC_CMOVNZ, ZYDIS_MNEMONIC_CMOVBE, ZYDIS_MNEMONIC_CMOVNBE,
        ZYDIS_MNEMONIC_CMOVS, ZYDIS_MNEMONIC_CMOVNS, ZYDIS_MNEMONIC_CMOVP,  ZYDIS_MNEMONIC_CMOVNP,
        ZYDIS_MNEMONIC_CMOVL, ZYDIS_MNEMONIC_CMOVNL, ZYDIS_MNEMONIC_CMOVLE, ZYDIS_MNEMONIC_CMOVNLE};
    const unsigned cc = static_cast<unsigned>(rnd(16));
    if (chance(50)) return enc(kSet[cc], {rm(8)});
    const unsigned w = pick_width(false);
    return enc(kCmov[cc], {R(pick_reg(w)), rm(w)});
  }
  bool movx() {
    switch (rnd(5)) {
      case 0:
        return enc(ZYDIS_MNEMONIC_MOVZX, {R(pick_reg(pick_width(false))), rm(8)});
      case 1:
        return enc(ZYDIS_MNEMONIC_MOVSX, {R(pick_reg(pick_width(false))), rm(8)});
      case 2:
        return enc(ZYDIS_MNEMONIC_MOVZX, {R(pick_reg(big_width())), rm(16)});
      case 3:
        return enc(ZYDIS_MNEMONIC_MOVSX, {R(pick_reg(big_width())), rm(16)});
      default:
        return !c32_ && enc(ZYDIS_MNEMONIC_MOVSXD, {R(pick_reg(64)), rm(32)});
    }
  }
  bool lea() {
    const unsigned w = pick_width(false);
    const bool a32 = c32_ || chance(25);
    const unsigned aw = a32 ? 32 : 64;
    const ZydisRegister base = chance(15)   ? ZYDIS_REGISTER_NONE
                               : chance(20) ? gpr(aw, base_id_)
                                            : gpr(aw, pick_gpr());
    const ZydisRegister index = chance(40) ? ZYDIS_REGISTER_NONE : gpr(aw, pick_gpr());
    static constexpr unsigned kScale[] = {1, 2, 4, 8};
    const unsigned scale = index == ZYDIS_REGISTER_NONE ? 0 : kScale[rnd(4)];
    const int64_t disp = chance(30) ? 0 : imm(chance(50) ? 8 : 32);
    return enc(ZYDIS_MNEMONIC_LEA, {R(pick_reg(w)), Mx(disp, w / 8, base, index, scale)}, 0,
               a32 ? ZYDIS_ADDRESS_SIZE_HINT_32 : ZYDIS_ADDRESS_SIZE_HINT_64);
  }
  bool xchg() {
    const unsigned w = pick_width();
    const ZydisEncoderOperand d = rm(w);
    const bool mem = d.type == ZYDIS_OPERAND_TYPE_MEMORY;
    const ZyanU64 lock = mem && chance(50) ? ZYDIS_ATTRIB_HAS_LOCK : 0;
    switch (rnd(3)) {
      case 0:
        return enc(ZYDIS_MNEMONIC_XCHG, {d, R(pick_reg(w))});
      case 1:
        return enc(ZYDIS_MNEMONIC_XADD, {d, R(pick_reg(w))}, lock);
      default:
        // Make the comparison succeed about half of the time.
        if (chance(50)) {
          if (mem) {
            if (!enc(ZYDIS_MNEMONIC_MOV, {R(gpr(w, 0)), d})) return false;
          } else if (!enc(ZYDIS_MNEMONIC_MOV, {R(gpr(w, 0)), R(d.reg.value)})) {
            return false;
          }
        }
        return enc(ZYDIS_MNEMONIC_CMPXCHG, {d, R(pick_reg(w))}, lock);
    }
  }
  unsigned big_width() { return c32_ || chance(50) ? 32 : 64; }
  bool bswap() { return enc(ZYDIS_MNEMONIC_BSWAP, {R(pick_reg(big_width()))}); }
  bool convert() {
    static constexpr ZydisMnemonic kM[] = {ZYDIS_MNEMONIC_CBW,  ZYDIS_MNEMONIC_CWDE,
                                           ZYDIS_MNEMONIC_CDQE, ZYDIS_MNEMONIC_CWD,
                                           ZYDIS_MNEMONIC_CDQ,  ZYDIS_MNEMONIC_CQO};
    static constexpr ZydisMnemonic kM32[] = {ZYDIS_MNEMONIC_CBW, ZYDIS_MNEMONIC_CWDE,
                                             ZYDIS_MNEMONIC_CWD, ZYDIS_MNEMONIC_CDQ};
    return enc(c32_ ? kM32[rnd(4)] : kM[rnd(6)], {});
  }
  // DAA/DAS/AAA/AAS/AAM/AAD (not valid in 64-bit mode); AAM 0 raises #DE.
  bool bcd() {
    switch (rnd(6)) {
      case 0:
        return enc(ZYDIS_MNEMONIC_DAA, {});
      case 1:
        return enc(ZYDIS_MNEMONIC_DAS, {});
      case 2:
        return enc(ZYDIS_MNEMONIC_AAA, {});
      case 3:
        return enc(ZYDIS_MNEMONIC_AAS, {});
      case 4:
        return enc(ZYDIS_MNEMONIC_AAM, {I(static_cast<int8_t>(chance(50) ? 10 : edge(8)))});
      default:
        return enc(ZYDIS_MNEMONIC_AAD, {I(static_cast<int8_t>(chance(50) ? 10 : edge(8)))});
    }
  }
  bool flag_ops() {
    static constexpr ZydisMnemonic kM[] = {ZYDIS_MNEMONIC_LAHF, ZYDIS_MNEMONIC_SAHF,
                                           ZYDIS_MNEMONIC_CLC, ZYDIS_MNEMONIC_STC,
                                           ZYDIS_MNEMONIC_CMC};
    return enc(kM[rnd(5)], {});
  }
  bool stack() {
    const bool push = chance(50);
    const bool w16 = chance(15);
    const int64_t step = w16 ? 2 : nat_ / 8;
    if (push && rsp_off_ - step < 0x1100) return false;
    if (!push && rsp_off_ + step > 0x1F00) return false;
    bool ok;
    if (push) {
      switch (rnd(3)) {
        case 0:
          ok = enc(ZYDIS_MNEMONIC_PUSH, {R(pick_reg(w16 ? 16 : nat_))});
          break;
        case 1:
          ok = enc(ZYDIS_MNEMONIC_PUSH, {M(pick_disp(step), step)});
          break;
        default:
          ok = !w16 && enc(ZYDIS_MNEMONIC_PUSH, {I(imm(chance(50) ? 8 : 32))});
          break;
      }
      if (ok) rsp_off_ -= step;
    } else {
      ok = chance(70) ? enc(ZYDIS_MNEMONIC_POP, {R(pick_reg(w16 ? 16 : nat_))})
                      : enc(ZYDIS_MNEMONIC_POP, {M(pick_disp(step), step)});
      if (ok) rsp_off_ += step;
    }
    return ok;
  }
  bool string() {
    // op: 0 MOVS, 1 STOS, 2 LODS, 3 CMPS, 4 SCAS; literal bytes (implicit operands).
    static constexpr uint8_t kOp[] = {0xA4, 0xAA, 0xAC, 0xA6, 0xAE};
    const unsigned op = static_cast<unsigned>(rnd(5));
    static constexpr unsigned kSz[] = {1, 2, 4, 8};
    const unsigned sz = kSz[rnd(c32_ ? 3 : 4)];
    const unsigned rep = static_cast<unsigned>(rnd(3));  // 0 none, 1 F3, 2 F2
    const bool down = chance(30);
    const unsigned n = chance(20) ? static_cast<unsigned>(rnd(2)) : static_cast<unsigned>(rnd(20));
    const unsigned iters = rep == 0 ? 1 : n;
    const int64_t span = static_cast<int64_t>(iters + 1) * sz;
    auto pick_base = [&]() {
      const int64_t lo = down ? span : 0;
      const int64_t hi = down ? kScratchSize - sz : kScratchSize - span;
      return lo + static_cast<int64_t>(rnd(static_cast<uint64_t>(hi - lo + 1)));
    };
    if (!enc(down ? ZYDIS_MNEMONIC_STD : ZYDIS_MNEMONIC_CLD, {})) return false;
    if (rep != 0 && !enc(ZYDIS_MNEMONIC_MOV, {R(ZYDIS_REGISTER_ECX), I(n)})) return false;
    const bool uses_si = op == 0 || op == 2 || op == 3;
    const bool uses_di = op != 2;
    if (uses_si && !enc(ZYDIS_MNEMONIC_LEA, {R(gpr(nat_, 6)), M(pick_base(), nat_ / 8)})) {
      return false;
    }
    if (uses_di && !enc(ZYDIS_MNEMONIC_LEA, {R(gpr(nat_, 7)), M(pick_base(), nat_ / 8)})) {
      return false;
    }
    uint8_t buf[4];
    size_t k = 0;
    if (rep == 1) buf[k++] = 0xF3;
    if (rep == 2) buf[k++] = 0xF2;
    if (sz == 2) buf[k++] = 0x66;
    if (sz == 8) buf[k++] = 0x48;
    buf[k++] = static_cast<uint8_t>(kOp[op] + (sz == 1 ? 0 : 1));
    if ((op == 3 || op == 4) && rep != 0 && n == 0) set_rule(0, 0);  // no iteration: no flags
    if (rep != 0) seq_.has_rep = true;
    return append(buf, k);
  }
  bool mov() {
    const unsigned w = pick_width();
    switch (rnd(5)) {
      case 0:
        return enc(ZYDIS_MNEMONIC_MOV,
                   {R(pick_reg(w)),
                    I(w == 64 && chance(50) ? static_cast<int64_t>(reg_value()) : imm(w))});
      case 1:
        return enc(ZYDIS_MNEMONIC_MOV, {R(pick_reg(w)), R(pick_reg(w))});
      case 2:
        return enc(ZYDIS_MNEMONIC_MOV, {R(pick_reg(w)), M(pick_disp(w / 8), w / 8)});
      case 3:
        return enc(ZYDIS_MNEMONIC_MOV, {M(pick_disp(w / 8), w / 8), R(pick_reg(w))});
      default:
        return enc(ZYDIS_MNEMONIC_MOV, {M(pick_disp(w / 8), w / 8), I(imm(w))});
    }
  }
  // A forward Jcc / JMP / LOOPcc / JrCXZ over one MOV r, imm (no flags, a defined register, so
  // the undefined-state record holds whether or not it is skipped), or CALL to the next
  // instruction and POP of the pushed return address.
  bool branch() {
    const unsigned r = pick_gpr();
    if (undef_gprs_ >> r & 1) return false;
    if (chance(15)) {
      if (rsp_off_ - nat_ / 8 < 0x1100) return false;
      if (!bytes({0xE8, 0, 0, 0, 0})) return false;
      return enc(ZYDIS_MNEMONIC_POP, {R(gpr(nat_, r))});
    }
    uint8_t mv[ZYDIS_MAX_INSTRUCTION_LENGTH];
    size_t mlen = 0;
    if (!encode(ZYDIS_MNEMONIC_MOV, {R(gpr(big_width(), r)), I(imm(32))}, mv, &mlen)) return false;
    if (seq_.code.size() + mlen + 16 > kMaxSeqBytes) return false;
    const auto cc = static_cast<uint8_t>(rnd(16));
    const auto d8 = static_cast<uint8_t>(mlen);
    bool ok;
    switch (rnd(8)) {
      case 0:
      case 1:
      case 2:
        ok = bytes({static_cast<uint8_t>(0x70 + cc), d8});
        break;  // Jcc rel8
      case 3:
        ok = bytes({0x0F, static_cast<uint8_t>(0x80 + cc), d8, 0, 0, 0});
        break;  // Jcc rel32
      case 4:
        ok = bytes({0xEB, d8});
        break;  // JMP rel8
      case 5:
        ok = bytes({0xE2, d8});
        break;  // LOOP
      case 6:
        ok = bytes({static_cast<uint8_t>(chance(50) ? 0xE1 : 0xE0), d8});
        break;  // LOOPcc
      default:
        ok = chance(50) ? bytes({0xE3, d8}) : bytes({0x67, 0xE3, d8});
        break;  // JrCXZ
    }
    if (!ok) return false;
    next_skippable_ = true;
    return append(mv, mlen);
  }
  // ENTER size, level 0/1; a store into the new frame through RBP; LEAVE. Kept adjacent so that
  // nothing changes RBP in between (LEAVE loads RSP from it). No 16-bit forms: they write BP
  // only, and LEAVE would then load RSP from a partly random RBP.
  bool frame() {
    const unsigned size = static_cast<unsigned>(chance(30) ? rnd(64) : rnd(9) * 8);
    const unsigned level = static_cast<unsigned>(rnd(2));
    const int64_t need = size + 2 * (nat_ / 8) + 8;
    if (rsp_off_ - need < 0x1100) return false;
    if (undef_gprs_ >> 5 & 1) return false;
    if (!bytes({0xC8, static_cast<uint8_t>(size), static_cast<uint8_t>(size >> 8),
                static_cast<uint8_t>(level)})) {
      return false;
    }
    const unsigned w = pick_width();
    const int64_t at = -static_cast<int64_t>(w / 8) - static_cast<int64_t>(rnd(size / 8 + 1)) * 8;
    // The store may be refused (e.g. AH with a REX prefix); the frame is torn down either way.
    enc(ZYDIS_MNEMONIC_MOV, {Mx(at, w / 8, gpr(nat_, 5), ZYDIS_REGISTER_NONE, 0), R(pick_reg(w))});
    return bytes({0xC9});
  }
  // XLAT: AL := [rBX + AL], with rBX pointing into the scratch pages.
  bool xlat() {
    if (!enc(ZYDIS_MNEMONIC_LEA,
             {R(gpr(nat_, 3)), M(static_cast<int64_t>(rnd(kScratchSize - 256)), nat_ / 8)})) {
      return false;
    }
    return chance(50) || c32_ ? bytes({0xD7}) : bytes({0x48, 0xD7});
  }
  // PUSHF, or POPF of a chosen image: arithmetic flags, DF, ID, and IF/IOPL (which POPF at CPL 3
  // must leave alone). Not TF (a single-step trap), not AC (alignment checking would also apply
  // to the native child's own code after the sequence), and not NT: the host kernel may clear NT
  // when it interrupts the child (seen on this machine: the same sequence ended with NT = 1 or 0
  // from run to run), so its final value is not the CPU's.
  bool flags_stack() {
    const bool w16 = chance(20);
    const int64_t step = w16 ? 2 : nat_ / 8;
    if (rsp_off_ - step < 0x1100) return false;
    if (chance(40)) {
      const bool ok = w16 ? bytes({0x66, 0x9C}) : bytes({0x9C});
      if (ok) rsp_off_ -= step;
      return ok;
    }
    static constexpr uint32_t kBits[] = {kFlagCF, kFlagPF,  kFlagAF,  kFlagZF,  kFlagSF, kFlagOF,
                                         1u << 9, 1u << 10, 1u << 12, 1u << 13, 1u << 21};
    uint32_t v = 2;
    for (uint32_t b : kBits) {
      if (chance(50)) v |= b;
    }
    if (w16) {
      if (!bytes({0x66, 0x68, static_cast<uint8_t>(v), static_cast<uint8_t>(v >> 8)})) return false;
      return bytes({0x66, 0x9D});
    }
    if (!bytes({0x68, static_cast<uint8_t>(v), static_cast<uint8_t>(v >> 8),
                static_cast<uint8_t>(v >> 16), 0})) {
      return false;
    }
    return bytes({0x9D});
  }
  // CMPXCHG8B / CMPXCHG16B (16-byte alignment required: #GP(0) otherwise); EDX:EAX / RDX:RAX
  // loaded from the operand half of the time so that the exchange happens.
  bool cmpxchg_wide() {
    const bool b16 = !c32_ && chance(50);
    const unsigned n = b16 ? 16 : 8;
    const int64_t d = chance(85) ? static_cast<int64_t>(rnd(kScratchSize / n) * n)
                                 : static_cast<int64_t>(rnd(kScratchSize - n + 1));
    if (chance(50)) {
      const unsigned hw = n * 4;
      if (!enc(ZYDIS_MNEMONIC_MOV, {R(gpr(hw, 0)), M(d, n / 2)})) return false;
      if (!enc(ZYDIS_MNEMONIC_MOV, {R(gpr(hw, 2)), M(d + n / 2, n / 2)})) return false;
    }
    const ZyanU64 lock = chance(50) ? ZYDIS_ATTRIB_HAS_LOCK : 0;
    // For the qemu-i386 oracle: QEMU 7.2's translator calls its CMPXCHG8B helper without
    // storing the lazy-flags state (CC_OP) first, so the helper computes CF/PF/AF/SF/OF from a
    // stale CC_OP (wrong flags; in some states QEMU aborts). The SDM (vol. 2A CMPXCHG8B) leaves
    // those flags unchanged. A JMP +0 ends QEMU's translation block, which stores CC_OP; it
    // changes nothing architecturally and the interpreter runs it too.
    if (qemu_oracle_) {
      if (!bytes({0xEB, 0x00})) return false;
      ++seq_.qemu_tb_breaks;
    }
    return enc(b16 ? ZYDIS_MNEMONIC_CMPXCHG16B : ZYDIS_MNEMONIC_CMPXCHG8B, {M(d, n)}, lock);
  }

  // Self-modifying code: store into the immediate of the next instruction (ADD EAX, imm32),
  // which both the host and the interpreter must then execute with the new value.
  bool smc() {
    if (undef_gprs_ & 1) return false;
    if (seq_.code.size() + 32 > kMaxSeqBytes) return false;
    const size_t store_at = seq_.code.size();
    // mov dword [r15 + disp32], imm32 is 41 C7 87 disp32 imm32 = 11 bytes (without the REX
    // prefix and with EBP, C7 85: 10 bytes); the ADD's immediate starts one byte into the next
    // instruction.
    const size_t st_len = c32_ ? 10 : 11;
    const int64_t target = static_cast<int64_t>(kCodeVa + store_at + st_len + 1);
    const int64_t disp = target - static_cast<int64_t>(kScratchVa);
    const int32_t v = static_cast<int32_t>(imm(32));
    const uint8_t st[] = {0x41,
                          0xC7,
                          static_cast<uint8_t>(c32_ ? 0x85 : 0x87),
                          static_cast<uint8_t>(disp),
                          static_cast<uint8_t>(disp >> 8),
                          static_cast<uint8_t>(disp >> 16),
                          static_cast<uint8_t>(disp >> 24),
                          static_cast<uint8_t>(v),
                          static_cast<uint8_t>(v >> 8),
                          static_cast<uint8_t>(v >> 16),
                          static_cast<uint8_t>(v >> 24)};
    if (!append(c32_ ? st + 1 : st, st_len)) return false;
    return bytes({0x05, 0x11, 0x22, 0x33, 0x44});
  }
  // Instructions that fault at ring 3: the sequence ends there on both sides.
  bool fault_probe() {
    const unsigned r = pick_gpr();
    switch (rnd(9)) {
      case 8: {  // a read-modify-write of the unmapped page: #PF with W=1 in the error code
        static constexpr ZydisMnemonic kM[] = {ZYDIS_MNEMONIC_ADD, ZYDIS_MNEMONIC_XCHG,
                                               ZYDIS_MNEMONIC_XADD, ZYDIS_MNEMONIC_BTS};
        const unsigned w = pick_width(false);
        const ZydisMnemonic m = kM[rnd(4)];
        const ZydisEncoderOperand d =
            M(static_cast<int64_t>(kScratchSize + rnd(0x1000 - 8)), w / 8);
        // BTS takes an immediate bit offset here: a register offset could reach any address.
        if (m == ZYDIS_MNEMONIC_BTS) return enc(m, {d, I(static_cast<int64_t>(rnd(256)))});
        return enc(m, {d, R(gpr(w, pick_gpr()))});
      }
      case 0:
        return bytes({0x0F, 0x0B});  // UD2: #UD
      case 1:
        return bytes({0xF4});  // HLT at CPL 3: #GP(0)
      case 2:
        return bytes({0xFA});  // CLI with IOPL 0: #GP(0)
      case 3:
        return bytes({0xEC});  // IN AL, DX with IOPL 0 and no I/O bitmap: #GP(0)
      case 4:                  // a read from the unmapped page after the scratch pages: #PF
        return enc(
            ZYDIS_MNEMONIC_MOV,
            {R(gpr(nat_, r)), M(static_cast<int64_t>(kScratchSize + rnd(0x1000 - 8)), nat_ / 8)});
      case 5:  // a write that straddles into it: #PF at the guard page's first byte
        return enc(ZYDIS_MNEMONIC_MOV,
                   {M(static_cast<int64_t>(kScratchSize - 1 - rnd(nat_ / 8 - 1)), nat_ / 8),
                    R(gpr(nat_, r))});
      case 6: {  // a non-canonical address: #GP(0); in compatibility mode an unmapped one: #PF
        if (c32_) {
          const int64_t a = static_cast<int32_t>(0xFFFF0000u | (rng_() & 0xFFF8u));
          if (!enc(ZYDIS_MNEMONIC_MOV, {R(gpr(32, r)), I(a)})) return false;
          return enc(ZYDIS_MNEMONIC_MOV,
                     {R(gpr(32, pick_gpr())), Mx(0, 4, gpr(32, r), ZYDIS_REGISTER_NONE, 0)});
        }
        const uint64_t a = 0x8000000000000000ull | (rng_() & 0x0000FFFFFFFFFFF8ull);
        if (!enc(ZYDIS_MNEMONIC_MOV, {R(gpr(64, r)), I(static_cast<int64_t>(a))})) return false;
        return enc(ZYDIS_MNEMONIC_MOV,
                   {R(gpr(64, pick_gpr())), Mx(0, 8, gpr(64, r), ZYDIS_REGISTER_NONE, 0)});
      }
      default:  // divide by zero: #DE
        if (!enc(ZYDIS_MNEMONIC_MOV, {R(gpr(32, r)), I(0)})) return false;
        return enc(chance(50) ? ZYDIS_MNEMONIC_DIV : ZYDIS_MNEMONIC_IDIV, {R(gpr(big_width(), r))});
    }
  }

  std::mt19937_64 rng_;
  bool c32_;
  bool qemu_oracle_;
  ZydisMachineMode mode_;
  unsigned base_id_;  // the scratch base register: R15, or EBP in compatibility mode
  unsigned nat_;      // natural (stack / address) width: 64, or 32
  ZydisDecoder dec_;
  Sequence seq_;
  uint32_t undef_flags_ = 0;
  uint16_t undef_gprs_ = 0;
  int64_t rsp_off_ = 0;
  bool full_ = false;
  bool rule_set_ = false;
  uint32_t rule_written_ = 0, rule_undef_ = 0;
  uint16_t result_undef_ = 0;
  bool next_skippable_ = false;
};

}  // namespace apicv::cpu::difftest
