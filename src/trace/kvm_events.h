// KVM tracepoints apicv emits, with the TP_printk text of Linux arch/x86/kvm/trace.h and
// include/trace/events/kvm.h reproduced exactly (the format strings are noted per event).
// `Format*` build the event body; `trace_*` check the sink first, so a disabled tracepoint costs
// one null test and one relaxed load and no formatting.
//
// Symbolic fields follow __print_symbolic(): a value missing from the table prints as "0x%lx".
// __print_flags() joins set flag names with the delimiter in table order.
//
// Not supported: kvm_pit_* events (KVM's i8254.c has no tracepoints of its own; PIT activity shows
// as kvm_pic_set_irq / kvm_ioapic_set_irq on pin 0/2), kvm_apicv_accept_irq's pre-2015 "coalesced"
// suffix, the pre-2024 kvm_apicv_inhibit_changed format without names.
#pragma once

#include <cstdint>
#include <string>

#include "trace/trace_sink.h"

namespace apicv::trace {

// "%s reason=%u, inhibits=0x%lx%s%s" with kvm_print_apicv_inhibit_reasons(): set/cleared, the
// reason number, the mask, then " NAME|NAME" when the mask is non-zero.
std::string FormatApicvInhibitChanged(unsigned reason, bool set, unsigned long inhibits);
// "%s 0x%x%s": "IRQ" or "Soft/INTn", the vector, " [reinjected]".
std::string FormatInjVirq(unsigned vector, bool soft, bool reinjected);
// "dst %x vec %u (%s|%s|%s|%s|%s)": delivery mode, logical/physical, assert/de-assert,
// level/edge, shorthand (dst/self/all/all-but-self), from the ICR low word.
std::string FormatApicIpi(uint32_t icr_low, uint32_t dest_id);
// "apicid %x vec %u (%s|%s)": dm is the delivery mode field in ICR position (bits 10:8).
std::string FormatApicAcceptIrq(uint32_t apicid, uint16_t dm, uint16_t tm, uint8_t vec);
// "apicid %x vector %d"
std::string FormatEoi(uint32_t apicid, int vector);
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

// Tracepoints. `sink` may be null.
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
inline void trace_kvm_eoi(TraceSink* sink, uint32_t apicid, int vector) {
  if (sink && sink->enabled()) sink->emit("kvm_eoi", FormatEoi(apicid, vector));
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

}  // namespace apicv::trace
