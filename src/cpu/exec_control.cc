// Control transfer and stack instructions (SDM vol. 2: JMP, Jcc, CALL, RET, LOOP/JCXZ, PUSH/POP
// and their flag/all-register/segment forms, ENTER/LEAVE, INT n/INT3/INTO/INT1, IRET, BOUND).
// Far transfers and event delivery are in segments.cc and events.cc.
// Not supported: ENTER with nesting level > 0 copies frame pointers as the SDM describes but
// is untested against hardware.
#include "cpu/core.h"
#include "cpu/handlers.h"

namespace apicv::cpu {

void h_jmp_rel(Core& c, const Insn& i) { c.jump(c.next_rip + i.imm, i.osz); }
void h_jmp_rm(Core& c, const Insn& i) { c.jump(c.rm_read(i, i.osz), i.osz); }

void h_jcc(Core& c, const Insn& i) {
  if (c.cond(i.op)) c.jump(c.next_rip + i.imm, i.osz);
}

void h_call_rel(Core& c, const Insn& i) {
  const uint64_t ret = c.next_rip;
  const uint64_t target = ret + i.imm;
  c.jump(target, i.osz);  // checks the target before the push (SDM: #GP with no state change)
  c.push(ret, i.osz);
}

void h_call_rm(Core& c, const Insn& i) {
  const uint64_t ret = c.next_rip;
  c.jump(c.rm_read(i, i.osz), i.osz);
  c.push(ret, i.osz);
}

void h_ret(Core& c, const Insn& i) {
  const uint64_t target = c.rd(kSs, c.sp(), i.osz);
  c.jump(target, i.osz);
  c.set_reg(kRsp, c.stack_size, c.sp() + i.osz + i.imm);
}

void h_loop(Core& c, const Insn& i) {
  const unsigned as = i.asz;
  if (i.op == 3) {
    if (c.reg(kRcx, as) == 0) c.jump(c.next_rip + i.imm, i.osz);
    return;
  }
  const uint64_t cx = (c.reg(kRcx, as) - 1) & size_mask(as);
  c.set_reg(kRcx, as, cx);
  bool take = cx != 0;
  if (i.op == 1) take = take && (c.flags() & kZF);
  if (i.op == 2) take = take && !(c.flags() & kZF);
  if (take) c.jump(c.next_rip + i.imm, i.osz);
}

void h_push_rm(Core& c, const Insn& i) {
  // PUSH [rsp+x] reads with the old RSP (SDM "PUSH").
  c.push(c.rm_read(i, i.osz), i.osz);
}

void h_push_imm(Core& c, const Insn& i) { c.push(i.imm & size_mask(i.osz), i.osz); }

void h_pop_rm(Core& c, const Insn& i) {
  const uint64_t v = c.rd(kSs, c.sp(), i.osz);
  const uint64_t old_sp = c.s.gpr[kRsp];
  // POP [rsp+x] computes the address with the incremented RSP (SDM "POP").
  c.set_reg(kRsp, c.stack_size, c.sp() + i.osz);
  try {
    c.rm_write(i, i.osz, v);
  } catch (...) {
    c.s.gpr[kRsp] = old_sp;
    throw;
  }
}

void h_push_sreg(Core& c, const Insn& i) {
  const uint64_t sel = c.s.seg[i.op].selector;
  // A 32/64-bit push of a segment register writes 16 bits on most processors; writing the
  // zero-extended value is what Intel documents as the alternative and AMD does.
  c.push(sel, i.osz);
}

void h_pop_sreg(Core& c, const Insn& i) {
  const uint16_t sel = static_cast<uint16_t>(c.rd(kSs, c.sp(), i.osz));
  // The increment uses the stack size the value was popped with (the old SS).
  const uint8_t old_size = c.stack_size;
  const uint64_t new_sp = c.sp() + i.osz;
  if (c.protected_) {
    c.load_seg(i.op, sel);
  } else {
    c.load_seg_real(i.op, sel);
  }
  c.set_reg(kRsp, old_size, new_sp);
  c.update_mode();
  if (i.op == kSs) c.s.mov_ss_shadow = true;
  c.end_block = true;
}

void h_pushf(Core& c, const Insn& i) {
  // VM and RF are pushed as 0.
  c.push(c.flags() & ~(kVM | kRF) & size_mask(i.osz), i.osz);
}

void h_popf(Core& c, const Insn& i) {
  const uint64_t v = c.rd(kSs, c.sp(), i.osz);
  uint64_t mask = kArithFlags | kTF | kDF | kNT | kAC | kID;
  if (!c.protected_ || c.cpl == 0) mask |= kIOPL | kIF;
  else if (c.cpl <= ((c.s.rflags & kIOPL) >> 12)) mask |= kIF;
  if (i.osz == 2) mask &= 0xFFFF;
  const uint64_t cur = c.flags();
  c.set_reg(kRsp, c.stack_size, c.sp() + i.osz);
  c.set_flags((cur & ~mask) | (v & mask));
  c.end_block = true;
}

void h_pusha(Core& c, const Insn& i) {
  if (c.long64) c.fault(kExcUD);
  const unsigned sz = i.osz;
  const uint64_t old_sp = c.s.gpr[kRsp];
  const uint64_t sp = c.sp();
  // Write all eight slots before committing RSP, so a fault leaves RSP unchanged.
  for (unsigned k = 0; k < 8; ++k) {
    const uint64_t v = k == kRsp ? (sp & size_mask(sz)) : c.reg(static_cast<uint8_t>(k), sz);
    const uint64_t addr = (sp - (k + 1) * sz) & size_mask(c.stack_size);
    c.wr(kSs, addr, sz, v);
  }
  c.s.gpr[kRsp] = old_sp;
  c.set_reg(kRsp, c.stack_size, sp - 8 * sz);
}

void h_popa(Core& c, const Insn& i) {
  if (c.long64) c.fault(kExcUD);
  const unsigned sz = i.osz;
  const uint64_t sp = c.sp();
  uint64_t vals[8];
  for (unsigned k = 0; k < 8; ++k) {
    vals[k] = c.rd(kSs, (sp + (7 - k) * sz) & size_mask(c.stack_size), sz);
  }
  for (unsigned k = 0; k < 8; ++k) {
    if (k != kRsp) c.set_reg(static_cast<uint8_t>(k), sz, vals[k]);
  }
  c.set_reg(kRsp, c.stack_size, sp + 8 * sz);
}

void h_enter(Core& c, const Insn& i) {
  const unsigned sz = i.osz;
  const unsigned level = static_cast<unsigned>(i.imm2 % 32);
  const uint64_t old_sp = c.s.gpr[kRsp], old_bp = c.s.gpr[kRbp];
  try {
    c.push(c.reg(kRbp, sz), sz);
    const uint64_t frame = c.sp();
    for (unsigned l = 1; l < level; ++l) {
      const uint64_t bp = (c.reg(kRbp, c.stack_size) - l * sz) & size_mask(c.stack_size);
      c.push(c.rd(kSs, bp, sz), sz);
    }
    if (level > 0) c.push(frame, sz);
    c.set_reg(kRbp, sz, frame);
    const uint64_t nsp = (c.sp() - i.imm) & size_mask(c.stack_size);
    c.rd(kSs, nsp, 1);  // the new stack top must be accessible
    c.set_reg(kRsp, c.stack_size, nsp);
  } catch (...) {
    c.s.gpr[kRsp] = old_sp;
    c.s.gpr[kRbp] = old_bp;
    throw;
  }
}

void h_leave(Core& c, const Insn& i) {
  const uint64_t bp = c.reg(kRbp, c.stack_size);
  const uint64_t v = c.rd(kSs, bp, i.osz);
  c.set_reg(kRsp, c.stack_size, bp + i.osz);
  c.set_reg(kRbp, i.osz, v);
}

void h_jmp_far(Core& c, const Insn& i) {
  if (c.long64) c.fault(kExcUD);
  c.far_jump(static_cast<uint16_t>(i.imm2), i.imm, i.osz, false, 0);
}

void h_call_far(Core& c, const Insn& i) {
  if (c.long64) c.fault(kExcUD);
  c.far_jump(static_cast<uint16_t>(i.imm2), i.imm, i.osz, true, c.next_rip);
}

namespace {
void far_mem(Core& c, const Insn& i, bool call) {
  const uint64_t addr = c.ea(i);
  const unsigned osz = i.osz;
  const uint64_t off = c.rd(i.seg, addr, osz);
  const uint16_t sel = static_cast<uint16_t>(c.rd(i.seg, (addr + osz) & size_mask(i.asz), 2));
  c.far_jump(sel, off, osz, call, c.next_rip);
}
}  // namespace

void h_jmp_far_m(Core& c, const Insn& i) { far_mem(c, i, false); }
void h_call_far_m(Core& c, const Insn& i) { far_mem(c, i, true); }
void h_retf(Core& c, const Insn& i) { c.far_return(i.osz, static_cast<uint16_t>(i.imm)); }

void h_int(Core& c, const Insn& i) {
  c.deliver_event(static_cast<uint8_t>(i.imm), Core::EventKind::kSoftInt, false, 0);
}
void h_int3(Core& c, const Insn&) {
  c.deliver_event(kExcBP, Core::EventKind::kSoftException, false, 0);
}
void h_into(Core& c, const Insn&) {
  if (c.long64) c.fault(kExcUD);
  if (c.flags() & kOF) c.deliver_event(kExcOF, Core::EventKind::kSoftException, false, 0);
}
void h_int1(Core& c, const Insn&) {
  c.deliver_event(kExcDB, Core::EventKind::kPrivSoftException, false, 0);
}
void h_iret(Core& c, const Insn& i) { c.iret(i.osz); }

void h_bound(Core& c, const Insn& i) {
  if (c.long64) c.fault(kExcUD);
  const unsigned sz = i.osz;
  const uint64_t addr = c.ea(i);
  const int64_t lo = sign_extend(c.rd(i.seg, addr, sz), sz);
  const int64_t hi = sign_extend(c.rd(i.seg, (addr + sz) & size_mask(i.asz), sz), sz);
  const int64_t v = sign_extend(c.reg(i.reg, sz), sz);
  if (v < lo || v > hi) c.fault(kExcBR);
}

}  // namespace apicv::cpu
