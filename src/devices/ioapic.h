// I/O APIC (Intel 82093AA) as KVM's virtual IOAPIC emulates it (arch/x86/kvm/ioapic.c).
// Datasheet 3.0 (IOREGSEL/IOWIN), 3.2.1-3.2.3 (ID, version, arbitration), 3.2.4 (IOREDTBL);
// Intel SDM vol. 3A 11.8.4 (EOI broadcast to the I/O APIC).
//
// Supported: 24 pins, ID/version(0x11)/arbitration registers, redirection entries with read-only
// delivery status and remote IRR, edge and level inputs, remote IRR cleared by a broadcast EOI
// (or by reprogramming the entry as edge, as KVM does for OSes that rely on it), re-delivery on
// EOI while a level line is still asserted, re-delivery on unmask of a pending level line, and
// KVM's interrupt-storm guard (every Nth successive EOI re-delivery is deferred).
// Version 0x11 (KVM's) by default; IoApicConfig::version 0x20 adds the EOI register at offset
// 0x40 (a VMM-layer IOAPIC serving directed EOIs). NOT supported: interrupt-remapping
// RTE format, KVM's RTC (GSI 8) coalescing tracking, delivery status (always reads 0, as in KVM),
// reserved RTE bits 55:17 (ignored on write, read as 0; KVM stores them).
// Polarity: KVM passes logical (asserted) levels and only stores the polarity bit; that is the
// default here. IoApicConfig::honor_polarity treats set_irq() levels as electrical pin levels.
// Threading: none inside; the owner serialises calls (one mutex per device).
#pragma once

#include <array>
#include <bitset>
#include <cstdint>
#include <functional>
#include <utility>

#include "x86/interrupt.h"
#include "x86/ioapic_defs.h"

namespace apicv {

struct IoApicConfig {
  // KVM: IOAPIC_SUCCESSIVE_IRQ_MAX_COUNT successive EOI re-deliveries of one level line...
  uint32_t storm_threshold = 10000;
  // ...then the next re-delivery waits HZ/100 (10 ms) of host time.
  uint64_t storm_delay_ns = 10'000'000;
  bool honor_polarity = false;
  // kIoApicVersion (0x11, KVM's in-kernel IOAPIC, no EOI register) or kIoApicVersionEoiRegister.
  uint8_t version = x86::kIoApicVersion;
};

// One interrupt message produced by the IOAPIC: the pin and the request built from its RTE.
struct IoApicDelivery {
  uint8_t pin = 0;
  x86::InterruptRequest irq;
};

// What one call produced. No heap: at most one message per pin per call.
struct IoApicOutput {
  std::array<IoApicDelivery, x86::kIoApicNumPins> deliveries{};
  uint8_t num_deliveries = 0;
  uint32_t acked_pins = 0;         // bit n: pin n's vector was EOIed (fire ack notifiers)
  uint32_t mask_changed_pins = 0;  // bit n: pin n's mask bit changed (fire mask notifiers)
  bool rte_changed = false;        // an RTE was written: rescan routes / EOI-exit bitmaps
  bool coalesced =
      false;  // set_irq: KVM's ret == 0 (an edge already pending; a message no LAPIC took)

  void add(uint8_t pin, const x86::InterruptRequest& irq) {
    if (num_deliveries < deliveries.size()) deliveries[num_deliveries++] = {pin, irq};
  }
};

class IoApic {
 public:
  explicit IoApic(IoApicConfig config = {});

  // `offset` is relative to the IOAPIC base (0 .. kIoApicMmioSize-1); len 1..8.
  IoApicOutput mmio_read(uint32_t offset, void* data, unsigned len, uint64_t now_ns);
  IoApicOutput mmio_write(uint32_t offset, const void* data, unsigned len, uint64_t now_ns);

  // Input pin `pin` now at `level`. Pins >= 24 are ignored.
  IoApicOutput set_irq(unsigned pin, bool level, uint64_t now_ns);

  // EOI broadcast from a local APIC for `vector`; `level_trigger` is that APIC's TMR bit.
  IoApicOutput eoi(uint8_t vector, bool level_trigger, uint64_t now_ns);

  // Runs the storm guard's deferred re-delivery once now_ns >= next_deadline_ns().
  IoApicOutput poll(uint64_t now_ns);
  // UINT64_MAX when nothing is deferred.
  uint64_t next_deadline_ns() const { return deferred_deadline_ns_; }

  // Vectors whose EOIs the IOAPIC must see (KVM's ioapic_handled_vectors): level-triggered RTEs
  // and RTEs of pins in `pins_with_ack_notifier`, for which `targets_vcpu(request)` is true
  // (the caller checks the destination against its vCPU and any EOI still pending there).
  void handled_vectors(std::bitset<256>& out, uint32_t pins_with_ack_notifier,
                       const std::function<bool(const x86::InterruptRequest&)>& targets_vcpu) const;

  void reset();

  // What kvm_irq_delivery_to_apic() would return for a message, asked while the message is
  // sent (under the owner's lock): -1 no destination found (slow path), else the number of LAPICs
  // that accepted it (0: none, e.g. the fast path's empty destination or a software-disabled
  // target). ioapic_service() sets remote IRR only for a non-zero result, and reports a 0 as
  // coalesced. Unset: every message counts as accepted by one LAPIC. Must not call the IoApic.
  using DeliveryResult = std::function<int(const x86::InterruptRequest&)>;
  void set_delivery_result(DeliveryResult f) { delivery_result_ = std::move(f); }

  // Introspection (for tests, the virtualization layer and save/restore).
  uint64_t rte(unsigned pin) const { return pin < x86::kIoApicNumPins ? redirtbl_[pin] : 0; }
  uint32_t irr() const { return irr_; }
  uint8_t id() const { return id_; }
  uint8_t ioregsel() const { return ioregsel_; }
  // Request that RTE `pin` would produce.
  x86::InterruptRequest request_for(unsigned pin) const;

 private:
  uint32_t read_indirect() const;
  void write_indirect(uint32_t value, IoApicOutput& out);
  // Asserted (logical) level of a pin from its electrical level and polarity.
  bool asserted(unsigned pin) const;
  void apply_level(unsigned pin, bool asserted, IoApicOutput& out);
  // KVM's ioapic_service(): deliver if unmasked and (edge or remote IRR clear). Returns -1 when
  // not sent, else the delivery result (see set_delivery_result); remote IRR is set for a level
  // message only when that result is non-zero.
  int service(unsigned pin, IoApicOutput& out);

  IoApicConfig config_;
  std::array<uint64_t, x86::kIoApicNumPins> redirtbl_{};
  std::array<uint32_t, x86::kIoApicNumPins> successive_eoi_{};
  uint32_t irr_ = 0;        // asserted lines (level) / latched edges
  uint32_t pin_level_ = 0;  // electrical level last passed to set_irq
  uint8_t ioregsel_ = 0;
  uint8_t id_ = 0;
  uint64_t deferred_deadline_ns_ = UINT64_MAX;
  DeliveryResult delivery_result_;
};

}  // namespace apicv
