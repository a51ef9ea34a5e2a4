// Event body formatting; see kvm_events.h for the kernel format strings reproduced.
#include "trace/kvm_events.h"

#include <cstdarg>
#include <cstdio>
#include <string_view>

#include "x86/inhibit_reason.h"

namespace apicv::trace {

namespace {

std::string Printf(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
std::string Printf(const char* fmt, ...) {
  char buf[256];
  va_list ap;
  va_start(ap, fmt);
  const int n = std::vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  if (n < 0) return {};
  return std::string(buf, static_cast<size_t>(n) < sizeof(buf) ? n : sizeof(buf) - 1);
}

// KVM's kvm_deliver_mode table (delivery mode field, 3 bits).
const char* const kDeliverMode[8] = {"Fixed", "LowPrio", "SMI",  "Res3",
                                     "NMI",   "INIT",    "SIPI", "ExtINT"};
// kvm_apic_dst_shorthand.
const char* const kShorthand[4] = {"dst", "self", "all", "all-but-self"};

// kvm_trace_symbol_apic: xAPIC register offsets and their APIC_* names.
struct ApicRegName {
  uint32_t offset;
  const char* name;
};
constexpr ApicRegName kApicRegs[] = {
    {0x20, "APIC_ID"},      {0x30, "APIC_LVR"},       {0x80, "APIC_TASKPRI"}, {0x90, "APIC_ARBPRI"},
    {0xA0, "APIC_PROCPRI"}, {0xB0, "APIC_EOI"},       {0xC0, "APIC_RRR"},     {0xD0, "APIC_LDR"},
    {0xE0, "APIC_DFR"},     {0xF0, "APIC_SPIV"},      {0x100, "APIC_ISR"},    {0x180, "APIC_TMR"},
    {0x200, "APIC_IRR"},    {0x280, "APIC_ESR"},      {0x300, "APIC_ICR"},    {0x310, "APIC_ICR2"},
    {0x320, "APIC_LVTT"},   {0x330, "APIC_LVTTHMR"},  {0x340, "APIC_LVTPC"},  {0x350, "APIC_LVT0"},
    {0x360, "APIC_LVT1"},   {0x370, "APIC_LVTERR"},   {0x380, "APIC_TMICT"},  {0x390, "APIC_TMCCT"},
    {0x3E0, "APIC_TDCR"},   {0x3F0, "APIC_SELF_IPI"}, {0x400, "APIC_EFEAT"},  {0x410, "APIC_ECTRL"},
};

// __print_symbolic() with kvm_trace_symbol_apic.
std::string ApicRegSymbol(uint32_t offset) {
  for (const auto& r : kApicRegs) {
    if (r.offset == offset) return r.name;
  }
  return Printf("0x%lx", static_cast<unsigned long>(offset));
}

// kvm_irqchips (KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE, KVM_IRQCHIP_IOAPIC).
const char* const kIrqchips[3] = {"PIC master", "PIC slave", "IOAPIC"};

}  // namespace

std::string FormatApicvInhibitChanged(unsigned reason, bool set, unsigned long inhibits) {
  std::string s = Printf("%s reason=%u, inhibits=0x%lx", set ? "set" : "cleared", reason, inhibits);
  if (inhibits != 0) {
    s.push_back(' ');
    bool first = true;
    unsigned long rest = inhibits;
    for (int i = 0; i < x86::kNrApicvInhibitReasons; ++i) {
      const unsigned long bit = 1ul << i;
      if (!(inhibits & bit)) continue;
      if (!first) s.push_back('|');
      s.append(x86::kInhibitReasonNames[i]);
      first = false;
      rest &= ~bit;
    }
    // __print_flags() prints leftover unknown bits as one hex value after the delimiter.
    if (rest) {
      if (!first) s.push_back('|');
      s += Printf("0x%lx", rest);
    }
  }
  return s;
}

std::string FormatInjVirq(unsigned vector, bool soft, bool reinjected) {
  return Printf("%s 0x%x%s", soft ? "Soft/INTn" : "IRQ", vector, reinjected ? " [reinjected]" : "");
}

std::string FormatApicIpi(uint32_t icr_low, uint32_t dest_id) {
  return Printf("dst %x vec %u (%s|%s|%s|%s|%s)", dest_id, icr_low & 0xFFu,
                kDeliverMode[(icr_low >> 8) & 7], (icr_low & (1u << 11)) ? "logical" : "physical",
                (icr_low & (1u << 14)) ? "assert" : "de-assert",
                (icr_low & (1u << 15)) ? "level" : "edge", kShorthand[(icr_low >> 18) & 3]);
}

std::string FormatApicAcceptIrq(uint32_t apicid, uint16_t dm, uint16_t tm, uint8_t vec) {
  return Printf("apicid %x vec %u (%s|%s)", apicid, vec, kDeliverMode[(dm >> 8) & 7],
                tm ? "level" : "edge");
}

std::string FormatEoi(uint32_t apicid, int vector) {
  return Printf("apicid %x vector %d", apicid, vector);
}

std::string FormatApic(bool write, uint32_t reg, uint64_t val) {
  return Printf("apic_%s %s = 0x%llx", write ? "write" : "read", ApicRegSymbol(reg).c_str(),
                static_cast<unsigned long long>(val));
}

std::string FormatAvicIncompleteIpi(uint32_t vcpu, uint32_t icrh, uint32_t icrl, uint32_t id,
                                    uint32_t index) {
  // The kernel's vsnprintf prints the "0x" of %#x even for zero (glibc does not), so the
  // prefix is spelled out: %#010x == 0x%08x and %#x == 0x%x in the kernel.
  return Printf("vcpu=%u, icrh:icrl=0x%08x:%08x, id=%u, index=%u", vcpu, icrh, icrl, id, index);
}

std::string FormatAvicUnacceleratedAccess(uint32_t vcpu, uint32_t offset, bool trap, bool write,
                                          uint32_t vec) {
  const std::string name = ApicRegSymbol(offset);
  return Printf("vcpu=%u, offset=0x%x(%s), %s, %s, vec=0x%x", vcpu, offset, name.c_str(),
                trap ? "trap" : "fault", write ? "write" : "read", vec);
}

std::string FormatPicSetIrq(uint8_t chip, uint8_t pin, uint8_t elcr, uint8_t imr, bool coalesced) {
  // A PIC has 8 pins; other values never match a bit (the kernel never passes them).
  const unsigned bit = pin < 8 ? (1u << pin) : 0;
  return Printf("chip %u pin %u (%s%s)%s", chip, pin, (elcr & bit) ? "level" : "edge",
                (imr & bit) ? "|masked" : "", coalesced ? " (coalesced)" : "");
}

std::string FormatIoapicSetIrq(uint64_t e, int pin, bool coalesced) {
  return Printf("pin %u dst %x vec %u (%s|%s|%s%s)%s", static_cast<unsigned>(pin),
                static_cast<unsigned>((e >> 56) & 0xFF), static_cast<unsigned>(e & 0xFF),
                kDeliverMode[(e >> 8) & 7], (e & (1u << 11)) ? "logical" : "physical",
                (e & (1u << 15)) ? "level" : "edge", (e & (1u << 16)) ? "|masked" : "",
                coalesced ? " (coalesced)" : "");
}

std::string FormatIoapicDelayedEoiInj(uint64_t e) {
  return Printf("dst %x vec %u (%s|%s|%s%s)", static_cast<unsigned>((e >> 56) & 0xFF),
                static_cast<unsigned>(e & 0xFF), kDeliverMode[(e >> 8) & 7],
                (e & (1u << 11)) ? "logical" : "physical", (e & (1u << 15)) ? "level" : "edge",
                (e & (1u << 16)) ? "|masked" : "");
}

std::string FormatMsiSetIrq(uint64_t address, uint64_t data) {
  // Destination ID bits 7:0 from address[19:12], bits 31:8 from address[63:40] (the extended
  // destination ID / x2APIC high bits), as the kernel's expression computes them.
  const unsigned long long dst = ((address >> 12) & 0xFF) | ((address >> 32) & 0xFFFFFF00ull);
  return Printf("dst %llx vec %u (%s|%s|%s%s)", dst, static_cast<unsigned>(data & 0xFF),
                kDeliverMode[(data >> 8) & 7], (address & (1u << 2)) ? "logical" : "physical",
                (data & (1u << 15)) ? "level" : "edge", (address & (1u << 3)) ? "|rh" : "");
}

std::string FormatSetIrq(unsigned gsi, int level, int irq_source_id) {
  return Printf("gsi %u level %d source %d", gsi, level, irq_source_id);
}

std::string FormatAckIrq(unsigned irqchip, unsigned pin) {
  const std::string chip = irqchip < 3 ? std::string(kIrqchips[irqchip])
                                       : Printf("0x%lx", static_cast<unsigned long>(irqchip));
  return Printf("irqchip %s pin %u", chip.c_str(), pin);
}

std::string FormatAvicKickVcpuSlowpath(uint32_t icrh, uint32_t icrl, uint32_t index) {
  // Kernel "%#08x": the 8 columns include "0x", so at least 6 digits, and "0x" even for zero.
  return Printf("icrh:icrl=0x%06x:%08x, index=%u", icrh, icrl, index);
}

std::string FormatAvicDoorbell(uint32_t vcpuid, uint32_t apicid) {
  return Printf("vcpuid=%u, apicid=%u", vcpuid, apicid);
}

uint32_t ExitCode(ExitReason r, bool vmx) {
  switch (r) {
    case ExitReason::kExternalInterrupt:
      return vmx ? 1 : 0x060;
    case ExitReason::kIrqWindow:
      return vmx ? 7 : 0x064;
    case ExitReason::kHlt:
      return vmx ? 12 : 0x078;
    case ExitReason::kIo:
      return vmx ? 30 : 0x07b;
    case ExitReason::kMsrRead:
      return vmx ? 31 : 0x07c;
    case ExitReason::kMsrWrite:
      return vmx ? 32 : 0x07c;
    case ExitReason::kMmio:
      return vmx ? 48 : 0x400;
    case ExitReason::kShutdown:
      return vmx ? 2 : 0x07f;
  }
  return 0;
}

const char* ExitReasonSymbol(ExitReason r, bool vmx) {
  switch (r) {
    case ExitReason::kExternalInterrupt:
      return vmx ? "EXTERNAL_INTERRUPT" : "interrupt";
    case ExitReason::kIrqWindow:
      return vmx ? "INTERRUPT_WINDOW" : "vintr";
    case ExitReason::kHlt:
      return vmx ? "HLT" : "hlt";
    case ExitReason::kIo:
      return vmx ? "IO_INSTRUCTION" : "io";
    case ExitReason::kMsrRead:
      return vmx ? "MSR_READ" : "msr";
    case ExitReason::kMsrWrite:
      return vmx ? "MSR_WRITE" : "msr";
    case ExitReason::kMmio:
      return vmx ? "EPT_VIOLATION" : "npf";
    case ExitReason::kShutdown:
      return vmx ? "TRIPLE_FAULT" : "shutdown";
  }
  return "unknown";
}

std::string FormatKvmEntry(uint32_t vcpu, uint64_t rip) {
  return Printf("vcpu %u, rip 0x%lx", vcpu, static_cast<unsigned long>(rip));
}

std::string FormatKvmExit(uint32_t vcpu, ExitReason r, bool vmx, uint64_t rip) {
  // SVM's msr exit tells read from write in EXITINFO1 (0 read, 1 write).
  const unsigned long long info1 = (!vmx && r == ExitReason::kMsrWrite) ? 1 : 0;
  return Printf(
      "vcpu %u reason %s%s%s rip 0x%lx info1 0x%016llx info2 0x%016llx intr_info 0x%08x "
      "error_code 0x%08x",
      vcpu, ExitReasonSymbol(r, vmx), "", "", static_cast<unsigned long>(rip), info1, 0ull, 0u, 0u);
}

std::string FormatAvicGaLog(uint32_t vmid, uint32_t vcpuid) {
  return Printf("vmid=%u, vcpuid=%u", vmid, vcpuid);
}

}  // namespace apicv::trace
