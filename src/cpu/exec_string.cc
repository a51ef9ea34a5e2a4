// String instructions (SDM vol. 2 MOVS/STOS/LODS/CMPS/SCAS/INS/OUTS, REP/REPE/REPNE): one
// iteration per execution. A REP instruction that has iterations left leaves RIP on itself, so
// it is interruptible after every iteration and restartable after a fault in the middle, exactly
// as the SDM describes; docs/cpu.md says how iterations count as retired instructions.
// The destination is always ES:rDI (no override); the source segment honours overrides.
#include "cpu/core.h"
#include "cpu/handlers.h"

namespace apicv::cpu {

namespace {

struct StringRegs {
  unsigned as;
  int64_t delta;
};

inline StringRegs regs_of(Core& c, const Insn& i) {
  const int64_t d = (c.s.rflags & kDF) ? -static_cast<int64_t>(i.src_size) : i.src_size;
  return {i.asz, d};
}

inline void advance(Core& c, uint8_t r, const StringRegs& sr) {
  c.set_reg(r, sr.as, c.reg(r, sr.as) + static_cast<uint64_t>(sr.delta));
}

// Before an iteration: false when a REP prefix has nothing left to do.
inline bool rep_start(Core& c, const Insn& i) {
  return !(i.flags & (kInsnRep | kInsnRepne)) || c.reg(kRcx, i.asz) != 0;
}

// After an iteration: decrement rCX and repeat the instruction while it should continue.
inline void rep_end(Core& c, const Insn& i, bool compares) {
  if (!(i.flags & (kInsnRep | kInsnRepne))) return;
  const uint64_t cx = (c.reg(kRcx, i.asz) - 1) & size_mask(i.asz);
  c.set_reg(kRcx, i.asz, cx);
  if (cx == 0) return;
  if (compares) {
    const bool zf = c.cond(4);
    if ((i.flags & kInsnRepne) ? zf : !zf) return;
  }
  c.next_rip = c.s.rip;
}

inline void sub_flags(Core& c, unsigned size, uint64_t a, uint64_t b) {
  const uint64_t m = size_mask(size);
  c.lf.op = LazyOp::kSub;
  c.lf.size = static_cast<uint8_t>(size);
  c.lf.a = a & m;
  c.lf.b = b & m;
  c.lf.res = (a - b) & m;
}

}  // namespace

void h_movs(Core& c, const Insn& i) {
  if (!rep_start(c, i)) return;
  const StringRegs sr = regs_of(c, i);
  const uint64_t v = c.rd(i.seg, c.reg(kRsi, sr.as), i.src_size);
  c.wr(kEs, c.reg(kRdi, sr.as), i.src_size, v);
  advance(c, kRsi, sr);
  advance(c, kRdi, sr);
  rep_end(c, i, false);
}

void h_stos(Core& c, const Insn& i) {
  if (!rep_start(c, i)) return;
  const StringRegs sr = regs_of(c, i);
  c.wr(kEs, c.reg(kRdi, sr.as), i.src_size, c.reg(kRax, i.src_size));
  advance(c, kRdi, sr);
  rep_end(c, i, false);
}

void h_lods(Core& c, const Insn& i) {
  if (!rep_start(c, i)) return;
  const StringRegs sr = regs_of(c, i);
  c.set_reg(kRax, i.src_size, c.rd(i.seg, c.reg(kRsi, sr.as), i.src_size));
  advance(c, kRsi, sr);
  rep_end(c, i, false);
}

void h_cmps(Core& c, const Insn& i) {
  if (!rep_start(c, i)) return;
  const StringRegs sr = regs_of(c, i);
  const uint64_t a = c.rd(i.seg, c.reg(kRsi, sr.as), i.src_size);
  const uint64_t b = c.rd(kEs, c.reg(kRdi, sr.as), i.src_size);
  sub_flags(c, i.src_size, a, b);
  advance(c, kRsi, sr);
  advance(c, kRdi, sr);
  rep_end(c, i, true);
}

void h_scas(Core& c, const Insn& i) {
  if (!rep_start(c, i)) return;
  const StringRegs sr = regs_of(c, i);
  const uint64_t b = c.rd(kEs, c.reg(kRdi, sr.as), i.src_size);
  sub_flags(c, i.src_size, c.reg(kRax, i.src_size), b);
  advance(c, kRdi, sr);
  rep_end(c, i, true);
}

void h_ins(Core& c, const Insn& i) {
  if (!rep_start(c, i)) return;
  const StringRegs sr = regs_of(c, i);
  const uint16_t port = static_cast<uint16_t>(c.s.gpr[kRdx]);
  c.check_io(port, i.src_size);
  // The destination is checked before the port is read (a fault must not lose the data).
  const uint64_t dst = c.reg(kRdi, sr.as);
  c.wr(kEs, dst, i.src_size, c.rd(kEs, dst, i.src_size));
  const uint32_t v = c.host.pio_in(port, i.src_size);
  c.wr(kEs, dst, i.src_size, v);
  advance(c, kRdi, sr);
  c.exit_after = true;
  rep_end(c, i, false);
}

void h_outs(Core& c, const Insn& i) {
  if (!rep_start(c, i)) return;
  const StringRegs sr = regs_of(c, i);
  const uint16_t port = static_cast<uint16_t>(c.s.gpr[kRdx]);
  c.check_io(port, i.src_size);
  const uint64_t v = c.rd(i.seg, c.reg(kRsi, sr.as), i.src_size);
  c.host.pio_out(port, i.src_size, static_cast<uint32_t>(v));
  advance(c, kRsi, sr);
  c.exit_after = true;
  rep_end(c, i, false);
}

}  // namespace apicv::cpu
