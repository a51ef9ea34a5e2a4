// I/O APIC state machine. See ioapic.h for the references and the list of unsupported features.
#include "devices/ioapic.h"

#include <cstring>

namespace apicv {

using namespace x86;

namespace {

bool IsLevel(uint64_t rte) {
  return rte & kRteTriggerLevel;
}
bool IsMasked(uint64_t rte) {
  return rte & kRteMasked;
}

}  // namespace

IoApic::IoApic(IoApicConfig config) : config_(config) {
  reset();
}

void IoApic::reset() {
  redirtbl_.fill(kRteResetValue);
  successive_eoi_.fill(0);
  irr_ = 0;
  pin_level_ = 0;
  ioregsel_ = 0;
  id_ = 0;
  deferred_deadline_ns_ = UINT64_MAX;
}

InterruptRequest IoApic::request_for(unsigned pin) const {
  InterruptRequest r;
  if (pin >= kIoApicNumPins) return r;
  uint64_t e = redirtbl_[pin];
  r.vector = static_cast<uint8_t>(e & kRteVectorMask);
  r.delivery_mode = static_cast<DeliveryMode>((e & kRteDeliveryModeMask) >> kRteDeliveryModeShift);
  r.dest_logical = e & kRteDestLogical;
  r.level = true;
  r.trigger_level = IsLevel(e);
  r.shorthand = Shorthand::kNone;
  r.dest_id = static_cast<uint32_t>(e >> kRteDestShift);
  return r;
}

bool IoApic::asserted(unsigned pin) const {
  bool electrical = pin_level_ & (1u << pin);
  if (config_.honor_polarity && (redirtbl_[pin] & kRtePolarityLow)) return !electrical;
  return electrical;
}

int IoApic::service(unsigned pin, IoApicOutput& out) {
  uint64_t& e = redirtbl_[pin];
  if (IsMasked(e) || (IsLevel(e) && (e & kRteRemoteIrr))) return -1;
  const x86::InterruptRequest req = request_for(pin);
  out.add(static_cast<uint8_t>(pin), req);
  // Remote IRR follows kvm_irq_delivery_to_apic()'s return value: any non-zero value sets it, so
  // a message no LAPIC accepted (0) leaves it clear, while one the slow path found no
  // destination for (-1) sets it as if delivered (KVM's rule, kept for parity).
  const int r = delivery_result_ ? delivery_result_(req) : 1;
  if (IsLevel(e) && r != 0) e |= kRteRemoteIrr;
  return r;
}

void IoApic::apply_level(unsigned pin, bool level, IoApicOutput& out) {
  uint32_t bit = 1u << pin;
  if (!level) {
    irr_ &= ~bit;
    return;
  }
  uint32_t old_irr = irr_;
  irr_ |= bit;
  // An edge needs a rising transition: a line held high coalesces (KVM returns 0 for it).
  if (!IsLevel(redirtbl_[pin]) && old_irr == irr_) {
    out.coalesced = true;
    return;
  }
  // A masked pin or a level pin waiting for its EOI is not "coalesced": KVM's ioapic_service()
  // returns -1 there; a 0 (an edge that was already pending, or a message no LAPIC accepted) is.
  if (service(pin, out) == 0) out.coalesced = true;
}

IoApicOutput IoApic::set_irq(unsigned pin, bool level, uint64_t /*now_ns*/) {
  IoApicOutput out;
  if (pin >= kIoApicNumPins) return out;
  if (level)
    pin_level_ |= 1u << pin;
  else
    pin_level_ &= ~(1u << pin);
  apply_level(pin, asserted(pin), out);
  return out;
}

uint32_t IoApic::read_indirect() const {
  switch (ioregsel_) {
    case kIoApicIndexVersion:
      return ((kIoApicNumPins - 1) << 16) | config_.version;
    case kIoApicIndexId:
    case kIoApicIndexArbitration:
      return static_cast<uint32_t>(id_ & 0xF) << 24;
    default:
      break;
  }
  // Indices 0x03-0x0F and beyond the last RTE read as all ones, as in KVM.
  if (ioregsel_ < kIoApicIndexRedirBase) return 0xFFFFFFFFu;
  unsigned index = (ioregsel_ - kIoApicIndexRedirBase) >> 1;
  if (index >= kIoApicNumPins) return 0xFFFFFFFFu;
  uint64_t e = redirtbl_[index];
  return (ioregsel_ & 1) ? static_cast<uint32_t>(e >> 32) : static_cast<uint32_t>(e);
}

void IoApic::write_indirect(uint32_t value, IoApicOutput& out) {
  switch (ioregsel_) {
    case kIoApicIndexVersion:
    case kIoApicIndexArbitration:
      return;  // read-only
    case kIoApicIndexId:
      id_ = (value >> 24) & 0xF;
      return;
    default:
      break;
  }
  if (ioregsel_ < kIoApicIndexRedirBase) return;
  unsigned index = (ioregsel_ - kIoApicIndexRedirBase) >> 1;
  if (index >= kIoApicNumPins) return;

  uint64_t& e = redirtbl_[index];
  uint64_t before = e;
  bool was_asserted = asserted(index);
  uint64_t merged = (ioregsel_ & 1) ? (e & 0xFFFFFFFFull) | (static_cast<uint64_t>(value) << 32)
                                    : (e & ~0xFFFFFFFFull) | value;
  e = (merged & kRteWritable) | (before & (kRteRemoteIrr | kRteDeliveryStatus));
  // Linux and Xen expect remote IRR to drop when an entry is switched to edge: it is how they
  // emulate a directed EOI on IOAPICs without an EOI register (KVM does the same).
  if (!IsLevel(e)) e &= ~kRteRemoteIrr;
  out.rte_changed = true;
  if ((before ^ e) & kRteMasked) out.mask_changed_pins |= 1u << index;

  bool now_asserted = asserted(index);
  if (now_asserted != was_asserted) {
    // Only reachable with honor_polarity: flipping the polarity flips the logical line.
    apply_level(index, now_asserted, out);
    out.coalesced = false;
    return;
  }
  // A level line that stayed asserted while masked or waiting for EOI is delivered now.
  if (IsLevel(e) && (irr_ & (1u << index)) && !IsMasked(e) && !(e & kRteRemoteIrr)) {
    if (now_asserted)
      service(index, out);
    else
      irr_ &= ~(1u << index);
  }
}

IoApicOutput IoApic::mmio_read(uint32_t offset, void* data, unsigned len, uint64_t /*now_ns*/) {
  IoApicOutput out;
  if (data == nullptr || len == 0 || len > 8) return out;
  uint64_t result = 0;
  if (offset == kIoApicRegSelect)
    result = ioregsel_;
  else if (offset == kIoApicRegWindow)
    result = read_indirect();
  // Any other offset (including unaligned ones) reads 0, as in KVM.
  std::memcpy(data, &result, len);
  return out;
}

IoApicOutput IoApic::mmio_write(uint32_t offset, const void* data, unsigned len, uint64_t now_ns) {
  IoApicOutput out;
  // KVM only honours 4- and 8-byte writes, and only their low dword.
  if (data == nullptr || (len != 4 && len != 8)) return out;
  uint32_t value;
  std::memcpy(&value, data, sizeof(value));
  if (offset == kIoApicRegSelect)
    ioregsel_ = static_cast<uint8_t>(value);
  else if (offset == kIoApicRegWindow)
    write_indirect(value, out);
  else if (offset == kIoApicRegEoi && config_.version >= kIoApicVersionEoiRegister)
    // The directed EOI (ICH 13.5.5, QEMU's ioapic_eoi_broadcast()): every level RTE with this
    // vector drops remote IRR and is re-delivered if its line is still asserted.
    out = eoi(static_cast<uint8_t>(value), /*level_trigger=*/true, now_ns);
  return out;
}

IoApicOutput IoApic::eoi(uint8_t vector, bool level_trigger, uint64_t now_ns) {
  IoApicOutput out;
  for (unsigned pin = 0; pin < kIoApicNumPins; ++pin) {
    uint64_t& e = redirtbl_[pin];
    if ((e & kRteVectorMask) != vector) continue;
    // Ack notifiers run for every matching entry, edge or level (PIT reinjection needs edge).
    out.acked_pins |= 1u << pin;
    if (!level_trigger || !IsLevel(e)) continue;
    e &= ~kRteRemoteIrr;
    if (IsMasked(e) || !(irr_ & (1u << pin))) {
      successive_eoi_[pin] = 0;
      continue;
    }
    if (++successive_eoi_[pin] >= config_.storm_threshold) {
      // Storm: real hardware does not re-deliver within the EOI cycle either. Defer, so a guest
      // that never quiets the device still makes progress between deliveries.
      successive_eoi_[pin] = 0;
      if (deferred_deadline_ns_ == UINT64_MAX) {
        uint64_t deadline = now_ns + config_.storm_delay_ns;
        deferred_deadline_ns_ = deadline < now_ns ? UINT64_MAX - 1 : deadline;
      }
      continue;
    }
    service(pin, out);
  }
  return out;
}

IoApicOutput IoApic::poll(uint64_t now_ns) {
  IoApicOutput out;
  if (deferred_deadline_ns_ == UINT64_MAX || now_ns < deferred_deadline_ns_) return out;
  deferred_deadline_ns_ = UINT64_MAX;
  for (unsigned pin = 0; pin < kIoApicNumPins; ++pin) {
    uint64_t e = redirtbl_[pin];
    if (IsLevel(e) && (irr_ & (1u << pin)) && !(e & kRteRemoteIrr)) service(pin, out);
  }
  return out;
}

void IoApic::handled_vectors(
    std::bitset<256>& out, uint32_t pins_with_ack_notifier,
    const std::function<bool(const InterruptRequest&)>& targets_vcpu) const {
  for (unsigned pin = 0; pin < kIoApicNumPins; ++pin) {
    if (!IsLevel(redirtbl_[pin]) && !(pins_with_ack_notifier & (1u << pin))) continue;
    InterruptRequest r = request_for(pin);
    if (!targets_vcpu || targets_vcpu(r)) out.set(r.vector);
  }
}

}  // namespace apicv
