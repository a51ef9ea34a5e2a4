// Event delivery for the software CPU: exceptions, NMIs, external and software interrupts through
// the IVT (SDM vol. 3A 20.1.4, real-address mode), the 32-bit IDT (6.10-6.12: interrupt and trap
// gates, privilege-level change through the TSS SS0:ESP0, error codes 6.13) and the 64-bit IDT
// (6.14: 16-byte gates, IST, RSP0, SS := null, 16-byte stack alignment); the double-fault rules
// of table 6-5 (6.15, "Interrupt 8"), a fault while delivering #DF being a triple fault (shutdown);
// and IRET (vol. 2 "IRET": real mode, same and outer privilege, IRETQ).
// Not supported: task gates and IRET with NT=1 (task switches) raise #GP; virtual-8086 mode
// (IRET to VM=1 raises #GP); 16-bit TSS; RF is not set in the image pushed for faults (there are
// no instruction breakpoints to suppress).
#include "cpu/core.h"

namespace apicv::cpu {

namespace {

constexpr uint8_t kNotDelivering = 0xFF;
constexpr uint8_t kDeliveringInterrupt = 0xFE;  // external / NMI / software: a benign event
constexpr uint32_t kArUnusable = 1u << 16;
constexpr uint64_t kDescAccessed = 1ull << 40;

enum class FaultClass : uint8_t { kBenign, kContributory, kPageFault };

// SDM vol. 3A table 6-4.
FaultClass fault_class(uint8_t delivering) {
  switch (delivering) {
    case kExcDE:
    case 9:  // coprocessor segment overrun (never raised here)
    case kExcTS:
    case kExcNP:
    case kExcSS:
    case kExcGP:
      return FaultClass::kContributory;
    case kExcPF:
      return FaultClass::kPageFault;
    default:
      return FaultClass::kBenign;
  }
}

// Table 6-5: does `second`, raised while delivering `first`, become #DF?
bool is_double_fault(FaultClass first, FaultClass second) {
  if (first == FaultClass::kContributory) return second == FaultClass::kContributory;
  if (first == FaultClass::kPageFault) return second != FaultClass::kBenign;
  return false;
}

bool canonical(uint64_t a) {
  return static_cast<uint64_t>(static_cast<int64_t>(a << 16) >> 16) == a;
}

unsigned desc_type(uint64_t d) {
  return (d >> 40) & 0xF;
}
bool desc_s(uint64_t d) {
  return ((d >> 44) & 1) != 0;
}
unsigned desc_dpl(uint64_t d) {
  return (d >> 45) & 3;
}
bool desc_present(uint64_t d) {
  return ((d >> 47) & 1) != 0;
}
bool desc_code(uint64_t d) {
  return desc_s(d) && (desc_type(d) & 8) != 0;
}
bool desc_conforming(uint64_t d) {
  return desc_code(d) && (desc_type(d) & 4) != 0;
}

bool software(Core::EventKind k) {
  return k == Core::EventKind::kSoftInt || k == Core::EventKind::kSoftException ||
         k == Core::EventKind::kPrivSoftException;
}

// The EXT bit of error codes (SDM vol. 3A 6.13): set unless the program itself raised the event
// with INT n / INT3 / INTO.
uint32_t ext_bit(Core::EventKind k) {
  return (k == Core::EventKind::kSoftInt || k == Core::EventKind::kSoftException) ? 0 : 1;
}

uint64_t sys_lin(const Core& c, uint64_t a) {
  return (c.s.efer & kEferLma) ? a : (a & 0xFFFFFFFFu);
}

struct Target {
  uint64_t desc;
  unsigned cpl;
};

// The code segment an IDT gate names (SDM vol. 3A 6.12.1.1): #GP/#NP with EXT.
Target gate_target(Core& c, uint16_t sel, uint32_t ext, bool need64) {
  const uint32_t err = (sel & 0xFFFCu) | ext;
  if ((sel & 0xFFFC) == 0) c.fault(kExcGP, ext);
  uint64_t lin;
  if (!c.descriptor_address(sel, &lin)) c.fault(kExcGP, err);
  const uint64_t d = c.rd_sys(lin, 8);
  if (!desc_code(d) || desc_dpl(d) > c.cpl) c.fault(kExcGP, err);
  if (!desc_present(d)) c.fault(kExcNP, err);
  // IA-32e mode: the handler must be 64-bit code (L=1, D=0).
  if (need64 && (((d >> 53) & 1) == 0 || ((d >> 54) & 1) != 0)) c.fault(kExcGP, err);
  return Target{d, desc_conforming(d) ? c.cpl : desc_dpl(d)};
}

Segment handler_cs(uint16_t sel, const Target& t) {
  Segment cs = Core::descriptor_to_segment(static_cast<uint16_t>((sel & 0xFFFC) | t.cpl),
                                           t.desc | kDescAccessed);
  cs.ar = (cs.ar & ~0x60u) | (t.cpl << 5);  // CPL lives in CS.DPL (conforming segments)
  return cs;
}

bool in_limit(const Segment& sg, uint64_t off, unsigned size) {
  const uint64_t last = off + size - 1;
  if ((sg.ar & 0x1C) == 0x14) {  // expand-down data
    const uint64_t upper = sg.db() ? 0xFFFFFFFFull : 0xFFFFull;
    return off > sg.limit && last <= upper;
  }
  return last <= sg.limit;
}

// Pushes `n` values of `size` bytes on the legacy stack `ss` from `sp`, checking the whole frame
// before storing anything; returns the new stack pointer.
uint64_t push_frame_legacy(Core& c, const Segment& ss, uint64_t sp, const uint64_t* v, unsigned n,
                           unsigned size, bool user, uint32_t ss_err) {
  if ((ss.ar & kArUnusable) != 0 || !ss.present()) c.fault(kExcSS, ss_err);
  const uint64_t m = ss.db() ? 0xFFFFFFFFull : 0xFFFFull;
  uint64_t offs[6];
  for (unsigned k = 0; k < n; ++k) {
    sp = (sp - size) & m;
    if (!in_limit(ss, sp, size)) c.fault(kExcSS, ss_err);
    offs[k] = sp;
  }
  for (unsigned k = 0; k < n; ++k) {
    c.write_lin((ss.base + offs[k]) & 0xFFFFFFFFu, size, v[k], user);
  }
  return sp;
}

void deliver_real(Core& c, uint8_t vector, uint64_t ret, uint64_t fl) {
  const uint64_t off = static_cast<uint64_t>(vector) * 4;
  if (off + 3 > c.s.idtr.limit) c.fault(kExcGP, 0);
  const uint64_t ent = c.rd_sys((c.s.idtr.base + off) & 0xFFFFFFFFu, 4);
  const uint64_t m = size_mask(c.stack_size);
  const uint64_t sp0 = c.sp();
  const uint64_t sp1 = (sp0 - 2) & m, sp2 = (sp0 - 4) & m, sp3 = (sp0 - 6) & m;
  c.wr(kSs, sp1, 2, fl);
  c.wr(kSs, sp2, 2, c.s.seg[kCs].selector);
  c.wr(kSs, sp3, 2, ret);
  c.set_reg(kRsp, c.stack_size, sp3);  // only once every store succeeded
  c.load_seg_real(kCs, static_cast<uint16_t>(ent >> 16));
  c.s.rflags &= ~(kIF | kTF | kAC);
  c.s.rip = c.next_rip = ent & 0xFFFF;
}

void deliver_protected(Core& c, uint8_t vector, Core::EventKind kind, bool push_error,
                       uint32_t error, uint64_t ret, uint64_t fl) {
  const uint32_t ext = ext_bit(kind);
  const uint32_t idt_err = (static_cast<uint32_t>(vector) << 3) | 2 | ext;
  const uint64_t off = static_cast<uint64_t>(vector) * 8;
  if (off + 7 > c.s.idtr.limit) c.fault(kExcGP, idt_err);
  const uint64_t gate = c.rd_sys(sys_lin(c, c.s.idtr.base + off), 8);
  const unsigned type = (gate >> 40) & 0x1F;  // includes S (bit 4), which must be 0
  // 6/7: 16-bit interrupt/trap gate, 0xE/0xF: 32-bit. Task gates (5) switch tasks: not supported.
  if (type != 0x6 && type != 0x7 && type != 0xE && type != 0xF) c.fault(kExcGP, idt_err);
  if ((kind == Core::EventKind::kSoftInt || kind == Core::EventKind::kSoftException) &&
      c.cpl > desc_dpl(gate)) {
    c.fault(kExcGP, idt_err);
  }
  if (!desc_present(gate)) c.fault(kExcNP, idt_err);
  const bool gate32 = (type & 8) != 0;
  const bool trap = (type & 1) != 0;
  const uint16_t sel = static_cast<uint16_t>(gate >> 16);
  const Target t = gate_target(c, sel, ext, false);
  const Segment cs = handler_cs(sel, t);
  uint64_t eip = (gate & 0xFFFF) | ((gate >> 32) & 0xFFFF0000u);
  if (!gate32) eip &= 0xFFFF;
  if (eip > cs.limit) c.fault(kExcGP, ext);
  const unsigned size = gate32 ? 4 : 2;
  const bool user = t.cpl == 3;
  uint64_t frame[6];
  unsigned n = 0;
  if (t.cpl < c.cpl) {
    // Privilege-level change: the handler's stack comes from the 32-bit TSS (SDM 7.2.1).
    const Segment& tr = c.s.tr;
    const uint32_t tss_err = (tr.selector & 0xFFFCu) | ext;
    const unsigned tr_type = tr.ar & 0xF;
    if (tr_type != 0x9 && tr_type != 0xB) c.fault(kExcTS, tss_err);  // 16-bit TSS: unsupported
    const uint32_t toff = 4 + t.cpl * 8;
    if (toff + 5 > tr.limit) c.fault(kExcTS, tss_err);
    const uint64_t new_esp = c.rd_sys(sys_lin(c, tr.base + toff), 4);
    const uint16_t ss_sel = static_cast<uint16_t>(c.rd_sys(sys_lin(c, tr.base + toff + 4), 2));
    const uint32_t ss_err = (ss_sel & 0xFFFCu) | ext;
    if ((ss_sel & 0xFFFC) == 0) c.fault(kExcTS, ext);
    uint64_t lin;
    if (!c.descriptor_address(ss_sel, &lin)) c.fault(kExcTS, ss_err);
    const uint64_t sd = c.rd_sys(lin, 8);
    const bool writable = desc_s(sd) && !desc_code(sd) && (desc_type(sd) & 2) != 0;
    if ((ss_sel & 3u) != t.cpl || desc_dpl(sd) != t.cpl || !writable) c.fault(kExcTS, ss_err);
    if (!desc_present(sd)) c.fault(kExcSS, ss_err);
    const Segment ss = Core::descriptor_to_segment(ss_sel, sd | kDescAccessed);
    frame[n++] = c.s.seg[kSs].selector;
    frame[n++] = c.reg(kRsp, 4);
    frame[n++] = fl;
    frame[n++] = c.s.seg[kCs].selector;
    frame[n++] = ret;
    if (push_error) frame[n++] = error;
    c.mark_accessed(ss_sel, sd);
    c.mark_accessed(sel, t.desc);
    const uint64_t sp = push_frame_legacy(c, ss, new_esp, frame, n, size, user, ss_err);
    c.s.seg[kSs] = ss;
    c.set_reg(kRsp, ss.db() ? 4 : 2, sp);
  } else {
    frame[n++] = fl;
    frame[n++] = c.s.seg[kCs].selector;
    frame[n++] = ret;
    if (push_error) frame[n++] = error;
    c.mark_accessed(sel, t.desc);
    const Segment& ss = c.s.seg[kSs];
    const uint64_t sp = push_frame_legacy(c, ss, c.reg(kRsp, 4), frame, n, size, user, ext);
    c.set_reg(kRsp, ss.db() ? 4 : 2, sp);
  }
  c.s.seg[kCs] = cs;
  uint64_t nf = fl & ~(kTF | kNT | kRF | kVM);
  if (!trap) nf &= ~kIF;
  c.s.rflags = nf;
  c.s.rip = c.next_rip = eip;
}

void deliver_long(Core& c, uint8_t vector, Core::EventKind kind, bool push_error, uint32_t error,
                  uint64_t ret, uint64_t fl) {
  const uint32_t ext = ext_bit(kind);
  const uint32_t idt_err = (static_cast<uint32_t>(vector) << 3) | 2 | ext;
  const uint64_t off = static_cast<uint64_t>(vector) * 16;
  if (off + 15 > c.s.idtr.limit) c.fault(kExcGP, idt_err);
  const uint64_t lo = c.rd_sys(c.s.idtr.base + off, 8);
  const uint64_t hi = c.rd_sys(c.s.idtr.base + off + 8, 8);
  const unsigned type = (lo >> 40) & 0x1F;
  // Only 64-bit interrupt (0xE) and trap (0xF) gates exist in IA-32e mode (SDM 6.14.1).
  if (type != 0xE && type != 0xF) c.fault(kExcGP, idt_err);
  if ((kind == Core::EventKind::kSoftInt || kind == Core::EventKind::kSoftException) &&
      c.cpl > desc_dpl(lo)) {
    c.fault(kExcGP, idt_err);
  }
  if (!desc_present(lo)) c.fault(kExcNP, idt_err);
  const bool trap = (type & 1) != 0;
  const uint16_t sel = static_cast<uint16_t>(lo >> 16);
  const Target t = gate_target(c, sel, ext, true);
  const Segment cs = handler_cs(sel, t);
  const uint64_t rip = (lo & 0xFFFF) | ((lo >> 32) & 0xFFFF0000u) | ((hi & 0xFFFFFFFFu) << 32);
  if (!canonical(rip)) c.fault(kExcGP, ext);
  const unsigned ist = (lo >> 32) & 7;
  const bool priv_change = t.cpl < c.cpl;
  uint64_t rsp = c.s.gpr[kRsp];
  if (priv_change || ist != 0) {
    // SDM 6.14.4-6.14.5: IST n when the gate names one, else RSP for the new CPL (64-bit TSS).
    const Segment& tr = c.s.tr;
    const uint32_t toff = ist != 0 ? 0x24 + (ist - 1) * 8 : 4 + t.cpl * 8;
    if ((tr.ar & kArUnusable) != 0 || toff + 7 > tr.limit) {
      c.fault(kExcTS, (tr.selector & 0xFFFCu) | ext);
    }
    rsp = c.rd_sys(tr.base + toff, 8);
  }
  rsp &= ~0xFull;  // 16-byte alignment of the frame (SDM 6.14.2)
  uint64_t frame[6];
  unsigned n = 0;
  frame[n++] = c.s.seg[kSs].selector;
  frame[n++] = c.s.gpr[kRsp];
  frame[n++] = fl;
  frame[n++] = c.s.seg[kCs].selector;
  frame[n++] = ret;
  if (push_error) frame[n++] = error;
  if (!canonical(rsp) || !canonical(rsp - 8 * n)) c.fault(kExcSS, ext);
  c.mark_accessed(sel, t.desc);
  const bool user = t.cpl == 3;
  for (unsigned k = 0; k < n; ++k) c.write_lin(rsp - 8 * (k + 1), 8, frame[k], user);
  if (priv_change) {
    // The new SS is a null selector whose RPL is the new CPL.
    c.s.seg[kSs] = Segment{static_cast<uint16_t>(t.cpl), 0, 0, kArUnusable | (t.cpl << 5)};
  }
  c.s.gpr[kRsp] = rsp - 8 * n;
  c.s.seg[kCs] = cs;
  uint64_t nf = fl & ~(kTF | kNT | kRF | kVM);
  if (!trap) nf &= ~kIF;
  c.s.rflags = nf;
  c.s.rip = c.next_rip = rip;
}

}  // namespace

void Core::deliver_event(uint8_t vector, EventKind kind, bool has_error, uint32_t error) {
  // Remember what is being delivered: a fault raised on the way is classified against it.
  delivering = kind == EventKind::kException ? vector : kDeliveringInterrupt;
  const uint64_t ret = software(kind) ? next_rip : s.rip;
  const uint64_t fl = flags() | (fault_rf ? kRF : 0);
  const bool push_error = has_error && kind == EventKind::kException;
  if (!protected_) {
    deliver_real(*this, vector, ret, fl);  // no error codes in real mode
  } else if (s.efer & kEferLma) {
    deliver_long(*this, vector, kind, push_error, error, ret, fl);
  } else {
    deliver_protected(*this, vector, kind, push_error, error, ret, fl);
  }
  s.sti_shadow = s.mov_ss_shadow = false;
  if (s.activity == Activity::kHalted) s.activity = Activity::kActive;  // an event wakes HLT
  update_mode();
  end_block = true;
  delivering = kNotDelivering;
}

void Core::deliver_fault(const GuestFault& first) {
  GuestFault f = first;
  fault_depth = 0;
  for (;;) {
    const uint8_t prev = delivering;  // the event whose delivery raised `f`, if any
    delivering = kNotDelivering;
    if (prev == kExcDF || ++fault_depth > 8) {
      // A fault while delivering #DF: triple fault, the processor shuts down (SDM 6.15).
      s.activity = Activity::kShutdown;
      end_block = true;
      fault_depth = 0;
      return;
    }
    if (prev != kNotDelivering && prev != kDeliveringInterrupt &&
        is_double_fault(fault_class(prev), fault_class(f.vector))) {
      f = GuestFault{kExcDF, true, 0};
    }
    try {
      fault_rf = true;  // faults push RF = 1 so IRET does not re-trigger an instruction breakpoint
      deliver_event(f.vector, EventKind::kException, f.has_error, f.error);
      fault_rf = false;
      fault_depth = 0;
      return;
    } catch (const GuestFault& g) {
      fault_rf = false;
      f = g;  // delivery itself faulted: classify against `delivering` (table 6-5)
    }
  }
}

void Core::iret(unsigned osz) {
  const uint64_t m = size_mask(stack_size);
  const uint64_t sp0 = sp();
  auto stack_word = [&](unsigned k) { return rd(kSs, (sp0 + k * osz) & m, osz); };
  const uint64_t old = flags();
  if (!protected_) {
    const uint64_t ip = stack_word(0);
    const uint16_t cs_sel = static_cast<uint16_t>(stack_word(1));
    const uint64_t fl = stack_word(2);
    if (ip > s.seg[kCs].limit) fault(kExcGP, 0);
    load_seg_real(kCs, cs_sel);
    // VM, VIF and VIP keep their values (vol. 2 "IRET", real-address mode).
    const uint64_t nf =
        osz == 2 ? (old & ~0xFFFFull) | (fl & 0xFFFF) : (fl & 0x257FD5) | (old & 0x1A0000);
    set_flags(nf);
    set_reg(kRsp, stack_size, sp0 + 3 * osz);
    next_rip = ip;
    s.nmi_blocked = false;
    update_mode();
    end_block = true;
    return;
  }
  if (old & kNT) {
    // Task return through the TSS back link: not supported (docs/cpu.md). In IA-32e mode NT=1
    // is #GP(0) architecturally.
    fault(kExcGP, 0);
  }
  const bool lma = (s.efer & kEferLma) != 0;
  uint64_t rip = stack_word(0);
  const uint16_t sel = static_cast<uint16_t>(stack_word(1));
  const uint64_t fl = stack_word(2);
  if (!lma && (fl & kVM) && cpl == 0) fault(kExcGP, 0);  // return to virtual-8086: unsupported
  const uint32_t err = sel & 0xFFFC;
  if (err == 0) fault(kExcGP, 0);
  const uint64_t d = read_descriptor(sel, kExcGP);
  const unsigned rpl = sel & 3;
  if (!desc_code(d) || rpl < cpl) fault(kExcGP, err);
  if (desc_conforming(d) ? desc_dpl(d) > rpl : desc_dpl(d) != rpl) fault(kExcGP, err);
  if (!desc_present(d)) fault(kExcNP, err);
  Segment cs = descriptor_to_segment(sel, d | kDescAccessed);
  cs.ar = (cs.ar & ~0x60u) | (rpl << 5);
  if (lma && cs.l() && cs.db()) fault(kExcGP, err);
  const bool to_64bit = lma && cs.l();
  if (to_64bit) {
    if (!canonical(rip)) fault(kExcGP, 0);
  } else if (rip > cs.limit) {
    fault(kExcGP, 0);
  }
  // 64-bit mode always pops SS:RSP; otherwise only a return to an outer level does.
  const bool pops_stack = rpl > cpl || long64;
  Segment ss;
  uint64_t new_sp = 0;
  if (pops_stack) {
    new_sp = stack_word(3);
    ss = load_outer_stack(static_cast<uint16_t>(stack_word(4)), rpl, to_64bit);
  }
  // RFLAGS (vol. 2 "IRET"): IOPL only at CPL 0, IF only when CPL <= IOPL, VIF/VIP only at CPL 0.
  const unsigned old_cpl = cpl;
  const unsigned iopl = (old >> 12) & 3;
  uint64_t mask = 0x257FD5;  // CF PF AF ZF SF TF IF DF OF IOPL NT RF AC ID
  if (old_cpl > 0) mask &= ~kIOPL;
  if (old_cpl > iopl) mask &= ~kIF;
  if (old_cpl == 0) mask |= kVIF | kVIP;
  if (osz == 2) mask &= 0xFFFF;
  mark_accessed(sel, d);
  s.seg[kCs] = cs;
  if (pops_stack) s.seg[kSs] = ss;
  update_mode();
  if (pops_stack) {
    set_reg(kRsp, osz, new_sp);
  } else {
    set_reg(kRsp, stack_size, sp0 + 3 * osz);
  }
  set_flags((old & ~mask) | (fl & mask));
  if (rpl > old_cpl) invalidate_outer_segments();
  next_rip = to_64bit ? rip : (rip & 0xFFFFFFFFu);
  s.nmi_blocked = false;
  end_block = true;
}

}  // namespace apicv::cpu
