// Initial vCPU register states; see cpu_state.h for the SDM sections.
#include "platform/cpu_state.h"

namespace apicv::platform {

namespace {

SegmentState Seg(uint16_t sel, uint64_t base, uint32_t limit, uint8_t type, bool s, bool db, bool l,
                 bool g) {
  SegmentState seg;
  seg.selector = sel;
  seg.base = base;
  seg.limit = limit;
  seg.type = type;
  seg.s = s;
  seg.present = true;
  seg.db = db;
  seg.l = l;
  seg.g = g;
  return seg;
}

}  // namespace

CpuState InitCpuState() {
  CpuState st;
  st.mode = EntryMode::kReal16;
  st.rip = 0xFFF0;
  st.cs = Seg(0xF000, 0xFFFF0000, 0xFFFF, 0xB, true, false, false, false);
  st.ds = st.es = st.fs = st.gs = st.ss = Seg(0, 0, 0xFFFF, 0x3, true, false, false, false);
  st.ldtr = Seg(0, 0, 0xFFFF, 0x2, false, false, false, false);  // LDT
  st.tr = Seg(0, 0, 0xFFFF, 0xB, false, false, false, false);    // busy 32-bit TSS
  st.gdt = {0, 0xFFFF};
  st.idt = {0, 0xFFFF};
  st.cr0 = kCr0Cd | kCr0Nw | kCr0Et;
  return st;
}

CpuState SipiCpuState(uint8_t vector) {
  CpuState st = InitCpuState();
  st.cs.selector = static_cast<uint16_t>(vector << 8);
  st.cs.base = static_cast<uint64_t>(vector) << 12;
  st.rip = 0;
  return st;
}

CpuState BootCpuState(const BootImage& boot) {
  CpuState st = InitCpuState();
  st.mode = boot.mode;
  st.rip = boot.entry;
  switch (boot.mode) {
    case EntryMode::kReal16:
      st.cs = Seg(0, 0, 0xFFFF, 0xB, true, false, false, false);
      st.ds = st.es = st.fs = st.gs = st.ss = Seg(0, 0, 0xFFFF, 0x3, true, false, false, false);
      st.cr0 &= ~(kCr0Pe | kCr0Pg);
      st.rsp = 0x7C00;
      break;
    case EntryMode::kProtected32:
      st.cs = Seg(0x10, 0, 0xFFFFFFFF, 0xB, true, true, false, true);
      st.ds = st.es = st.fs = st.gs = st.ss =
          Seg(0x18, 0, 0xFFFFFFFF, 0x3, true, true, false, true);
      st.cr0 = (st.cr0 | kCr0Pe | kCr0Et) & ~(kCr0Pg | kCr0Nw | kCr0Cd);
      st.rax = boot.eax;
      st.rbx = boot.ebx;
      break;
    case EntryMode::kLong64:
      st.cs = Seg(0x8, 0, 0xFFFFFFFF, 0xB, true, false, true, true);
      st.ds = st.es = st.fs = st.gs = st.ss =
          Seg(0x10, 0, 0xFFFFFFFF, 0x3, true, true, false, true);
      st.gdt = {boot.gdt_base, boot.gdt_limit};
      st.cr3 = boot.cr3;
      st.cr4 |= kCr4Pae;
      st.cr0 = (st.cr0 | kCr0Pe | kCr0Et | kCr0Pg) & ~(kCr0Nw | kCr0Cd);
      st.efer |= kEferLme | kEferLma;
      st.rsp = 0x80000;
      break;
  }
  return st;
}

}  // namespace apicv::platform
