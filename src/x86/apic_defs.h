// Local APIC architectural constants: register offsets, MSR numbers, ICR and LVT fields.
// Intel SDM vol. 3A ch. 11 (11.4 APIC base, 11.5 LVT, 11.6 ICR, 11.12 x2APIC); AMD APM vol. 2 ch. 16.
// Stateless: decoding helpers only.
#pragma once

#include <cstdint>

namespace apicv::x86 {

// xAPIC MMIO register offsets (SDM Table 11-1). x2APIC MSR = kX2ApicMsrBase + (offset >> 4).
enum ApicReg : uint32_t {
  kApicId = 0x20,
  kApicLvr = 0x30,
  kApicTpr = 0x80,
  kApicApr = 0x90,
  kApicPpr = 0xA0,
  kApicEoi = 0xB0,
  kApicRrr = 0xC0,
  kApicLdr = 0xD0,
  kApicDfr = 0xE0,
  kApicSpiv = 0xF0,
  kApicIsr = 0x100,
  kApicTmr = 0x180,
  kApicIrr = 0x200,
  kApicEsr = 0x280,
  kApicLvtCmci = 0x2F0,
  kApicIcr = 0x300,
  kApicIcr2 = 0x310,
  kApicLvtt = 0x320,
  kApicLvtThmr = 0x330,
  kApicLvtPc = 0x340,
  kApicLvt0 = 0x350,
  kApicLvt1 = 0x360,
  kApicLvtErr = 0x370,
  kApicTmict = 0x380,
  kApicTmcct = 0x390,
  kApicTdcr = 0x3E0,
  kApicSelfIpi = 0x3F0,
};

constexpr uint64_t kApicDefaultBase = 0xFEE00000ull;
constexpr uint64_t kApicMmioSize = 0x1000;

// MSRs.
constexpr uint32_t kMsrApicBase = 0x1B;
constexpr uint32_t kMsrTscDeadline = 0x6E0;
constexpr uint32_t kX2ApicMsrBase = 0x800;
constexpr uint32_t kX2ApicMsrEnd = 0x8FF;
constexpr uint32_t kMsrX2ApicIcr = 0x830;
constexpr uint32_t kMsrX2ApicSelfIpi = 0x83F;

// IA32_APIC_BASE bits (SDM 11.4.4).
constexpr uint64_t kApicBaseBsp = 1ull << 8;
constexpr uint64_t kApicBaseExtd = 1ull << 10;
constexpr uint64_t kApicBaseEnable = 1ull << 11;
constexpr uint64_t kApicBaseAddrMask = ~0xFFFull;

// Delivery modes (ICR[10:8], LVT[10:8], IOAPIC RTE[10:8], MSI data[10:8]).
enum class DeliveryMode : uint8_t {
  kFixed = 0,
  kLowestPriority = 1,
  kSmi = 2,
  kRemoteRead = 3,
  kNmi = 4,
  kInit = 5,
  kStartup = 6,
  kExtInt = 7,
};

// ICR destination shorthand (ICR[19:18]).
enum class Shorthand : uint8_t { kNone = 0, kSelf = 1, kAllIncludingSelf = 2, kAllExcludingSelf = 3 };

// ICR low-word fields.
constexpr uint32_t kIcrVectorMask = 0xFF;
constexpr uint32_t kIcrDeliveryModeShift = 8;
constexpr uint32_t kIcrDestLogical = 1u << 11;
constexpr uint32_t kIcrBusy = 1u << 12;
constexpr uint32_t kIcrLevelAssert = 1u << 14;
constexpr uint32_t kIcrTriggerLevel = 1u << 15;
constexpr uint32_t kIcrShorthandShift = 18;
// x2APIC ICR reserved bits that #GP (31:20, 17:16, 13).
constexpr uint64_t kX2ApicIcrReserved = 0xFFF00000ull | 0x30000ull | 0x2000ull;

// LVT fields (SDM 11.5.1).
constexpr uint32_t kLvtVectorMask = 0xFF;
constexpr uint32_t kLvtDeliveryModeMask = 0x700;
constexpr uint32_t kLvtDeliveryPending = 1u << 12;
constexpr uint32_t kLvtInputPolarity = 1u << 13;
constexpr uint32_t kLvtRemoteIrr = 1u << 14;
constexpr uint32_t kLvtTriggerLevel = 1u << 15;
constexpr uint32_t kLvtMasked = 1u << 16;
constexpr uint32_t kLvtTimerModeShift = 17;
constexpr uint32_t kLvtTimerModeMask = 3u << 17;

enum class TimerMode : uint8_t { kOneShot = 0, kPeriodic = 1, kTscDeadline = 2 };

// SPIV bits.
constexpr uint32_t kSpivApicEnabled = 1u << 8;
constexpr uint32_t kSpivFocusDisabled = 1u << 9;
constexpr uint32_t kSpivDirectedEoi = 1u << 12;

// Destinations.
constexpr uint32_t kXApicBroadcast = 0xFF;
constexpr uint32_t kX2ApicBroadcast = 0xFFFFFFFF;
constexpr uint32_t kDfrFlat = 0xFFFFFFFF;

// ESR bits (SDM 11.5.3).
constexpr uint32_t kEsrSendIllegalVector = 1u << 5;
constexpr uint32_t kEsrReceiveIllegalVector = 1u << 6;
constexpr uint32_t kEsrIllegalRegister = 1u << 7;

constexpr uint32_t X2ApicMsrFromOffset(uint32_t offset) { return kX2ApicMsrBase + (offset >> 4); }
constexpr uint32_t OffsetFromX2ApicMsr(uint32_t msr) { return (msr - kX2ApicMsrBase) << 4; }

// x2APIC logical ID derived from the x2APIC ID (SDM 11.12.10.2).
constexpr uint32_t X2ApicLdr(uint32_t x2apic_id) {
  return ((x2apic_id >> 4) << 16) | (1u << (x2apic_id & 0xF));
}

}  // namespace apicv::x86
