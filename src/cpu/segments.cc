// Segment registers and far control transfers for the software CPU: SDM vol. 3A 3.4.2-3.4.5
// (selectors, descriptors, the hidden part of a segment register), 3.5.1 (GDT/LDT), 5.5-5.8
// (privilege checks on data, stack and code segment loads; far JMP/CALL/RET between code
// segments), 5.10-5.11 (null selectors, segment invalidation on a return to an outer level), and
// the vol. 2 pseudo-code of MOV/POP Sreg, JMP, CALL and RET.
// Not supported: call gates, task gates and far JMP/CALL to a TSS (task switches) raise
// #GP(selector) instead of transferring through them (docs/cpu.md); virtual-8086 mode.
#include "cpu/core.h"

namespace apicv::cpu {

namespace {

constexpr uint32_t kArUnusable = 1u << 16;
constexpr uint64_t kDescAccessed = 1ull << 40;

// Raw descriptor fields (SDM vol. 3A 3.4.5, figure 3-8).
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
bool desc_readable(uint64_t d) {
  return !desc_code(d) || (desc_type(d) & 2) != 0;
}
bool desc_writable_data(uint64_t d) {
  return desc_s(d) && !desc_code(d) && (desc_type(d) & 2) != 0;
}

uint64_t mask_offset(uint64_t v, unsigned osz) {
  return osz == 2 ? (v & 0xFFFF) : osz == 4 ? (v & 0xFFFFFFFFu) : v;
}

bool canonical(uint64_t a) {
  return static_cast<uint64_t>(static_cast<int64_t>(a << 16) >> 16) == a;
}

// The cached CS of a conforming segment keeps the caller's CPL in its DPL field, because the core
// derives CPL from CS.DPL (update_mode()).
Segment code_segment(uint16_t selector, uint64_t desc, unsigned new_cpl) {
  Segment cs = Core::descriptor_to_segment(static_cast<uint16_t>((selector & 0xFFFC) | new_cpl),
                                           desc | kDescAccessed);
  cs.ar = (cs.ar & ~0x60u) | (new_cpl << 5);
  return cs;
}

// Pushes `a` then `b` (each `size` bytes) on the current stack; RSP changes only when both
// stores succeeded, so a fault leaves the instruction restartable.
void push2(Core& c, uint64_t a, uint64_t b, unsigned size) {
  const uint64_t m = size_mask(c.stack_size);
  const uint64_t sp1 = (c.sp() - size) & m, sp2 = (sp1 - size) & m;
  c.wr(kSs, sp1, size, a);
  c.wr(kSs, sp2, size, b);
  c.set_reg(kRsp, c.stack_size, sp2);
}

}  // namespace

Segment Core::descriptor_to_segment(uint16_t selector, uint64_t desc) {
  Segment sg;
  sg.selector = selector;
  sg.base = ((desc >> 16) & 0xFFFFFF) | (((desc >> 56) & 0xFF) << 24);
  uint32_t limit = static_cast<uint32_t>((desc & 0xFFFF) | (((desc >> 48) & 0xF) << 16));
  if ((desc >> 55) & 1) limit = (limit << 12) | 0xFFF;  // G: 4 KiB granularity
  sg.limit = limit;
  // Access rights in the VMX layout: type/S/DPL/P from byte 5, AVL/L/D/G from bits 55:52.
  sg.ar = static_cast<uint32_t>(((desc >> 40) & 0xFF) | (((desc >> 52) & 0xF) << 12));
  return sg;
}

bool Core::descriptor_address(uint16_t selector, uint64_t* lin) {
  uint64_t base;
  uint32_t limit;
  if (selector & 4) {
    if ((s.ldtr.ar & kArUnusable) != 0 || !s.ldtr.present()) return false;
    base = s.ldtr.base;
    limit = s.ldtr.limit;
  } else {
    base = s.gdtr.base;
    limit = s.gdtr.limit;
  }
  if ((selector | 7u) > limit) return false;
  uint64_t a = base + (selector & ~7u);
  if ((s.efer & kEferLma) == 0) a &= 0xFFFFFFFFu;
  *lin = a;
  return true;
}

uint64_t Core::read_descriptor(uint16_t selector, uint8_t err_vector) {
  uint64_t lin;
  if (!descriptor_address(selector, &lin)) fault(err_vector, selector & 0xFFFC);
  return rd_sys(lin, 8);
}

void Core::mark_accessed(uint16_t selector, uint64_t desc) {
  if ((desc & kDescAccessed) != 0) return;
  uint64_t lin;
  if (!descriptor_address(selector, &lin)) return;
  wr_sys(lin + 5, 1, ((desc >> 40) & 0xFF) | 1);
}

void Core::load_seg_real(uint8_t seg, uint16_t selector) {
  // Real mode: only the selector and base change; limit and access rights keep their values
  // (which is what makes "unreal mode" work).
  Segment& sg = s.seg[seg];
  sg.selector = selector;
  sg.base = static_cast<uint64_t>(selector) << 4;
  sg.ar &= ~kArUnusable;
}

void Core::load_seg(uint8_t seg, uint16_t selector) {
  if (!protected_) {
    load_seg_real(seg, selector);
    return;
  }
  if (seg == kCs || seg > kGs) fault(kExcUD);  // CS only changes through control transfers
  const unsigned rpl = selector & 3;
  const uint32_t err = selector & 0xFFFC;
  if (seg == kSs) {
    if (err == 0) {
      // A null SS is legal only in 64-bit mode below CPL 3 with RPL = CPL (SDM vol. 2 "MOV").
      if (long64 && cpl != 3 && rpl == cpl) {
        s.seg[kSs] = Segment{selector, 0, 0, kArUnusable | (static_cast<uint32_t>(cpl) << 5)};
        return;
      }
      fault(kExcGP, 0);
    }
    const uint64_t d = read_descriptor(selector, kExcGP);
    if (rpl != cpl || !desc_writable_data(d) || desc_dpl(d) != cpl) fault(kExcGP, err);
    if (!desc_present(d)) fault(kExcSS, err);
    mark_accessed(selector, d);
    s.seg[kSs] = descriptor_to_segment(selector, d | kDescAccessed);
    return;
  }
  if (err == 0) {
    // Null data segment: loads fine, faults on use (SDM vol. 3A 3.4.2). Intel clears the base.
    s.seg[seg] = Segment{selector, 0, 0, kArUnusable};
    return;
  }
  const uint64_t d = read_descriptor(selector, kExcGP);
  if (!desc_s(d) || !desc_readable(d)) fault(kExcGP, err);
  if (!desc_conforming(d) && (rpl > desc_dpl(d) || cpl > desc_dpl(d))) fault(kExcGP, err);
  if (!desc_present(d)) fault(kExcNP, err);
  mark_accessed(selector, d);
  s.seg[seg] = descriptor_to_segment(selector, d | kDescAccessed);
}

Segment Core::load_outer_stack(uint16_t ss_sel, unsigned new_cpl, bool to_64bit) {
  const uint32_t err = ss_sel & 0xFFFC;
  if (err == 0) {
    // RET/IRET may return a null SS to 64-bit code below CPL 3 (SDM vol. 2 "IRET", "RET").
    if (to_64bit && new_cpl != 3) {
      return Segment{ss_sel, 0, 0, kArUnusable | (new_cpl << 5)};
    }
    fault(kExcGP, 0);
  }
  const uint64_t d = read_descriptor(ss_sel, kExcGP);
  if ((ss_sel & 3u) != new_cpl || !desc_writable_data(d) || desc_dpl(d) != new_cpl) {
    fault(kExcGP, err);
  }
  if (!desc_present(d)) fault(kExcSS, err);
  mark_accessed(ss_sel, d);
  return descriptor_to_segment(ss_sel, d | kDescAccessed);
}

void Core::invalidate_outer_segments() {
  // SDM vol. 2 "RET"/"IRET": a data or non-conforming code segment more privileged than the new
  // CPL is replaced by a null selector, so the outer level cannot use it.
  for (uint8_t i : {kEs, kDs, kFs, kGs}) {
    Segment& sg = s.seg[i];
    if ((sg.ar & kArUnusable) != 0) continue;
    const bool conforming_code = (sg.ar & 0x1C) == 0x1C;
    if (!conforming_code && sg.dpl() < cpl) {
      sg.selector = 0;
      sg.ar = kArUnusable;
    }
  }
}

void Core::far_jump(uint16_t selector, uint64_t offset, unsigned osz, bool is_call,
                    uint64_t ret_rip) {
  if (!protected_) {
    const uint64_t target = mask_offset(offset, osz);
    if (target > s.seg[kCs].limit) fault(kExcGP, 0);
    if (is_call) push2(*this, s.seg[kCs].selector, ret_rip, osz);
    load_seg_real(kCs, selector);
    next_rip = target;
    end_block = true;
    return;
  }
  const uint32_t err = selector & 0xFFFC;
  if (err == 0) fault(kExcGP, 0);
  const uint64_t d = read_descriptor(selector, kExcGP);
  if (!desc_s(d)) {
    // Call gates (types 4/0xC), task gates (5) and TSS descriptors (1/3/9/0xB) transfer through a
    // gate or switch tasks: not supported (docs/cpu.md), so they fault like an invalid target.
    fault(kExcGP, err);
  }
  if (!desc_code(d)) fault(kExcGP, err);
  if (desc_conforming(d)) {
    if (desc_dpl(d) > cpl) fault(kExcGP, err);
  } else if ((selector & 3u) > cpl || desc_dpl(d) != cpl) {
    fault(kExcGP, err);
  }
  if (!desc_present(d)) fault(kExcNP, err);
  const bool lma = (s.efer & kEferLma) != 0;
  const Segment cs = code_segment(selector, d, cpl);
  if (lma && cs.l() && cs.db()) fault(kExcGP, err);  // L and D together are reserved
  uint64_t target = mask_offset(offset, osz);
  if (lma && cs.l()) {
    if (!canonical(target)) fault(kExcGP, 0);
  } else if (target > cs.limit) {
    fault(kExcGP, 0);
  }
  mark_accessed(selector, d);
  if (is_call) push2(*this, s.seg[kCs].selector, ret_rip, osz);
  s.seg[kCs] = cs;
  next_rip = target;
  update_mode();
  end_block = true;
}

void Core::far_return(unsigned osz, uint16_t imm) {
  const uint64_t m = size_mask(stack_size);
  const uint64_t sp0 = sp();
  const uint64_t rip_popped = rd(kSs, sp0, osz);
  const uint16_t selector = static_cast<uint16_t>(rd(kSs, (sp0 + osz) & m, osz));
  if (!protected_) {
    const uint64_t target = mask_offset(rip_popped, osz);
    if (target > s.seg[kCs].limit) fault(kExcGP, 0);
    load_seg_real(kCs, selector);
    set_reg(kRsp, stack_size, sp0 + 2 * osz + imm);
    next_rip = target;
    end_block = true;
    return;
  }
  const uint32_t err = selector & 0xFFFC;
  if (err == 0) fault(kExcGP, 0);
  const uint64_t d = read_descriptor(selector, kExcGP);
  const unsigned rpl = selector & 3;
  if (!desc_code(d) || rpl < cpl) fault(kExcGP, err);
  if (desc_conforming(d) ? desc_dpl(d) > rpl : desc_dpl(d) != rpl) fault(kExcGP, err);
  if (!desc_present(d)) fault(kExcNP, err);
  const bool lma = (s.efer & kEferLma) != 0;
  const Segment cs = code_segment(selector, d, rpl);
  if (lma && cs.l() && cs.db()) fault(kExcGP, err);
  const bool to_64bit = lma && cs.l();
  uint64_t target = mask_offset(rip_popped, osz);
  if (to_64bit) {
    if (!canonical(target)) fault(kExcGP, 0);
  } else if (target > cs.limit) {
    fault(kExcGP, 0);
  }
  if (rpl == cpl) {
    mark_accessed(selector, d);
    s.seg[kCs] = cs;
    set_reg(kRsp, stack_size, sp0 + 2 * osz + imm);
    next_rip = target;
    update_mode();
    end_block = true;
    return;
  }
  // Return to an outer privilege level: the caller's SS:(E/R)SP follow the parameters.
  const uint64_t off = sp0 + 2 * osz + imm;
  const uint64_t new_sp = rd(kSs, off & m, osz);
  const uint16_t ss_sel = static_cast<uint16_t>(rd(kSs, (off + osz) & m, osz));
  const Segment ss = load_outer_stack(ss_sel, rpl, to_64bit);
  mark_accessed(selector, d);
  s.seg[kCs] = cs;
  s.seg[kSs] = ss;
  update_mode();
  set_reg(kRsp, osz == 8 ? 8 : stack_size, new_sp + imm);
  invalidate_outer_segments();
  next_rip = target;
  end_block = true;
}

}  // namespace apicv::cpu
