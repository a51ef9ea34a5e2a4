// System instructions of the software CPU: HLT, CLI/STI (SDM vol. 3A 6.8.3 STI shadow; vol. 1
// 3.4.3.3 IOPL), IN/OUT with the IOPL and TSS I/O-permission bitmap checks (vol. 1 19.5),
// CPUID, RDTSC/RDTSCP (CR4.TSD), RDMSR/WRMSR (vol. 4; EFER vol. 3A 2.2.1, SYSCALL MSRs 5.8.8,
// SYSENTER MSRs 5.8.7, PAT 11.12), MOV CR0/2/3/4/8 (2.5, 9.8.5 entering IA-32e mode), MOV DR
// (17.2), LGDT/LIDT/SGDT/SIDT, LLDT/SLDT/LTR/STR (7.2.4 the TSS busy flag), LMSW/SMSW/CLTS,
// INVLPG, WBINVD/INVD, SWAPGS, SYSCALL/SYSRET (long-mode semantics), MONITOR/MWAIT, LAR/LSL/
// VERR/VERW, LDS/LES/LFS/LGS/LSS and MOV to/from segment registers.
// Every port access and every MSR the CPU does not own goes to the CpuHost and ends the run after
// the instruction (exit_after), as each is a VM exit under KVM.
// Not supported: CR4.VME/PVI/UMIP/PCIDE/OSXSAVE/SMEP/SMAP and the other CR4 bits outside the
// list in write_cr (#GP); virtual-8086 I/O; DR7.GD and debug-register breakpoints (DRs are only
// stored); MONITOR address monitoring (MWAIT halts until the next event, and MWAIT's
// "interrupt as break event" with IF=0 wakes only if the platform wakes a halted CPU);
// SYSCALL/SYSRET outside 64-bit mode (#UD, as on Intel); 16-bit TSS for LTR (#GP).
#include "cpu/core.h"
#include "cpu/handlers.h"

namespace apicv::cpu {

namespace {

constexpr uint32_t kArUnusable = 1u << 16;

// Architectural MSR numbers (SDM vol. 4 table 2-2).
constexpr uint32_t kMsrSysenterCs = 0x174, kMsrSysenterEsp = 0x175, kMsrSysenterEip = 0x176,
                   kMsrPat = 0x277, kMsrEfer = 0xC0000080, kMsrStar = 0xC0000081,
                   kMsrLstar = 0xC0000082, kMsrCstar = 0xC0000083, kMsrSfmask = 0xC0000084,
                   kMsrFsBase = 0xC0000100, kMsrGsBase = 0xC0000101, kMsrKernelGsBase = 0xC0000102;

constexpr unsigned kMaxPhysBits = 40;  // as mmu.cc and the platform's CPUID 0x80000008

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

bool canonical(uint64_t a) {
  return static_cast<uint64_t>(static_cast<int64_t>(a << 16) >> 16) == a;
}

unsigned iopl(const Core& c) {
  return (c.s.rflags >> 12) & 3;
}

void require_cpl0(Core& c) {
  if (c.cpl != 0) c.fault(kExcGP, 0);
}

void set_zf(Core& c, bool on) {
  const uint64_t f = c.flags();
  c.set_flags(on ? (f | kZF) : (f & ~kZF));
}

// Stores a 16-bit system value to r/m: memory takes 16 bits, a register the operand size
// (zero-extended), as SLDT/STR/SMSW/MOV r, Sreg do.
void store_selector_like(Core& c, const Insn& i, uint64_t v) {
  if (i.is_mem()) {
    c.wr(i.seg, c.ea(i), 2, v & 0xFFFF);
  } else {
    c.set_reg(i.rm, i.osz, i.osz == 2 ? (v & 0xFFFF) : v);
  }
}

uint64_t offset_plus(const Insn& i, uint64_t off, uint64_t k) {
  return (off + k) & size_mask(i.asz);
}

// The upper half of a 16-byte system descriptor (LDT / TSS in IA-32e mode, SDM 7.2.3).
uint64_t system_base_high(Core& c, uint16_t sel) {
  uint64_t lin;
  if (!c.descriptor_address(static_cast<uint16_t>((sel & ~7u) + 8), &lin)) {
    c.fault(kExcGP, sel & 0xFFFC);
  }
  const uint64_t hi = c.rd_sys(lin, 8);
  if (((hi >> 40) & 0x1F) != 0) c.fault(kExcGP, sel & 0xFFFC);  // type of the upper half is 0
  return (hi & 0xFFFFFFFFu) << 32;
}

}  // namespace

// ---- Core: control registers, MSRs, I/O permission

void Core::write_cr(unsigned n, uint64_t v) {
  switch (n) {
    case 0: {
      if ((v >> 32) != 0) fault(kExcGP, 0);
      // Reserved bits of CR0[31:0] ignore writes; ET is hardwired to 1 (SDM 2.5).
      v &= kCr0Pe | kCr0Mp | kCr0Em | kCr0Ts | kCr0Ne | kCr0Wp | kCr0Am | kCr0Nw | kCr0Cd | kCr0Pg;
      v |= kCr0Et;
      if ((v & kCr0Pg) && !(v & kCr0Pe)) fault(kExcGP, 0);
      if ((v & kCr0Nw) && !(v & kCr0Cd)) fault(kExcGP, 0);
      const uint64_t old = s.cr0;
      uint64_t efer = s.efer;
      if ((v & kCr0Pg) && !(old & kCr0Pg) && (efer & kEferLme)) {
        // Activating IA-32e mode (SDM 9.8.5): needs PAE, and CS.L must be 0.
        if (!(s.cr4 & kCr4Pae) || s.seg[kCs].l()) fault(kExcGP, 0);
        efer |= kEferLma;
      }
      if (!(v & kCr0Pg) && (old & kCr0Pg) && (efer & kEferLma)) {
        // Leaving IA-32e mode is only possible from compatibility mode.
        if (long64) fault(kExcGP, 0);
        efer &= ~kEferLma;
      }
      s.cr0 = v;
      s.efer = efer;
      break;
    }
    case 2:
      s.cr2 = v;
      return;
    case 3:
      if (s.efer & kEferLma) {
        if ((v >> kMaxPhysBits) != 0) fault(kExcGP, 0);  // no PCIDs: bit 63 is reserved too
      } else {
        v &= 0xFFFFFFFFu;
      }
      s.cr3 = v;
      break;
    case 4: {
      constexpr uint64_t kAllowed = kCr4Tsd | kCr4De | kCr4Pse | kCr4Pae | kCr4Mce | kCr4Pge |
                                    kCr4Pce | kCr4Osfxsr | kCr4Osxmmexcpt;
      if ((v & ~kAllowed) != 0) fault(kExcGP, 0);
      if ((s.efer & kEferLma) && !(v & kCr4Pae)) fault(kExcGP, 0);
      s.cr4 = v;
      break;
    }
    case 8:
      // CR8 is the TPR's priority class (SDM 10.8.6.1): the platform's LAPIC owns it.
      if ((v & ~0xFull) != 0) fault(kExcGP, 0);
      host.write_cr8(v);
      exit_after = true;
      return;
    default:
      fault(kExcUD);
  }
  flush_tlb();
  update_mode();
  end_block = true;
}

uint64_t Core::read_cr(unsigned n) {
  switch (n) {
    case 0:
      return s.cr0;
    case 2:
      return s.cr2;
    case 3:
      return s.cr3;
    case 4:
      return s.cr4;
    case 8:
      return host.read_cr8() & 0xF;
    default:
      fault(kExcUD);
  }
}

MsrResult Core::rdmsr(uint32_t msr, uint64_t* v) {
  switch (msr) {
    case kMsrEfer:
      *v = s.efer;
      return MsrResult::kOk;
    case kMsrStar:
      *v = s.star;
      return MsrResult::kOk;
    case kMsrLstar:
      *v = s.lstar;
      return MsrResult::kOk;
    case kMsrCstar:
      *v = s.cstar;
      return MsrResult::kOk;
    case kMsrSfmask:
      *v = s.sfmask;
      return MsrResult::kOk;
    case kMsrFsBase:
      *v = s.seg[kFs].base;
      return MsrResult::kOk;
    case kMsrGsBase:
      *v = s.seg[kGs].base;
      return MsrResult::kOk;
    case kMsrKernelGsBase:
      *v = s.kernel_gs_base;
      return MsrResult::kOk;
    case kMsrSysenterCs:
      *v = s.sysenter_cs;
      return MsrResult::kOk;
    case kMsrSysenterEsp:
      *v = s.sysenter_esp;
      return MsrResult::kOk;
    case kMsrSysenterEip:
      *v = s.sysenter_eip;
      return MsrResult::kOk;
    case kMsrPat:
      *v = s.pat;
      return MsrResult::kOk;
    default: {
      const MsrResult r = host.rdmsr(msr, v);
      exit_after = true;
      return r;
    }
  }
}

MsrResult Core::wrmsr(uint32_t msr, uint64_t v) {
  switch (msr) {
    case kMsrEfer: {
      uint64_t allowed = kEferLme | kEferLma;
      if (features.syscall) allowed |= kEferSce;
      if (features.nx) allowed |= kEferNxe;
      if ((v & ~allowed) != 0) return MsrResult::kGp;
      // LME may change only while paging is off; LMA is read-only (follows CR0.PG).
      if (paging && ((v ^ s.efer) & kEferLme) != 0) return MsrResult::kGp;
      s.efer = (v & ~kEferLma) | (s.efer & kEferLma);
      flush_tlb();  // NXE changes what the page walk allows
      end_block = true;
      return MsrResult::kOk;
    }
    case kMsrStar:
      s.star = v;
      return MsrResult::kOk;
    case kMsrLstar:
    case kMsrCstar:
    case kMsrFsBase:
    case kMsrGsBase:
    case kMsrKernelGsBase:
    case kMsrSysenterEsp:
    case kMsrSysenterEip:
      // Linear addresses: must be canonical.
      if (!canonical(v)) return MsrResult::kGp;
      if (msr == kMsrLstar) s.lstar = v;
      if (msr == kMsrCstar) s.cstar = v;
      if (msr == kMsrFsBase) s.seg[kFs].base = v;
      if (msr == kMsrGsBase) s.seg[kGs].base = v;
      if (msr == kMsrKernelGsBase) s.kernel_gs_base = v;
      if (msr == kMsrSysenterEsp) s.sysenter_esp = v;
      if (msr == kMsrSysenterEip) s.sysenter_eip = v;
      return MsrResult::kOk;
    case kMsrSfmask:
      if ((v >> 32) != 0) return MsrResult::kGp;
      s.sfmask = v;
      return MsrResult::kOk;
    case kMsrSysenterCs:
      s.sysenter_cs = v & 0xFFFFFFFFu;
      return MsrResult::kOk;
    case kMsrPat:
      // Each entry must be a defined memory type: 0 UC, 1 WC, 4 WT, 5 WP, 6 WB, 7 UC- (11.12.2).
      for (unsigned k = 0; k < 8; ++k) {
        const unsigned t = (v >> (8 * k)) & 0xFF;
        if (t == 2 || t == 3 || t > 7) return MsrResult::kGp;
      }
      s.pat = v;
      return MsrResult::kOk;
    default: {
      const MsrResult r = host.wrmsr(msr, v);
      exit_after = true;
      return r;
    }
  }
}

void Core::check_io(uint16_t port, unsigned size) {
  if (!protected_ || cpl <= iopl(*this)) return;
  // CPL > IOPL: every port of the access must be allowed by the TSS I/O bitmap (vol. 1 19.5.2).
  const Segment& tr = s.tr;
  const unsigned type = tr.ar & 0xF;
  if ((tr.ar & kArUnusable) != 0 || (type != 0x9 && type != 0xB) || tr.limit < 0x67) {
    fault(kExcGP, 0);
  }
  const bool lma = (s.efer & kEferLma) != 0;
  auto lin = [&](uint64_t off) { return lma ? tr.base + off : (tr.base + off) & 0xFFFFFFFFu; };
  const uint64_t map = rd_sys(lin(0x66), 2);
  const uint64_t byte = map + port / 8;
  if (byte + 1 > tr.limit) fault(kExcGP, 0);
  const uint64_t bits = rd_sys(lin(byte), 2);
  if ((bits & (((1u << size) - 1) << (port & 7))) != 0) fault(kExcGP, 0);
}

// ---- handlers

void h_hlt(Core& c, const Insn&) {
  require_cpl0(c);
  c.s.activity = Activity::kHalted;
  c.end_block = true;
}

void h_cli(Core& c, const Insn&) {
  if (c.protected_ && c.cpl > iopl(c)) c.fault(kExcGP, 0);
  c.s.rflags &= ~kIF;
  c.end_block = true;
}

void h_sti(Core& c, const Insn&) {
  if (c.protected_ && c.cpl > iopl(c)) c.fault(kExcGP, 0);
  // Interrupts stay blocked for one more instruction only when STI actually sets IF (6.8.3).
  if ((c.s.rflags & kIF) == 0) c.s.sti_shadow = true;
  c.s.rflags |= kIF;
  c.end_block = true;
}

void h_in(Core& c, const Insn& i) {
  const uint16_t port = static_cast<uint16_t>(i.op ? c.reg(kRdx, 2) : (i.imm & 0xFF));
  c.check_io(port, i.osz);
  const uint32_t v = c.host.pio_in(port, i.osz);
  c.set_reg(kRax, i.osz, v);
  c.exit_after = true;
}

void h_out(Core& c, const Insn& i) {
  const uint16_t port = static_cast<uint16_t>(i.op ? c.reg(kRdx, 2) : (i.imm & 0xFF));
  c.check_io(port, i.osz);
  c.host.pio_out(port, i.osz, static_cast<uint32_t>(c.reg(kRax, i.osz)));
  c.exit_after = true;
}

void h_cpuid(Core& c, const Insn&) {
  const CpuidLeaf l =
      c.host.cpuid(static_cast<uint32_t>(c.reg(kRax, 4)), static_cast<uint32_t>(c.reg(kRcx, 4)));
  c.set_reg(kRax, 4, l.eax);
  c.set_reg(kRbx, 4, l.ebx);
  c.set_reg(kRcx, 4, l.ecx);
  c.set_reg(kRdx, 4, l.edx);
}

void h_rdtsc(Core& c, const Insn&) {
  if ((c.s.cr4 & kCr4Tsd) && c.cpl != 0) c.fault(kExcGP, 0);
  const uint64_t t = c.host.rdtsc();
  c.set_reg(kRax, 4, t & 0xFFFFFFFFu);
  c.set_reg(kRdx, 4, t >> 32);
}

void h_rdtscp(Core& c, const Insn& i) {
  if (!c.features.rdtscp) c.fault(kExcUD);
  h_rdtsc(c, i);
  c.set_reg(kRcx, 4, c.host.tsc_aux() & 0xFFFFFFFFu);
}

void h_rdmsr(Core& c, const Insn&) {
  require_cpl0(c);
  uint64_t v = 0;
  if (c.rdmsr(static_cast<uint32_t>(c.reg(kRcx, 4)), &v) != MsrResult::kOk) c.fault(kExcGP, 0);
  c.set_reg(kRax, 4, v & 0xFFFFFFFFu);
  c.set_reg(kRdx, 4, v >> 32);
}

void h_wrmsr(Core& c, const Insn&) {
  require_cpl0(c);
  const uint64_t v = (c.reg(kRdx, 4) << 32) | c.reg(kRax, 4);
  if (c.wrmsr(static_cast<uint32_t>(c.reg(kRcx, 4)), v) != MsrResult::kOk) c.fault(kExcGP, 0);
}

void h_mov_to_cr(Core& c, const Insn& i) {
  require_cpl0(c);
  c.write_cr(i.op, c.reg(i.rm, i.osz));
}

void h_mov_from_cr(Core& c, const Insn& i) {
  require_cpl0(c);
  c.set_reg(i.rm, i.osz, c.read_cr(i.op));
}

namespace {

// DR4/DR5 alias DR6/DR7 unless CR4.DE (SDM 17.2.2).
unsigned debug_register(Core& c, unsigned n) {
  if (n == 4 || n == 5) {
    if (c.s.cr4 & kCr4De) c.fault(kExcUD);
    n += 2;
  }
  if (n > 7) c.fault(kExcUD);
  return n;
}

}  // namespace

void h_mov_to_dr(Core& c, const Insn& i) {
  require_cpl0(c);
  const unsigned n = debug_register(c, i.op);
  uint64_t v = c.reg(i.rm, i.osz);
  if (n >= 6) {
    if ((v >> 32) != 0) c.fault(kExcGP, 0);
    v |= n == 6 ? 0xFFFF0FF0u : 0x400u;  // reserved bits that read as 1
  }
  c.s.dr[n] = v;
}

void h_mov_from_dr(Core& c, const Insn& i) {
  require_cpl0(c);
  c.set_reg(i.rm, i.osz, c.s.dr[debug_register(c, i.op)]);
}

void h_mov_to_sreg(Core& c, const Insn& i) {
  if (i.op == kCs || i.op > kGs) c.fault(kExcUD);
  c.load_seg(i.op, static_cast<uint16_t>(c.rm_read(i, 2)));
  if (i.op == kSs) {
    // MOV SS holds off interrupts and debug traps for one instruction (6.8.3), so that the
    // following MOV (E/R)SP completes the stack switch.
    c.update_mode();
    c.s.mov_ss_shadow = true;
    c.end_block = true;
  }
}

void h_mov_from_sreg(Core& c, const Insn& i) {
  if (i.op > kGs) c.fault(kExcUD);
  store_selector_like(c, i, c.s.seg[i.op].selector);
}

void h_lxs(Core& c, const Insn& i) {
  if (!i.is_mem() || i.op == kCs || i.op > kGs) c.fault(kExcUD);
  const uint64_t off = c.ea(i);
  const uint64_t offset = c.rd(i.seg, off, i.osz);
  const uint16_t sel = static_cast<uint16_t>(c.rd(i.seg, offset_plus(i, off, i.osz), 2));
  c.load_seg(i.op, sel);
  c.set_reg(i.reg, i.osz, offset);
  if (i.op == kSs) c.update_mode();
  c.end_block = true;
}

namespace {

void load_table_reg(Core& c, const Insn& i, TableReg& t) {
  if (!i.is_mem()) c.fault(kExcUD);
  require_cpl0(c);
  const uint64_t off = c.ea(i);
  const uint16_t limit = static_cast<uint16_t>(c.rd(i.seg, off, 2));
  uint64_t base;
  if (c.long64) {
    base = c.rd(i.seg, offset_plus(i, off, 2), 8);
    if (!canonical(base)) c.fault(kExcGP, 0);
  } else {
    base = c.rd(i.seg, offset_plus(i, off, 2), 4);
    if (i.osz == 2) base &= 0xFFFFFF;  // 16-bit operand size loads a 24-bit base
  }
  t.base = base;
  t.limit = limit;
}

void store_table_reg(Core& c, const Insn& i, const TableReg& t) {
  if (!i.is_mem()) c.fault(kExcUD);
  const uint64_t off = c.ea(i);
  // Translate both parts before storing either.
  const unsigned base_size = c.long64 ? 8 : 4;
  c.linear(i.seg, offset_plus(i, off, 2), base_size, true);
  c.wr(i.seg, off, 2, t.limit);
  c.wr(i.seg, offset_plus(i, off, 2), base_size, c.long64 ? t.base : (t.base & 0xFFFFFFFFu));
}

}  // namespace

void h_lgdt(Core& c, const Insn& i) {
  load_table_reg(c, i, c.s.gdtr);
}
void h_lidt(Core& c, const Insn& i) {
  load_table_reg(c, i, c.s.idtr);
}
void h_sgdt(Core& c, const Insn& i) {
  store_table_reg(c, i, c.s.gdtr);
}
void h_sidt(Core& c, const Insn& i) {
  store_table_reg(c, i, c.s.idtr);
}

void h_lldt(Core& c, const Insn& i) {
  if (!c.protected_) c.fault(kExcUD);
  require_cpl0(c);
  const uint16_t sel = static_cast<uint16_t>(c.rm_read(i, 2));
  const uint32_t err = sel & 0xFFFC;
  if (err == 0) {
    c.s.ldtr = Segment{sel, 0, 0, kArUnusable};  // a null LDT: LDT references then #GP
    return;
  }
  if (sel & 4) c.fault(kExcGP, err);  // the LDT descriptor lives in the GDT
  const uint64_t d = c.read_descriptor(sel, kExcGP);
  if (desc_s(d) || desc_type(d) != 2) c.fault(kExcGP, err);
  if (!desc_present(d)) c.fault(kExcNP, err);
  Segment l = Core::descriptor_to_segment(sel, d);
  if (c.s.efer & kEferLma) {
    l.base |= system_base_high(c, sel);
    if (!canonical(l.base)) c.fault(kExcGP, err);
  }
  c.s.ldtr = l;
}

void h_sldt(Core& c, const Insn& i) {
  if (!c.protected_) c.fault(kExcUD);
  store_selector_like(c, i, c.s.ldtr.selector);
}

void h_ltr(Core& c, const Insn& i) {
  if (!c.protected_) c.fault(kExcUD);
  require_cpl0(c);
  const uint16_t sel = static_cast<uint16_t>(c.rm_read(i, 2));
  const uint32_t err = sel & 0xFFFC;
  if (err == 0) c.fault(kExcGP, 0);
  if (sel & 4) c.fault(kExcGP, err);
  const uint64_t d = c.read_descriptor(sel, kExcGP);
  // Only an available 32-bit / 64-bit TSS (type 9); a busy one (0xB) or a 16-bit TSS (type 1,
  // not supported) is #GP.
  if (desc_s(d) || desc_type(d) != 0x9) c.fault(kExcGP, err);
  if (!desc_present(d)) c.fault(kExcNP, err);
  Segment t = Core::descriptor_to_segment(sel, d);
  if (c.s.efer & kEferLma) {
    t.base |= system_base_high(c, sel);
    if (!canonical(t.base)) c.fault(kExcGP, err);
  }
  // Mark the descriptor busy (SDM 7.2.2) and load TR.
  uint64_t lin;
  c.descriptor_address(sel, &lin);
  c.wr_sys(lin + 5, 1, ((d >> 40) & 0xFF) | 2);
  t.ar |= 2;
  c.s.tr = t;
}

void h_str(Core& c, const Insn& i) {
  if (!c.protected_) c.fault(kExcUD);
  store_selector_like(c, i, c.s.tr.selector);
}

void h_lmsw(Core& c, const Insn& i) {
  require_cpl0(c);
  const uint64_t v = c.rm_read(i, 2);
  // LMSW writes CR0[3:0] and can set PE but not clear it.
  const uint64_t cr0 = (c.s.cr0 & ~0xFull) | (v & 0xF) | (c.s.cr0 & kCr0Pe);
  c.write_cr(0, cr0);
}

void h_smsw(Core& c, const Insn& i) {
  store_selector_like(c, i, c.s.cr0);
}

void h_clts(Core& c, const Insn&) {
  require_cpl0(c);
  c.s.cr0 &= ~kCr0Ts;
}

void h_invlpg(Core& c, const Insn& i) {
  if (!i.is_mem()) c.fault(kExcUD);
  require_cpl0(c);
  // The TLB holds 4 KiB pieces of (possibly large) pages and does not remember the page size,
  // so the whole TLB goes: always a superset of what INVLPG must drop.
  c.flush_tlb();
}

void h_wbinvd(Core& c, const Insn&) {
  require_cpl0(c);
}  // no caches to write back

void h_swapgs(Core& c, const Insn&) {
  if (!c.long64) c.fault(kExcUD);
  require_cpl0(c);
  const uint64_t gs = c.s.seg[kGs].base;
  c.s.seg[kGs].base = c.s.kernel_gs_base;
  c.s.kernel_gs_base = gs;
}

void h_syscall(Core& c, const Insn&) {
  // Long-mode SYSCALL (SDM vol. 2 "SYSCALL"); Intel CPUs raise #UD outside 64-bit mode.
  if (!(c.s.efer & kEferSce) || !c.long64) c.fault(kExcUD);
  const uint64_t fl = c.flags();
  c.s.gpr[kRcx] = c.next_rip;
  c.s.gpr[kR11] = fl & ~kRF;
  const uint16_t sel = static_cast<uint16_t>((c.s.star >> 32) & 0xFFFC);
  // Flat 64-bit DPL-0 code and flat writable data, fixed by the instruction, not read from the GDT.
  c.s.seg[kCs] = Segment{sel, 0, 0xFFFFFFFFu, 0xA09B};
  c.s.seg[kSs] = Segment{static_cast<uint16_t>(sel + 8), 0, 0xFFFFFFFFu, 0xC093};
  c.set_flags(fl & ~c.s.sfmask & ~(kRF | kVM));
  c.next_rip = c.s.lstar;
  c.update_mode();
  c.end_block = true;
}

void h_sysret(Core& c, const Insn& i) {
  if (!(c.s.efer & kEferSce) || !c.long64) c.fault(kExcUD);
  require_cpl0(c);
  const uint16_t base = static_cast<uint16_t>(c.s.star >> 48);
  uint64_t rip;
  if (i.osz == 8) {
    rip = c.s.gpr[kRcx];
    if (!canonical(rip)) c.fault(kExcGP, 0);
    c.s.seg[kCs] = Segment{static_cast<uint16_t>((base + 16) | 3), 0, 0xFFFFFFFFu, 0xA0FB};
  } else {
    rip = c.s.gpr[kRcx] & 0xFFFFFFFFu;
    c.s.seg[kCs] = Segment{static_cast<uint16_t>(base | 3), 0, 0xFFFFFFFFu, 0xC0FB};
  }
  c.s.seg[kSs] = Segment{static_cast<uint16_t>((base + 8) | 3), 0, 0xFFFFFFFFu, 0xC0F3};
  c.set_flags((c.s.gpr[kR11] & 0x3C7FD7) | 2);  // RF and VM cleared
  c.next_rip = rip;
  c.update_mode();
  c.end_block = true;
}

void h_monitor(Core& c, const Insn& i) {
  if (!c.features.monitor || c.cpl != 0) c.fault(kExcUD);
  if (c.reg(kRcx, 4) != 0) c.fault(kExcGP, 0);  // no MONITOR extensions
  // The address is checked like a read; nothing is armed (MWAIT does not watch it).
  c.linear(i.seg, c.reg(kRax, i.asz), 1, false);
}

void h_mwait(Core& c, const Insn&) {
  if (!c.features.monitor || c.cpl != 0) c.fault(kExcUD);
  if ((c.reg(kRcx, 4) & ~1ull) != 0) c.fault(kExcGP, 0);  // only "interrupt as break event"
  c.s.activity = Activity::kHalted;
  c.end_block = true;
}

namespace {

// Reads the descriptor LAR/LSL/VERR/VERW examine; false (ZF=0) for null or out-of-table.
bool probe_descriptor(Core& c, uint16_t sel, uint64_t* d) {
  uint64_t lin;
  if ((sel & 0xFFFC) == 0 || !c.descriptor_address(sel, &lin)) return false;
  *d = c.rd_sys(lin, 8);
  return true;
}

// The privilege check shared by LAR/LSL/VERR/VERW: conforming code is always visible.
bool visible(const Core& c, uint16_t sel, uint64_t d) {
  if (desc_conforming(d)) return true;
  return desc_dpl(d) >= c.cpl && desc_dpl(d) >= (sel & 3u);
}

bool system_type_ok(const Core& c, unsigned type, bool for_lar) {
  const bool lma = (c.s.efer & kEferLma) != 0;
  switch (type) {
    case 0x2:
    case 0x9:
    case 0xB:
      return true;  // LDT, available / busy 32/64-bit TSS
    case 0x1:
    case 0x3:
      return !lma;  // 16-bit TSS
    case 0xC:
      return for_lar;  // call gate
    case 0x4:
    case 0x5:
      return for_lar && !lma;  // 16-bit call gate, task gate
    default:
      return false;
  }
}

}  // namespace

void h_lar(Core& c, const Insn& i) {
  if (!c.protected_) c.fault(kExcUD);
  const uint16_t sel = static_cast<uint16_t>(c.rm_read(i, 2));
  uint64_t d = 0;
  bool ok = probe_descriptor(c, sel, &d);
  if (ok && !desc_s(d) && !system_type_ok(c, desc_type(d), true)) ok = false;
  if (ok && !visible(c, sel, d)) ok = false;
  set_zf(c, ok);
  if (ok) c.set_reg(i.reg, i.osz, (d >> 32) & (i.osz == 2 ? 0xFF00u : 0x00F0FF00u));
}

void h_lsl(Core& c, const Insn& i) {
  if (!c.protected_) c.fault(kExcUD);
  const uint16_t sel = static_cast<uint16_t>(c.rm_read(i, 2));
  uint64_t d = 0;
  bool ok = probe_descriptor(c, sel, &d);
  if (ok && !desc_s(d) && !system_type_ok(c, desc_type(d), false)) ok = false;
  if (ok && !visible(c, sel, d)) ok = false;
  set_zf(c, ok);
  if (ok) {
    const uint32_t limit = Core::descriptor_to_segment(sel, d).limit;
    c.set_reg(i.reg, i.osz, i.osz == 2 ? (limit & 0xFFFF) : limit);
  }
}

void h_verr(Core& c, const Insn& i) {
  if (!c.protected_) c.fault(kExcUD);
  const uint16_t sel = static_cast<uint16_t>(c.rm_read(i, 2));
  uint64_t d = 0;
  bool ok = probe_descriptor(c, sel, &d) && desc_s(d) && visible(c, sel, d);
  if (ok) {
    const bool code = desc_code(d);
    const bool rw = (desc_type(d) & 2) != 0;
    ok = i.op == 0 ? (!code || rw)   // VERR: data, or readable code
                   : (!code && rw);  // VERW: writable data
  }
  set_zf(c, ok);
}

}  // namespace apicv::cpu
