// KVM tracepoints apicv emits, with the TP_printk text of Linux arch/x86/kvm/trace.h (which since
// the June 2025 patch "KVM: Move x86-only tracepoints to x86's trace.h" also holds
// kvm_ioapic_set_irq, kvm_ioapic_delayed_eoi_inj and kvm_msi_set_irq) and
// include/trace/events/kvm.h (kvm_set_irq, kvm_ack_irq) reproduced exactly; the format strings
// are noted per event and docs/trace-format.md lists the kernel versions checked.
// `Format*` build the event body; `trace_*` check the sink first, so a disabled tracepoint costs
// one null test and one relaxed load and no formatting.
//
// Kernel printf details kept: the kernel's "%#x" prints "0x" for zero too (glibc prints "0"), and
// the width of "%#010x" / "%#08x" counts the "0x". Symbolic fields follow __print_symbolic(): a
// value missing from the table prints as "0x%lx". __print_flags() joins set flag names with the
// delimiter in table order and prints leftover unknown bits as one "0x%lx" after a delimiter.
//
// kvm_entry and kvm_exit (the guest-mode boundaries the timeline export draws) fire only when the
// sink's run events are on (TraceSink::set_run_events): a run prints two lines per exit, which
// the repro scenarios, which stream every line, do not need.
//
// Not supported: kvm_pit_* events (KVM's i8254.c has no tracepoints of its own; PIT activity shows
// as kvm_pic_set_irq / kvm_ioapic_set_irq on pin 0/2), the pre-2015 kvm_apic_accept_irq
// " (coalesced)" suffix, the pre-2024 kvm_apicv_inhibit_changed format without names, the pre-6.0
// kvm_inj_virq format "irq %u", the old kvm_ioapic_set_irq spelling "vec=%u" and the old
// kvm_msi_set_irq "dst %u vec %x" (both replaced long before the kernels apicv models).
#pragma once

#include <cstdint>
#include <string>

#include "trace/trace_sink.h"

namespace apicv::trace {

// "%s reason=%u, inhibits=0x%lx%s%s" with kvm_print_apicv_inhibit_reasons(): set/cleared, the
// reason number, the mask, then " NAME|NAME" when the mask is non-zero.
std::string FormatApicvInhibitChanged(unsigned reason, bool set, unsigned long inhibits);
// "%s 0x%x%s": "IRQ" or "Soft/INTn", the vector, " [reinjected]" (Linux 6.0 and later).
std::string FormatInjVirq(unsigned vector, bool soft, bool reinjected);
// "dst %x vec %u (%s|%s|%s|%s|%s)": delivery mode, logical/physical, assert/de-assert,
// level/edge, shorthand (dst/self/all/all-but-self), from the ICR low word.
std::string FormatApicIpi(uint32_t icr_low, uint32_t dest_id);
// "apicid %x vec %u (%s|%s)": dm is the delivery mode field in ICR position (bits 10:8). KVM
// passes vcpu->vcpu_id as "apicid". kvm_apicv_accept_irq (the vendor deliver_interrupt hook when
// the interrupt goes through APICv/AVIC) prints the same text.
std::string FormatApicAcceptIrq(uint32_t apicid, uint16_t dm, uint16_t tm, uint8_t vec);
// "apicid %x vector %d": vcpu_id and the highest ISR vector, -1 when the ISR is empty. kvm_pv_eoi
// prints the same text.
std::string FormatEoi(uint32_t apicid, int vector);
// "apic_%s %s = 0x%llx": read/write, the register from kvm_trace_symbol_apic, the value.
std::string FormatApic(bool write, uint32_t reg, uint64_t val);
// "vcpu=%u, icrh:icrl=%#010x:%08x, id=%u, index=%u"
std::string FormatAvicIncompleteIpi(uint32_t vcpu, uint32_t icrh, uint32_t icrl, uint32_t id,
                                    uint32_t index);
// "vcpu=%u, offset=%#x(%s), %s, %s, vec=%#x": APIC register name, trap/fault, write/read.
std::string FormatAvicUnacceleratedAccess(uint32_t vcpu, uint32_t offset, bool trap, bool write,
                                          uint32_t vec);
// "chip %u pin %u (%s%s)%s": level/edge from ELCR, "|masked" from IMR, " (coalesced)".
std::string FormatPicSetIrq(uint8_t chip, uint8_t pin, uint8_t elcr, uint8_t imr, bool coalesced);
// "pin %u dst %x vec %u (%s|%s|%s%s)%s" from a 64-bit redirection entry.
std::string FormatIoapicSetIrq(uint64_t e, int pin, bool coalesced);
// "dst %x vec %u (%s|%s|%s%s)": the redirection entry re-injected after a level EOI storm.
std::string FormatIoapicDelayedEoiInj(uint64_t e);
// "dst %llx vec %u (%s|%s|%s%s)": MSI address/data; the destination includes the extended
// destination ID bits of address[63:40] ("|rh" when the redirection hint is set).
std::string FormatMsiSetIrq(uint64_t address, uint64_t data);
// "gsi %u level %d source %d"
std::string FormatSetIrq(unsigned gsi, int level, int irq_source_id);
// "irqchip %s pin %u": "PIC master", "PIC slave", "IOAPIC" (KVM_IRQCHIP_* 0..2).
std::string FormatAckIrq(unsigned irqchip, unsigned pin);
// "icrh:icrl=%#08x:%08x, index=%u"
std::string FormatAvicKickVcpuSlowpath(uint32_t icrh, uint32_t icrl, uint32_t index);
// "vcpuid=%u, apicid=%u"
std::string FormatAvicDoorbell(uint32_t vcpuid, uint32_t apicid);
// "vmid=%u, vcpuid=%u"
std::string FormatAvicGaLog(uint32_t vmid, uint32_t vcpuid);

// Why a vCPU left guest mode, named per vendor as KVM's SVM_EXIT_REASONS / VMX_EXIT_REASONS do.
enum class ExitReason : uint8_t {
  kExternalInterrupt,  // svm "interrupt" (0x060), vmx EXTERNAL_INTERRUPT (1): a kick
  kIrqWindow,          // svm "vintr" (0x064), vmx INTERRUPT_WINDOW (7)
  kHlt,                // svm "hlt" (0x078), vmx HLT (12)
  kIo,                 // svm "io" (0x07b), vmx IO_INSTRUCTION (30)
  kMsrRead,            // svm "msr" (0x07c, info1 0), vmx MSR_READ (31)
  kMsrWrite,           // svm "msr" (0x07c, info1 1), vmx MSR_WRITE (32)
  kMmio,               // svm "npf" (0x400), vmx EPT_VIOLATION (48)
  kShutdown,           // svm "shutdown" (0x07f), vmx TRIPLE_FAULT (2)
};
// The exit code and its symbolic name for `vmx` (else svm).
uint32_t ExitCode(ExitReason r, bool vmx);
const char* ExitReasonSymbol(ExitReason r, bool vmx);

// "vcpu %u, rip 0x%lx"
std::string FormatKvmEntry(uint32_t vcpu, uint64_t rip);
// "vcpu %u reason %s%s%s rip 0x%lx info1 0x%016llx info2 0x%016llx intr_info 0x%08x error_code
// 0x%08x": the two %s after the reason are VMX's exit-reason flags, never set here. info1 is the
// MSR direction for an svm msr exit; the other exit-information fields are 0 (apicv models no
// VMCB/VMCS exit information).
std::string FormatKvmExit(uint32_t vcpu, ExitReason r, bool vmx, uint64_t rip);

// Tracepoints. `sink` may be null.
inline void trace_kvm_entry(TraceSink* sink, uint32_t vcpu, uint64_t rip) {
  if (sink && sink->run_events()) sink->emit("kvm_entry", FormatKvmEntry(vcpu, rip));
}
inline void trace_kvm_exit(TraceSink* sink, uint32_t vcpu, ExitReason r, bool vmx, uint64_t rip) {
  if (sink && sink->run_events()) sink->emit("kvm_exit", FormatKvmExit(vcpu, r, vmx, rip));
}
inline void trace_kvm_apicv_inhibit_changed(TraceSink* sink, unsigned reason, bool set,
                                            unsigned long inhibits) {
  if (sink && sink->enabled())
    sink->emit("kvm_apicv_inhibit_changed", FormatApicvInhibitChanged(reason, set, inhibits));
}
inline void trace_kvm_inj_virq(TraceSink* sink, unsigned vector, bool soft, bool reinjected) {
  if (sink && sink->enabled()) sink->emit("kvm_inj_virq", FormatInjVirq(vector, soft, reinjected));
}
inline void trace_kvm_apic_ipi(TraceSink* sink, uint32_t icr_low, uint32_t dest_id) {
  if (sink && sink->enabled()) sink->emit("kvm_apic_ipi", FormatApicIpi(icr_low, dest_id));
}
inline void trace_kvm_apic_accept_irq(TraceSink* sink, uint32_t apicid, uint16_t dm, uint16_t tm,
                                      uint8_t vec) {
  if (sink && sink->enabled())
    sink->emit("kvm_apic_accept_irq", FormatApicAcceptIrq(apicid, dm, tm, vec));
}
inline void trace_kvm_apicv_accept_irq(TraceSink* sink, uint32_t apicid, uint16_t dm, uint16_t tm,
                                       uint8_t vec) {
  if (sink && sink->enabled())
    sink->emit("kvm_apicv_accept_irq", FormatApicAcceptIrq(apicid, dm, tm, vec));
}
inline void trace_kvm_eoi(TraceSink* sink, uint32_t apicid, int vector) {
  if (sink && sink->enabled()) sink->emit("kvm_eoi", FormatEoi(apicid, vector));
}
inline void trace_kvm_pv_eoi(TraceSink* sink, uint32_t apicid, int vector) {
  if (sink && sink->enabled()) sink->emit("kvm_pv_eoi", FormatEoi(apicid, vector));
}
inline void trace_kvm_apic_read(TraceSink* sink, uint32_t reg, uint64_t val) {
  if (sink && sink->enabled()) sink->emit("kvm_apic", FormatApic(false, reg, val));
}
inline void trace_kvm_apic_write(TraceSink* sink, uint32_t reg, uint64_t val) {
  if (sink && sink->enabled()) sink->emit("kvm_apic", FormatApic(true, reg, val));
}
inline void trace_kvm_avic_incomplete_ipi(TraceSink* sink, uint32_t vcpu, uint32_t icrh,
                                          uint32_t icrl, uint32_t id, uint32_t index) {
  if (sink && sink->enabled())
    sink->emit("kvm_avic_incomplete_ipi", FormatAvicIncompleteIpi(vcpu, icrh, icrl, id, index));
}
inline void trace_kvm_avic_unaccelerated_access(TraceSink* sink, uint32_t vcpu, uint32_t offset,
                                                bool trap, bool write, uint32_t vec) {
  if (sink && sink->enabled())
    sink->emit("kvm_avic_unaccelerated_access",
               FormatAvicUnacceleratedAccess(vcpu, offset, trap, write, vec));
}
inline void trace_kvm_pic_set_irq(TraceSink* sink, uint8_t chip, uint8_t pin, uint8_t elcr,
                                  uint8_t imr, bool coalesced) {
  if (sink && sink->enabled())
    sink->emit("kvm_pic_set_irq", FormatPicSetIrq(chip, pin, elcr, imr, coalesced));
}
inline void trace_kvm_ioapic_set_irq(TraceSink* sink, uint64_t e, int pin, bool coalesced) {
  if (sink && sink->enabled())
    sink->emit("kvm_ioapic_set_irq", FormatIoapicSetIrq(e, pin, coalesced));
}
inline void trace_kvm_ioapic_delayed_eoi_inj(TraceSink* sink, uint64_t e) {
  if (sink && sink->enabled())
    sink->emit("kvm_ioapic_delayed_eoi_inj", FormatIoapicDelayedEoiInj(e));
}
inline void trace_kvm_msi_set_irq(TraceSink* sink, uint64_t address, uint64_t data) {
  if (sink && sink->enabled()) sink->emit("kvm_msi_set_irq", FormatMsiSetIrq(address, data));
}
inline void trace_kvm_set_irq(TraceSink* sink, unsigned gsi, int level, int irq_source_id) {
  if (sink && sink->enabled()) sink->emit("kvm_set_irq", FormatSetIrq(gsi, level, irq_source_id));
}
inline void trace_kvm_ack_irq(TraceSink* sink, unsigned irqchip, unsigned pin) {
  if (sink && sink->enabled()) sink->emit("kvm_ack_irq", FormatAckIrq(irqchip, pin));
}
inline void trace_kvm_avic_kick_vcpu_slowpath(TraceSink* sink, uint32_t icrh, uint32_t icrl,
                                              uint32_t index) {
  if (sink && sink->enabled())
    sink->emit("kvm_avic_kick_vcpu_slowpath", FormatAvicKickVcpuSlowpath(icrh, icrl, index));
}
inline void trace_kvm_avic_doorbell(TraceSink* sink, uint32_t vcpuid, uint32_t apicid) {
  if (sink && sink->enabled()) sink->emit("kvm_avic_doorbell", FormatAvicDoorbell(vcpuid, apicid));
}
inline void trace_kvm_avic_ga_log(TraceSink* sink, uint32_t vmid, uint32_t vcpuid) {
  if (sink && sink->enabled()) sink->emit("kvm_avic_ga_log", FormatAvicGaLog(vmid, vcpuid));
}

}  // namespace apicv::trace
