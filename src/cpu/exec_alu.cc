// Integer instructions: ALU with exact flags (SDM vol. 1 appendix A; vol. 2 per instruction),
// shifts and rotates with the count-masking, count-zero and OF rules, MUL/IMUL/DIV/IDIV (#DE),
// bit tests and scans, conditional moves/sets, flag instructions, the BCD adjusts, XLAT.
// Undefined flags are given the values documented in tests/cpu (the differential test masks them).
#include <bit>

#include "cpu/core.h"
#include "cpu/handlers.h"

namespace apicv::cpu {

namespace {

inline void lazy(Core& c, LazyOp op, unsigned size, uint64_t res, uint64_t a, uint64_t b) {
  c.lf.op = op;
  c.lf.size = static_cast<uint8_t>(size);
  c.lf.res = res;
  c.lf.a = a;
  c.lf.b = b;
}

// Sets the arithmetic flags to exactly `f` (the others are kept).
inline void put_arith(Core& c, uint64_t f) {
  const uint64_t cur = c.flags();
  c.s.rflags = (cur & ~kArithFlags) | (f & kArithFlags);
}

inline uint64_t szp(uint64_t res, unsigned size) {
  const uint64_t r = res & size_mask(size);
  uint64_t f = 0;
  if (r == 0) f |= kZF;
  if (r & sign_bit(size)) f |= kSF;
  if (parity_even(r)) f |= kPF;
  return f;
}

template <AluOp Op>
inline uint64_t alu(Core& c, unsigned size, uint64_t a, uint64_t b) {
  const uint64_t m = size_mask(size);
  a &= m;
  b &= m;
  uint64_t r;
  switch (Op) {
    case AluOp::kAdd: r = a + b; lazy(c, LazyOp::kAdd, size, r, a, b); break;
    case AluOp::kAdc: {
      const uint64_t cf = c.flags() & kCF;
      r = a + b + cf;
      lazy(c, LazyOp::kAdd, size, r, a, b);
      break;
    }
    case AluOp::kSub:
    case AluOp::kCmp: r = a - b; lazy(c, LazyOp::kSub, size, r, a, b); break;
    case AluOp::kSbb: {
      const uint64_t cf = c.flags() & kCF;
      r = a - b - cf;
      lazy(c, LazyOp::kSub, size, r, a, b);
      break;
    }
    case AluOp::kAnd:
    case AluOp::kTest: r = a & b; lazy(c, LazyOp::kLogic, size, r, a, b); break;
    case AluOp::kOr: r = a | b; lazy(c, LazyOp::kLogic, size, r, a, b); break;
    default: r = a ^ b; lazy(c, LazyOp::kLogic, size, r, a, b); break;
  }
  return r & m;
}

template <AluOp Op, Form F>
void h_alu(Core& c, const Insn& i) {
  constexpr bool kWrites = Op != AluOp::kCmp && Op != AluOp::kTest;
  const unsigned sz = i.osz;
  if constexpr (F == Form::kRegRm) {
    const uint64_t b = c.rm_read(i, sz);
    const uint64_t r = alu<Op>(c, sz, c.reg(i.reg, sz), b);
    if (kWrites) c.set_reg(i.reg, sz, r);
    return;
  }
  const uint64_t b = F == Form::kRmImm ? i.imm : c.reg(i.reg, sz);
  if (!i.is_mem()) {
    const uint64_t r = alu<Op>(c, sz, c.reg(i.rm, sz), b);
    if (kWrites) c.set_reg(i.rm, sz, r);
    return;
  }
  const uint64_t addr = c.ea(i);
  if (kWrites && (i.flags & kInsnLock)) {
    // ADC/SBB read CF once, outside the retry loop.
    const uint64_t cf = c.flags() & kCF;
    const uint64_t m = size_mask(sz);
    const uint64_t old = c.locked_rmw(i.seg, addr, sz, [&](uint64_t a) -> uint64_t {
      switch (Op) {
        case AluOp::kAdd: return (a + b) & m;
        case AluOp::kAdc: return (a + b + cf) & m;
        case AluOp::kSub: return (a - b) & m;
        case AluOp::kSbb: return (a - b - cf) & m;
        case AluOp::kAnd: return a & b & m;
        case AluOp::kOr: return (a | b) & m;
        default: return (a ^ b) & m;
      }
    });
    alu<Op>(c, sz, old, b);
    return;
  }
  const uint64_t a = kWrites ? c.rd_rmw(i.seg, addr, sz) : c.rd(i.seg, addr, sz);
  const uint64_t r = alu<Op>(c, sz, a, b);
  if (kWrites) c.wr(i.seg, addr, sz, r);
}

template <AluOp Op>
Handler alu_forms(Form f) {
  switch (f) {
    case Form::kRmReg: return h_alu<Op, Form::kRmReg>;
    case Form::kRegRm: return h_alu<Op, Form::kRegRm>;
    default: return h_alu<Op, Form::kRmImm>;
  }
}

// Read-modify-write of the r/m operand, locked when the instruction has LOCK.
template <typename F>
uint64_t rmw(Core& c, const Insn& i, unsigned sz, F op) {
  if (!i.is_mem()) {
    const uint64_t a = c.reg(i.rm, sz);
    c.set_reg(i.rm, sz, op(a));
    return a;
  }
  const uint64_t addr = c.ea(i);
  if (i.flags & kInsnLock) return c.locked_rmw(i.seg, addr, sz, op);
  const uint64_t a = c.rd_rmw(i.seg, addr, sz);
  c.wr(i.seg, addr, sz, op(a));
  return a;
}

// ---- shifts and rotates
template <ShiftOp Op, ShiftCount C>
void h_shift(Core& c, const Insn& i) {
  const unsigned sz = i.osz, w = sz * 8;
  const uint64_t m = size_mask(sz), sb = sign_bit(sz);
  unsigned cnt = static_cast<unsigned>(C == ShiftCount::kCl ? c.s.gpr[kRcx] : i.imm);
  cnt &= (sz == 8 ? 0x3F : 0x1F);
  const uint64_t addr = i.is_mem() ? c.ea(i) : 0;
  const uint64_t a = (i.is_mem() ? c.rd_rmw(i.seg, addr, sz) : c.reg(i.rm, sz)) & m;
  auto store = [&](uint64_t r) {
    if (i.is_mem()) {
      c.wr(i.seg, addr, sz, r & m);
    } else {
      c.set_reg(i.rm, sz, r & m);
    }
  };
  if (cnt == 0) {
    store(a);
    return;
  }
  uint64_t f = c.flags() & kArithFlags;
  uint64_t r = 0;
  switch (Op) {
    case ShiftOp::kShl:
    case ShiftOp::kSal: {
      r = cnt >= w ? 0 : (a << cnt) & m;
      const bool cf = cnt <= w ? ((a >> (w - cnt)) & 1) != 0 : false;
      f = szp(r, sz) | (cf ? kCF : 0);
      if (((r & sb) != 0) != cf) f |= kOF;
      break;
    }
    case ShiftOp::kShr: {
      r = cnt >= w ? 0 : a >> cnt;
      const bool cf = cnt <= w ? ((a >> (cnt - 1)) & 1) != 0 : false;
      f = szp(r, sz) | (cf ? kCF : 0);
      if (cnt == 1 ? (a & sb) != 0 : false) f |= kOF;
      break;
    }
    case ShiftOp::kSar: {
      const int64_t sa = sign_extend(a, sz);
      r = static_cast<uint64_t>(sa >> (cnt >= w ? w - 1 : cnt)) & m;
      const bool cf = ((static_cast<uint64_t>(sa >> (cnt > w ? w - 1 : cnt - 1))) & 1) != 0;
      f = szp(r, sz) | (cf ? kCF : 0);
      break;
    }
    case ShiftOp::kRol: {
      const unsigned n = cnt % w;
      r = n == 0 ? a : ((a << n) | (a >> (w - n))) & m;
      const bool cf = (r & 1) != 0;
      f = (f & ~(kCF | kOF)) | (cf ? kCF : 0);
      if (((r & sb) != 0) != cf) f |= kOF;
      break;
    }
    case ShiftOp::kRor: {
      const unsigned n = cnt % w;
      r = n == 0 ? a : ((a >> n) | (a << (w - n))) & m;
      const bool msb = (r & sb) != 0, msb1 = (r & (sb >> 1)) != 0;
      f = (f & ~(kCF | kOF)) | (msb ? kCF : 0) | (msb != msb1 ? kOF : 0);
      break;
    }
    case ShiftOp::kRcl: {
      const unsigned n = sz == 1 ? cnt % 9 : sz == 2 ? cnt % 17 : cnt;
      uint64_t cf = (f & kCF) ? 1 : 0;
      r = a;
      for (unsigned k = 0; k < n; ++k) {
        const uint64_t out = (r >> (w - 1)) & 1;
        r = ((r << 1) | cf) & m;
        cf = out;
      }
      f = (f & ~(kCF | kOF)) | (cf ? kCF : 0);
      if ((((r & sb) != 0) ? 1u : 0u) != cf) f |= kOF;
      break;
    }
    case ShiftOp::kRcr: {
      const unsigned n = sz == 1 ? cnt % 9 : sz == 2 ? cnt % 17 : cnt;
      uint64_t cf = (f & kCF) ? 1 : 0;
      const bool of = (((a & sb) != 0) ? 1u : 0u) != cf;
      r = a;
      for (unsigned k = 0; k < n; ++k) {
        const uint64_t out = r & 1;
        r = (r >> 1) | (cf << (w - 1));
        cf = out;
      }
      f = (f & ~(kCF | kOF)) | (cf ? kCF : 0) | (of ? kOF : 0);
      break;
    }
  }
  store(r);
  put_arith(c, f);
}

template <ShiftOp Op>
Handler shift_counts(ShiftCount cnt) {
  return cnt == ShiftCount::kCl ? h_shift<Op, ShiftCount::kCl> : h_shift<Op, ShiftCount::kImm>;
}

// ---- bit tests
template <BitOp Op, bool Imm>
void h_bit(Core& c, const Insn& i) {
  const unsigned sz = i.osz, w = sz * 8;
  uint64_t off = Imm ? i.imm : c.reg(i.reg, sz);
  auto apply = [&](uint64_t a, unsigned bit) -> uint64_t {
    switch (Op) {
      case BitOp::kBts: return a | (1ull << bit);
      case BitOp::kBtr: return a & ~(1ull << bit);
      case BitOp::kBtc: return a ^ (1ull << bit);
      default: return a;
    }
  };
  uint64_t old;
  unsigned bit;
  if (!i.is_mem()) {
    bit = static_cast<unsigned>(off & (w - 1));
    old = c.reg(i.rm, sz);
    if (Op != BitOp::kBt) c.set_reg(i.rm, sz, apply(old, bit));
  } else {
    uint64_t addr = c.ea(i);
    if (Imm) {
      bit = static_cast<unsigned>(off & (w - 1));
    } else {
      // A register bit offset addresses memory beyond the operand (signed, SDM "BT").
      const int64_t so = sign_extend(off, sz);
      const int64_t unit = so >= 0 ? so / w : -((-so + w - 1) / static_cast<int64_t>(w));
      addr += static_cast<uint64_t>(unit * static_cast<int64_t>(sz));
      if (i.asz == 4) addr &= 0xFFFFFFFFu;
      if (i.asz == 2) addr &= 0xFFFF;
      bit = static_cast<unsigned>(so - unit * static_cast<int64_t>(w));
    }
    if (Op == BitOp::kBt) {
      old = c.rd(i.seg, addr, sz);
    } else if (i.flags & kInsnLock) {
      old = c.locked_rmw(i.seg, addr, sz, [&](uint64_t a) { return apply(a, bit); });
    } else {
      old = c.rd_rmw(i.seg, addr, sz);
      c.wr(i.seg, addr, sz, apply(old, bit));
    }
  }
  const uint64_t f = c.flags();
  c.s.rflags = (f & ~kCF) | (((old >> bit) & 1) ? kCF : 0);
}

template <BitOp Op>
Handler bit_forms(bool imm) {
  return imm ? h_bit<Op, true> : h_bit<Op, false>;
}

}  // namespace

Handler alu_handler(AluOp op, Form form) {
  switch (op) {
    case AluOp::kAdd: return alu_forms<AluOp::kAdd>(form);
    case AluOp::kOr: return alu_forms<AluOp::kOr>(form);
    case AluOp::kAdc: return alu_forms<AluOp::kAdc>(form);
    case AluOp::kSbb: return alu_forms<AluOp::kSbb>(form);
    case AluOp::kAnd: return alu_forms<AluOp::kAnd>(form);
    case AluOp::kSub: return alu_forms<AluOp::kSub>(form);
    case AluOp::kXor: return alu_forms<AluOp::kXor>(form);
    case AluOp::kCmp: return alu_forms<AluOp::kCmp>(form);
    default: return alu_forms<AluOp::kTest>(form);
  }
}

Handler shift_handler(ShiftOp op, ShiftCount cnt) {
  switch (op) {
    case ShiftOp::kRol: return shift_counts<ShiftOp::kRol>(cnt);
    case ShiftOp::kRor: return shift_counts<ShiftOp::kRor>(cnt);
    case ShiftOp::kRcl: return shift_counts<ShiftOp::kRcl>(cnt);
    case ShiftOp::kRcr: return shift_counts<ShiftOp::kRcr>(cnt);
    case ShiftOp::kShl:
    case ShiftOp::kSal: return shift_counts<ShiftOp::kShl>(cnt);
    case ShiftOp::kShr: return shift_counts<ShiftOp::kShr>(cnt);
    default: return shift_counts<ShiftOp::kSar>(cnt);
  }
}

Handler bit_handler(BitOp op, bool imm) {
  switch (op) {
    case BitOp::kBt: return bit_forms<BitOp::kBt>(imm);
    case BitOp::kBts: return bit_forms<BitOp::kBts>(imm);
    case BitOp::kBtr: return bit_forms<BitOp::kBtr>(imm);
    default: return bit_forms<BitOp::kBtc>(imm);
  }
}

void h_inc(Core& c, const Insn& i) {
  const unsigned sz = i.osz;
  const bool cf = c.carry();  // INC keeps CF
  const uint64_t a = rmw(c, i, sz, [&](uint64_t v) { return (v + 1) & size_mask(sz); });
  lazy(c, LazyOp::kInc, sz, (a + 1) & size_mask(sz), a, 1);
  c.lf.cf = cf;
}

void h_dec(Core& c, const Insn& i) {
  const unsigned sz = i.osz;
  const bool cf = c.carry();
  const uint64_t a = rmw(c, i, sz, [&](uint64_t v) { return (v - 1) & size_mask(sz); });
  lazy(c, LazyOp::kDec, sz, (a - 1) & size_mask(sz), a, 1);
  c.lf.cf = cf;
}

void h_neg(Core& c, const Insn& i) {
  const unsigned sz = i.osz;
  const uint64_t a = rmw(c, i, sz, [&](uint64_t v) { return (0 - v) & size_mask(sz); });
  lazy(c, LazyOp::kSub, sz, (0 - a) & size_mask(sz), 0, a);
}

void h_not(Core& c, const Insn& i) {
  const unsigned sz = i.osz;
  rmw(c, i, sz, [&](uint64_t v) { return ~v & size_mask(sz); });
}

void h_mov_rm_reg(Core& c, const Insn& i) { c.rm_write(i, i.osz, c.reg(i.reg, i.osz)); }
void h_mov_reg_rm(Core& c, const Insn& i) { c.set_reg(i.reg, i.osz, c.rm_read(i, i.osz)); }
void h_mov_rm_imm(Core& c, const Insn& i) { c.rm_write(i, i.osz, i.imm); }
void h_mov_reg_imm(Core& c, const Insn& i) { c.set_reg(i.rm, i.osz, i.imm); }
void h_mov_reg_reg(Core& c, const Insn& i) { c.set_reg(i.rm, i.osz, c.reg(i.reg, i.osz)); }
void h_mov_acc_moffs(Core& c, const Insn& i) { c.set_reg(kRax, i.osz, c.rm_read(i, i.osz)); }

void h_movzx(Core& c, const Insn& i) { c.set_reg(i.reg, i.osz, c.rm_read(i, i.src_size)); }
void h_movsx(Core& c, const Insn& i) {
  const uint64_t v = c.rm_read(i, i.src_size);
  c.set_reg(i.reg, i.osz, static_cast<uint64_t>(sign_extend(v, i.src_size)));
}

void h_lea(Core& c, const Insn& i) { c.set_reg(i.reg, i.osz, c.ea(i)); }

void h_xchg(Core& c, const Insn& i) {
  const unsigned sz = i.osz;
  const uint64_t b = c.reg(i.reg, sz);
  if (!i.is_mem()) {
    const uint64_t a = c.reg(i.rm, sz);
    c.set_reg(i.rm, sz, b);
    c.set_reg(i.reg, sz, a);
    return;
  }
  // XCHG with memory is always locked (SDM vol. 2 "XCHG").
  const uint64_t old = c.locked_rmw(i.seg, c.ea(i), sz, [&](uint64_t) { return b; });
  c.set_reg(i.reg, sz, old);
}

void h_xadd(Core& c, const Insn& i) {
  const unsigned sz = i.osz;
  const uint64_t b = c.reg(i.reg, sz);
  uint64_t a;
  if (!i.is_mem()) {
    // The sum is written last: `xadd r, r` leaves the sum in r (SDM: TEMP <- SRC + DEST;
    // SRC <- DEST; DEST <- TEMP).
    a = c.reg(i.rm, sz);
    c.set_reg(i.reg, sz, a);
    c.set_reg(i.rm, sz, (a + b) & size_mask(sz));
  } else {
    a = rmw(c, i, sz, [&](uint64_t v) { return (v + b) & size_mask(sz); });
    c.set_reg(i.reg, sz, a);
  }
  lazy(c, LazyOp::kAdd, sz, (a + b) & size_mask(sz), a, b);
}

void h_cmpxchg(Core& c, const Insn& i) {
  const unsigned sz = i.osz;
  const uint64_t acc = c.reg(kRax, sz), src = c.reg(i.reg, sz);
  uint64_t old;
  if (!i.is_mem()) {
    old = c.reg(i.rm, sz);
    if (old == acc) c.set_reg(i.rm, sz, src);
  } else if (i.flags & kInsnLock) {
    old = c.locked_rmw(i.seg, c.ea(i), sz, [&](uint64_t v) { return v == acc ? src : v; });
  } else {
    const uint64_t addr = c.ea(i);
    old = c.rd_rmw(i.seg, addr, sz);
    c.wr(i.seg, addr, sz, old == acc ? src : old);  // the processor always writes
  }
  lazy(c, LazyOp::kSub, sz, (acc - old) & size_mask(sz), acc, old);
  if (old != acc) c.set_reg(kRax, sz, old);
}

void h_cmpxchg8b(Core& c, const Insn& i) {
  const uint64_t addr = c.ea(i);
  bool equal;
  if (i.osz == 8) {
    const uint64_t expect = (c.reg(kRdx, 4) << 32) | c.reg(kRax, 4);
    const uint64_t desired = (c.reg(kRcx, 4) << 32) | c.reg(kRbx, 4);
    uint64_t old;
    if (i.flags & kInsnLock) {
      old = c.locked_rmw(i.seg, addr, 8, [&](uint64_t v) { return v == expect ? desired : v; });
    } else {
      old = c.rd_rmw(i.seg, addr, 8);
      c.wr(i.seg, addr, 8, old == expect ? desired : old);
    }
    equal = old == expect;
    if (!equal) {
      c.set_reg(kRax, 4, old & 0xFFFFFFFFu);
      c.set_reg(kRdx, 4, old >> 32);
    }
  } else {
    const uint64_t lin = c.linear(i.seg, addr, 16, true);
    if (lin & 15) c.fault(kExcGP, 0);
    std::lock_guard<std::mutex> g(c.ram.split_lock());
    const uint64_t lo = c.read_lin(lin, 8, c.user_access()), hi = c.read_lin(lin + 8, 8, c.user_access());
    equal = lo == c.s.gpr[kRax] && hi == c.s.gpr[kRdx];
    if (equal) {
      c.write_lin(lin, 8, c.s.gpr[kRbx], c.user_access());
      c.write_lin(lin + 8, 8, c.s.gpr[kRcx], c.user_access());
    } else {
      c.write_lin(lin, 8, lo, c.user_access());
      c.write_lin(lin + 8, 8, hi, c.user_access());
      c.s.gpr[kRax] = lo;
      c.s.gpr[kRdx] = hi;
    }
  }
  const uint64_t f = c.flags();
  c.s.rflags = (f & ~kZF) | (equal ? kZF : 0);
}

void h_bswap(Core& c, const Insn& i) {
  if (i.osz == 8) {
    c.set_reg(i.rm, 8, __builtin_bswap64(c.reg(i.rm, 8)));
  } else if (i.osz == 4) {
    c.set_reg(i.rm, 4, __builtin_bswap32(static_cast<uint32_t>(c.reg(i.rm, 4))));
  } else {
    c.set_reg(i.rm, 2, 0);  // BSWAP r16 is undefined; it clears the register on Intel and AMD
  }
}

void h_mul(Core& c, const Insn& i) {
  const unsigned sz = i.osz;
  const uint64_t b = c.rm_read(i, sz);
  bool hi_nonzero;
  uint64_t lo;
  if (sz == 1) {
    const uint64_t r = (c.reg(kRax, 1)) * b;
    c.set_reg(kRax, 2, r);
    hi_nonzero = (r >> 8) != 0;
    lo = r & 0xFF;
  } else {
    const unsigned __int128 r = static_cast<unsigned __int128>(c.reg(kRax, sz)) * b;
    lo = static_cast<uint64_t>(r) & size_mask(sz);
    const uint64_t hi = static_cast<uint64_t>(r >> (sz * 8)) & size_mask(sz);
    c.set_reg(kRax, sz, lo);
    c.set_reg(kRdx, sz, hi);
    hi_nonzero = hi != 0;
  }
  put_arith(c, szp(lo, sz) | (hi_nonzero ? (kCF | kOF) : 0));
}

void h_imul1(Core& c, const Insn& i) {
  const unsigned sz = i.osz;
  const __int128 a = sign_extend(c.reg(kRax, sz), sz), b = sign_extend(c.rm_read(i, sz), sz);
  const __int128 r = a * b;
  const uint64_t lo = static_cast<uint64_t>(r) & size_mask(sz);
  const bool ovf = r != sign_extend(lo, sz);
  if (sz == 1) {
    c.set_reg(kRax, 2, static_cast<uint64_t>(r) & 0xFFFF);
  } else {
    c.set_reg(kRax, sz, lo);
    c.set_reg(kRdx, sz, static_cast<uint64_t>(r >> (sz * 8)));
  }
  put_arith(c, szp(lo, sz) | (ovf ? (kCF | kOF) : 0));
}

namespace {
void imul_into(Core& c, const Insn& i, uint64_t x, uint64_t y) {
  const unsigned sz = i.osz;
  const __int128 r = static_cast<__int128>(sign_extend(x, sz)) * sign_extend(y, sz);
  const uint64_t lo = static_cast<uint64_t>(r) & size_mask(sz);
  const bool ovf = r != sign_extend(lo, sz);
  c.set_reg(i.reg, sz, lo);
  put_arith(c, szp(lo, sz) | (ovf ? (kCF | kOF) : 0));
}
}  // namespace

void h_imul2(Core& c, const Insn& i) { imul_into(c, i, c.reg(i.reg, i.osz), c.rm_read(i, i.osz)); }
void h_imul3(Core& c, const Insn& i) { imul_into(c, i, c.rm_read(i, i.osz), i.imm); }

void h_div(Core& c, const Insn& i) {
  const unsigned sz = i.osz;
  const uint64_t d = c.rm_read(i, sz);
  if (d == 0) c.fault(kExcDE);
  if (sz == 1) {
    const uint64_t n = c.reg(kRax, 2);
    const uint64_t q = n / d;
    if (q > 0xFF) c.fault(kExcDE);
    c.set_reg(kRax, 2, ((n % d) << 8) | q);
    return;
  }
  const unsigned __int128 n =
      (static_cast<unsigned __int128>(c.reg(kRdx, sz)) << (sz * 8)) | c.reg(kRax, sz);
  const unsigned __int128 q = n / d;
  if ((q >> (sz * 8)) != 0) c.fault(kExcDE);
  c.set_reg(kRax, sz, static_cast<uint64_t>(q));
  c.set_reg(kRdx, sz, static_cast<uint64_t>(n % d));
}

void h_idiv(Core& c, const Insn& i) {
  const unsigned sz = i.osz;
  const int64_t d = sign_extend(c.rm_read(i, sz), sz);
  if (d == 0) c.fault(kExcDE);
  __int128 n;
  if (sz == 1) {
    n = sign_extend(c.reg(kRax, 2), 2);
  } else {
    const unsigned __int128 u =
        (static_cast<unsigned __int128>(c.reg(kRdx, sz)) << (sz * 8)) | c.reg(kRax, sz);
    const unsigned sh = 128 - 2 * sz * 8;
    n = static_cast<__int128>(u << sh) >> sh;
  }
  // INT128_MIN / -1 cannot happen: n has at most 2*64 significant bits only for sz = 8.
  if (sz == 8 && d == -1 && n == (static_cast<__int128>(1) << 127)) c.fault(kExcDE);
  const __int128 q = n / d, r = n % d;
  const __int128 qmax = (static_cast<__int128>(1) << (sz * 8 - 1)) - 1;
  if (q > qmax || q < -qmax - 1) c.fault(kExcDE);
  if (sz == 1) {
    c.set_reg(kRax, 2, ((static_cast<uint64_t>(r) & 0xFF) << 8) | (static_cast<uint64_t>(q) & 0xFF));
    return;
  }
  c.set_reg(kRax, sz, static_cast<uint64_t>(q));
  c.set_reg(kRdx, sz, static_cast<uint64_t>(r));
}

void h_cbw(Core& c, const Insn& i) {
  const unsigned half = i.osz / 2;
  c.set_reg(kRax, i.osz, static_cast<uint64_t>(sign_extend(c.reg(kRax, half), half)));
}

void h_cwd(Core& c, const Insn& i) {
  const bool neg = (c.reg(kRax, i.osz) & sign_bit(i.osz)) != 0;
  c.set_reg(kRdx, i.osz, neg ? ~0ull : 0);
}

namespace {
void double_shift(Core& c, const Insn& i, bool left) {
  const unsigned sz = i.osz, w = sz * 8;
  const uint64_t m = size_mask(sz);
  unsigned cnt = static_cast<unsigned>(i.op ? c.s.gpr[kRcx] : i.imm) & (sz == 8 ? 0x3F : 0x1F);
  const uint64_t addr = i.is_mem() ? c.ea(i) : 0;
  const uint64_t a = (i.is_mem() ? c.rd_rmw(i.seg, addr, sz) : c.reg(i.rm, sz)) & m;
  const uint64_t b = c.reg(i.reg, sz);
  auto store = [&](uint64_t r) {
    if (i.is_mem()) {
      c.wr(i.seg, addr, sz, r);
    } else {
      c.set_reg(i.rm, sz, r);
    }
  };
  if (cnt == 0) {
    store(a);
    return;
  }
  // 16-bit operands with a count above 16 are undefined; model them as a 32-bit funnel like Intel.
  uint64_t r;
  bool cf;
  if (sz == 2) {
    const uint64_t x = left ? ((a << 16) | b) : ((b << 16) | a);
    const uint64_t wide = left ? ((x << 16) | b) : ((a << 32) | x);
    if (left) {
      r = (x << cnt) >> 16 & 0xFFFF;
      cf = ((x << cnt) >> 32) & 1;
      (void)wide;
    } else {
      const uint64_t y = (static_cast<uint64_t>(b) << 32) | (b << 16) | a;
      r = (y >> cnt) & 0xFFFF;
      cf = (y >> (cnt - 1)) & 1;
    }
  } else if (left) {
    r = ((a << cnt) | (b >> (w - cnt))) & m;
    cf = (a >> (w - cnt)) & 1;
  } else {
    r = ((a >> cnt) | (b << (w - cnt))) & m;
    cf = (a >> (cnt - 1)) & 1;
  }
  store(r);
  uint64_t f = szp(r, sz) | (cf ? kCF : 0);
  if (((r ^ a) & sign_bit(sz)) != 0) f |= kOF;  // defined for count 1: the sign changed
  put_arith(c, f);
}
}  // namespace

void h_shld(Core& c, const Insn& i) { double_shift(c, i, true); }
void h_shrd(Core& c, const Insn& i) { double_shift(c, i, false); }

void h_bsf(Core& c, const Insn& i) {
  const uint64_t v = c.rm_read(i, i.osz);
  uint64_t f = c.flags() & kArithFlags;
  if (v == 0) {
    f |= kZF;
  } else {
    f &= ~kZF;
    c.set_reg(i.reg, i.osz, static_cast<uint64_t>(std::countr_zero(v)));
  }
  put_arith(c, f);
}

void h_bsr(Core& c, const Insn& i) {
  const uint64_t v = c.rm_read(i, i.osz);
  uint64_t f = c.flags() & kArithFlags;
  if (v == 0) {
    f |= kZF;
  } else {
    f &= ~kZF;
    c.set_reg(i.reg, i.osz, static_cast<uint64_t>(63 - std::countl_zero(v)));
  }
  put_arith(c, f);
}

void h_tzcnt(Core& c, const Insn& i) {
  const uint64_t v = c.rm_read(i, i.osz);
  const uint64_t r = v == 0 ? i.osz * 8u : static_cast<uint64_t>(std::countr_zero(v));
  c.set_reg(i.reg, i.osz, r);
  uint64_t f = c.flags() & kArithFlags & ~(kCF | kZF);
  put_arith(c, f | (v == 0 ? kCF : 0) | (r == 0 ? kZF : 0));
}

void h_lzcnt(Core& c, const Insn& i) {
  const uint64_t v = c.rm_read(i, i.osz);
  const unsigned w = i.osz * 8;
  const uint64_t r = v == 0 ? w : static_cast<uint64_t>(std::countl_zero(v) - (64 - w));
  c.set_reg(i.reg, i.osz, r);
  uint64_t f = c.flags() & kArithFlags & ~(kCF | kZF);
  put_arith(c, f | (v == 0 ? kCF : 0) | (r == 0 ? kZF : 0));
}

void h_popcnt(Core& c, const Insn& i) {
  const uint64_t v = c.rm_read(i, i.osz);
  c.set_reg(i.reg, i.osz, static_cast<uint64_t>(std::popcount(v)));
  put_arith(c, v == 0 ? kZF : 0);
}

void h_setcc(Core& c, const Insn& i) { c.rm_write(i, 1, c.cond(i.op) ? 1 : 0); }

void h_cmovcc(Core& c, const Insn& i) {
  const uint64_t v = c.rm_read(i, i.osz);  // the source is read (and may fault) either way
  c.set_reg(i.reg, i.osz, c.cond(i.op) ? v : c.reg(i.reg, i.osz));
}

void h_clc(Core& c, const Insn&) { c.s.rflags = c.flags() & ~kCF; }
void h_stc(Core& c, const Insn&) { c.s.rflags = c.flags() | kCF; }
void h_cmc(Core& c, const Insn&) { c.s.rflags = c.flags() ^ kCF; }
void h_cld(Core& c, const Insn&) { c.s.rflags &= ~kDF; }
void h_std(Core& c, const Insn&) { c.s.rflags |= kDF; }

void h_lahf(Core& c, const Insn&) {
  c.set_reg(16 + kRax, 1, (c.flags() & (kSF | kZF | kAF | kPF | kCF)) | 2);
}

void h_sahf(Core& c, const Insn&) {
  const uint64_t ah = c.reg(16 + kRax, 1);
  c.s.rflags = (c.flags() & ~(kSF | kZF | kAF | kPF | kCF)) | (ah & (kSF | kZF | kAF | kPF | kCF));
}

// BCD adjusts (invalid in 64-bit mode: the decoder reports them as #UD there).
void h_aaa(Core& c, const Insn&) {
  uint64_t f = c.flags();
  uint64_t ax = c.reg(kRax, 2);
  if ((ax & 0xF) > 9 || (f & kAF)) {
    ax = (ax + 0x106) & 0xFFFF;
    f |= kAF | kCF;
  } else {
    f &= ~(kAF | kCF);
  }
  c.set_reg(kRax, 2, ax & 0xFF0F);
  c.s.rflags = (f & ~(kSF | kZF | kPF | kOF)) | szp(ax & 0x0F, 1);
}

void h_aas(Core& c, const Insn&) {
  uint64_t f = c.flags();
  uint64_t ax = c.reg(kRax, 2);
  if ((ax & 0xF) > 9 || (f & kAF)) {
    ax = (ax - 6) & 0xFFFF;
    ax = (ax & 0xFF) | ((((ax >> 8) - 1) & 0xFF) << 8);
    f |= kAF | kCF;
  } else {
    f &= ~(kAF | kCF);
  }
  c.set_reg(kRax, 2, ax & 0xFF0F);
  c.s.rflags = (f & ~(kSF | kZF | kPF | kOF)) | szp(ax & 0x0F, 1);
}

void h_daa(Core& c, const Insn&) {
  uint64_t f = c.flags();
  const uint64_t old_al = c.reg(kRax, 1);
  const bool old_cf = f & kCF;
  uint64_t al = old_al;
  f &= ~kCF;
  if ((al & 0xF) > 9 || (f & kAF)) {
    al = (al + 6) & 0xFF;
    f |= kAF;
    if (old_cf || old_al > 0xF9) f |= kCF;
  } else {
    f &= ~kAF;
  }
  if (old_al > 0x99 || old_cf) {
    al = (al + 0x60) & 0xFF;
    f |= kCF;
  }
  c.set_reg(kRax, 1, al);
  c.s.rflags = (f & ~(kSF | kZF | kPF | kOF)) | szp(al, 1);
}

void h_das(Core& c, const Insn&) {
  uint64_t f = c.flags();
  const uint64_t old_al = c.reg(kRax, 1);
  const bool old_cf = f & kCF;
  uint64_t al = old_al;
  f &= ~kCF;
  if ((al & 0xF) > 9 || (f & kAF)) {
    al = (al - 6) & 0xFF;
    f |= kAF;
    if (old_cf || old_al < 6) f |= kCF;
  } else {
    f &= ~kAF;
  }
  if (old_al > 0x99 || old_cf) {
    al = (al - 0x60) & 0xFF;
    f |= kCF;
  }
  c.set_reg(kRax, 1, al);
  c.s.rflags = (f & ~(kSF | kZF | kPF | kOF)) | szp(al, 1);
}

void h_aam(Core& c, const Insn& i) {
  if (i.imm == 0) c.fault(kExcDE);
  const uint64_t al = c.reg(kRax, 1);
  const uint64_t r = al % i.imm;
  c.set_reg(kRax, 2, ((al / i.imm) << 8) | r);
  put_arith(c, szp(r, 1));
}

void h_aad(Core& c, const Insn& i) {
  const uint64_t al = (c.reg(kRax, 1) + c.reg(16 + kRax, 1) * i.imm) & 0xFF;
  c.set_reg(kRax, 2, al);
  put_arith(c, szp(al, 1));
}

void h_xlat(Core& c, const Insn& i) {
  const uint64_t addr = (c.reg(kRbx, i.asz) + c.reg(kRax, 1)) & size_mask(i.asz);
  c.set_reg(kRax, 1, c.rd(i.seg, addr, 1));
}

void h_nop(Core&, const Insn&) {}
void h_ud(Core& c, const Insn&) { c.fault(kExcUD); }

}  // namespace apicv::cpu
