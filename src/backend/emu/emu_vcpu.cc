// One emulated vCPU's exits and CPU model, shared by both -accel emu schedulers: see emu_vcpu.h.
#include "backend/emu/emu_vcpu.h"

#include <linux/kvm.h>

#include <cstring>
#include <stdexcept>
#include <string>

#include "backend/emu/emu_cpuid.h"
#include "platform/guest_memory.h"

namespace apicv::emu {

namespace {

cpu::Segment ToSegment(const platform::SegmentState& s) {
  cpu::Segment g;
  g.selector = s.selector;
  g.base = s.base;
  g.limit = s.limit;
  g.ar = (s.type & 0xFu) | (s.s ? 0x10u : 0) | ((s.dpl & 3u) << 5) | (s.present ? 0x80u : 0) |
         (s.l ? 0x2000u : 0) | (s.db ? 0x4000u : 0) | (s.g ? 0x8000u : 0);
  return g;
}

}  // namespace

void LoadBootState(cpu::Cpu& c, const platform::CpuState& p) {
  cpu::CpuState& s = c.state();
  s.rip = p.rip;
  s.rflags = p.rflags | 2;
  s.gpr[cpu::kRax] = p.rax;
  s.gpr[cpu::kRbx] = p.rbx;
  s.gpr[cpu::kRsp] = p.rsp;
  s.seg[cpu::kCs] = ToSegment(p.cs);
  s.seg[cpu::kDs] = ToSegment(p.ds);
  s.seg[cpu::kEs] = ToSegment(p.es);
  s.seg[cpu::kFs] = ToSegment(p.fs);
  s.seg[cpu::kGs] = ToSegment(p.gs);
  s.seg[cpu::kSs] = ToSegment(p.ss);
  s.ldtr = ToSegment(p.ldtr);
  s.tr = ToSegment(p.tr);
  s.gdtr = {p.gdt.base, p.gdt.limit};
  s.idtr = {p.idt.base, p.idt.limit};
  s.cr0 = p.cr0;
  s.cr2 = p.cr2;
  s.cr3 = p.cr3;
  s.cr4 = p.cr4;
  s.efer = p.efer;
  c.state_changed();
}

EmuVcpu CreateVcpu(const platform::RunOptions& opt, cpu::GuestRam& ram, ExitContext& ctx,
                   const EmuPlatform& p, platform::RunCounters& counters, int v) {
  const CpuVendor vendor =
      opt.vm_config.pmu_vendor == virt::PmuVendor::kAmd ? CpuVendor::kAmd : CpuVendor::kIntel;
  const cpu::CpuFeatures features;
  const platform::GuestPmu pmu = platform::GuestPmuFor(true, opt.vm_config);
  std::vector<platform::CpuidEntry> cpuid =
      platform::ApicvCpuid(EmuBaseCpuid(vendor, features), static_cast<uint32_t>(v), pmu);
  platform::PatchCpuidForCpuModel(cpuid, opt.vm_config);  // -cpu
  EmuVcpu e;
  e.host = std::make_unique<VcpuHost>(ctx, p, counters, v, std::move(cpuid));
  e.cpu = std::make_unique<cpu::Cpu>(ram, *e.host, features);
  return e;
}

void CheckOptions(const platform::RunOptions& opt, const EmuOptions& emu) {
  if (opt.smp < 1 || opt.smp > platform::kMaxVcpus) {
    throw std::runtime_error("-smp must be 1.." + std::to_string(platform::kMaxVcpus));
  }
  if (opt.irqchip != platform::IrqchipMode::kApicv) {
    throw std::runtime_error("--irqchip kvm (KVM's in-kernel irqchip) needs -accel kvm");
  }
  if (emu.icount_shift > 10) throw std::runtime_error("icount shift must be 0..10");
  if (emu.quantum == 0) throw std::runtime_error("the scheduling quantum must be at least 1");
  if (opt.mem_size > platform::GuestMemory::kHoleStart) {
    throw std::runtime_error("-accel emu supports at most 3 GiB of RAM (no RAM above the hole)");
  }
}

uint32_t VcpuHost::pio_in(uint16_t port, unsigned size) {
  ctx_.leave_guest(v_, trace::ExitReason::kIo);
  uint8_t buf[4] = {};
  p_.machine.PioIn(v_, port, buf, size);
  ++counters_.exits[KVM_EXIT_IO];
  uint32_t v = 0;
  std::memcpy(&v, buf, size > 4 ? 4 : size);
  return v;
}

void VcpuHost::pio_out(uint16_t port, unsigned size, uint32_t value) {
  ctx_.leave_guest(v_, trace::ExitReason::kIo);
  uint8_t buf[4];
  std::memcpy(buf, &value, 4);
  ctx_.stop(p_.machine.PioOut(v_, port, buf, size));
  ++counters_.exits[KVM_EXIT_IO];
}

void VcpuHost::mmio_read(uint64_t gpa, void* data, unsigned len) {
  ctx_.leave_guest(v_, trace::ExitReason::kMmio);
  p_.machine.MmioRead(v_, gpa, static_cast<uint8_t*>(data), len);
  ++counters_.exits[KVM_EXIT_MMIO];
}

void VcpuHost::mmio_write(uint64_t gpa, const void* data, unsigned len) {
  ctx_.leave_guest(v_, trace::ExitReason::kMmio);
  uint8_t buf[8] = {};
  std::memcpy(buf, data, len > 8 ? 8 : len);
  p_.machine.MmioWrite(v_, gpa, buf, len);
  ++counters_.exits[KVM_EXIT_MMIO];
}

cpu::MsrResult VcpuHost::rdmsr(uint32_t msr, uint64_t* value) {
  ctx_.leave_guest(v_, trace::ExitReason::kMsrRead);
  ++counters_.msr_exits_inval;
  ++counters_.exits[KVM_EXIT_X86_RDMSR];
  const bool ok = p_.machine.Rdmsr(v_, msr, value, platform::MsrMiss::kGp);
  return ok ? cpu::MsrResult::kOk : cpu::MsrResult::kGp;
}

cpu::MsrResult VcpuHost::wrmsr(uint32_t msr, uint64_t value) {
  ctx_.leave_guest(v_, trace::ExitReason::kMsrWrite);
  ++counters_.msr_exits_inval;
  ++counters_.exits[KVM_EXIT_X86_WRMSR];
  const bool ok = p_.machine.Wrmsr(v_, msr, value, platform::MsrMiss::kGp);
  return ok ? cpu::MsrResult::kOk : cpu::MsrResult::kGp;
}

uint64_t VcpuHost::read_cr8() {
  return p_.chip.get_cr8(v_);
}
void VcpuHost::write_cr8(uint64_t value) {
  p_.chip.set_cr8(v_, value);
}

cpu::CpuidLeaf VcpuHost::cpuid(uint32_t leaf, uint32_t subleaf) {
  cpu::CpuidLeaf r;
  if (const platform::CpuidEntry* e = platform::FindCpuid(cpuid_, leaf, subleaf)) {
    r.eax = e->eax;
    r.ebx = e->ebx;
    r.ecx = e->ecx;
    r.edx = e->edx;
  }
  return r;
}

uint64_t VcpuHost::rdtsc() {
  return p_.clock.tsc();
}

}  // namespace apicv::emu
