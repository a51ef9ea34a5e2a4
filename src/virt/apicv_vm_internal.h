// ApicvVm's private parts shared by the files it is split into (apicv_vm.cc: the owner and the
// guest accesses; apic_delivery.cc: IPI / IOAPIC message delivery, KVM's lapic.c delivery part and
// irq_comm.c; irqchip_glue.cc: IOAPIC/PIC/PIT glue with EOI, ack and mask notifiers, KVM's
// ioapic.c glue, irq.c, i8254.c reinjection; event_injection.cc: kvm_check_and_inject_events,
// halts, INIT/SIPI; vm_timers.cc: the timer seam). Not a public interface.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <stdexcept>

#include "trace/kvm_events.h"
#include "virt/apicv_vm.h"
#include "virt/avic.h"
#include "x86/ioapic_defs.h"

namespace apicv::virt::vm_detail {

using x86::InterruptRequest;

inline constexpr uint64_t kIoApicBase = 0xFEC00000ull;
inline constexpr uint64_t kIoApicSize = 0x100;  // KVM's IOAPIC_MEM_LENGTH
inline constexpr uint16_t kTestDevBase = 0x2000;
inline constexpr uint16_t kTestDevEnd = 0x2017;
inline constexpr unsigned kIsaIrq0IoApicPin = 2;
// Linux's POSTED_INTR_VECTOR: the notification vector KVM writes into every PiDesc.NV.
inline constexpr uint8_t kPostedIntrVector = 0xF2;
// kvm_set_irq() sources: KVM_USERSPACE_IRQ_SOURCE_ID (KVM_IRQ_LINE) and KVM_PIT_IRQ_SOURCE_ID.
inline constexpr int kUserspaceIrqSourceId = 0;
inline constexpr int kPitIrqSourceId = 2;
// KVM_IRQCHIP_* numbers printed by kvm_ack_irq.
inline constexpr unsigned kIrqchipPicMaster = 0;
inline constexpr unsigned kIrqchipPicSlave = 1;
inline constexpr unsigned kIrqchipIoapic = 2;
// KVM's min_timer_period_us module parameter default, in ns.
inline constexpr uint64_t kKvmMinTimerPeriodNs = 200'000;

inline bool TraceOn(const trace::TraceSink* sink) {
  return sink && sink->enabled();
}

// PMU MSRs served by the vPMU (Intel v2 and AMD legacy / core extension).
inline bool IsPmuMsrRange(uint32_t msr) {
  return (msr >= 0xC1 && msr <= 0xC4) || (msr >= 0x186 && msr <= 0x189) ||
         (msr >= 0x309 && msr <= 0x30B) || (msr >= 0x38D && msr <= 0x390) || msr == 0x345 ||
         (msr >= 0xC0010000 && msr <= 0xC0010007) || (msr >= 0xC0010200 && msr <= 0xC001020B);
}

inline uint64_t LoadLe(const void* data, unsigned len) {
  uint64_t v = 0;
  std::memcpy(&v, data, std::min(len, 8u));
  return v;
}

inline void StoreLe(void* data, unsigned len, uint64_t v) {
  std::memcpy(data, &v, std::min(len, 8u));
}

// The ICR value a guest wrote, rebuilt from its decoded request (x86::DecodeIcr is lossless for
// every field the AVIC hardware looks at).
inline uint32_t IcrLow(const InterruptRequest& r) {
  return r.vector | (static_cast<uint32_t>(r.delivery_mode) << x86::kIcrDeliveryModeShift) |
         (r.dest_logical ? x86::kIcrDestLogical : 0) | (r.level ? x86::kIcrLevelAssert : 0) |
         (r.trigger_level ? x86::kIcrTriggerLevel : 0) |
         (static_cast<uint32_t>(r.shorthand) << x86::kIcrShorthandShift);
}

inline uint32_t IcrHigh(const InterruptRequest& r) {
  return r.source_x2apic ? r.dest_id : (r.dest_id & 0xFF) << 24;
}

// A vCPU stays on "its" pCPU: the host APIC ID in its physical table entry is its index.
inline uint32_t HostApicId(int vcpu) {
  return static_cast<uint32_t>(vcpu) & 0xFFF;
}

// The VMM's IOAPIC serves the directed EOIs KVM lets through with Suppress EOI Broadcast enabled:
// QEMU's version 0x20 with the EOI register. Otherwise KVM's (and QEMU's legacy) 0x11.
inline IoApicConfig IoApicConfigFor(const VmConfig& config) {
  if (config.suppress_eoi_broadcast != SuppressEoiBroadcast::kQuirk &&
      config.placement != IrqchipPlacement::kSplit)
    throw std::invalid_argument(
        "Suppress EOI Broadcast flags need kernel-irqchip=split (KVM_CAP_X2APIC_API: EINVAL)");
  IoApicConfig c;
  if (config.suppress_eoi_broadcast == SuppressEoiBroadcast::kEnabled)
    c.version = x86::kIoApicVersionEoiRegister;
  return c;
}

}  // namespace apicv::virt::vm_detail

namespace apicv::virt {

struct ApicvVm::VcpuCtx {
  VcpuCtx(int id, const LapicConfig& lc, const PmuConfig& pc)
      : lapic(static_cast<uint32_t>(id), id == 0, lc), pmu(pc) {}
  Lapic lapic;
  Pmu pmu;
  // Published LAPIC timer / vPMU deadline for service_timers(); the owner writes it.
  std::atomic<uint64_t> timer_deadline{UINT64_MAX};
  // The deadline service_timers() last kicked for (written by the one servicing thread, read by
  // next_deadline_ns() on any thread).
  std::atomic<uint64_t> kicked_deadline{UINT64_MAX};
  // KVM's vcpu->arch.apic_arb_prio: lowest-priority messages that reached this vCPU since its
  // last INIT/RESET; the arbitration input when vector hashing is off.
  std::atomic<uint32_t> arb_prio{0};
  // kvm_apic_accept_pic_intr() as of the owner's last LAPIC change (LVT0, APIC base, reset),
  // published for the vCPU that picks whom an ExtINT kicks.
  std::atomic<bool> accepts_pic_intr{false};
  // When an enabled cycle counter with PMI wraps if the guest keeps running (owner thread).
  uint64_t pmu_deadline = UINT64_MAX;
  int pending_external_vector = -1;  // split placement: the VMM layer's ExtINT (owner thread)
  bool model_window = false;         // the model opened an IRQ window (owner thread)
  // Vendor vmx. The trigger mode of a posted vector is written before its PIR bit, as
  // vmx_deliver_interrupt() writes the vAPIC TMR before posting; read when harvesting.
  PiDesc pi;
  std::array<std::atomic<uint32_t>, 8> pi_tmr{};
  EoiExitBitmap eoi_exit_bitmap;  // owner thread
};

// What the AVIC hardware and KVM's SVM code do to other vCPUs. One per ICR write, on the sender's
// thread: it pins the map snapshot the hardware walk reads views from.

}  // namespace apicv::virt
