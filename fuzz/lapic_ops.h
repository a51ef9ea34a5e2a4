// Op decoder for the local APIC fuzzer (lapic_fuzz.cc) and its replay test
// (tests/lapic/hostile_replay_test.cc): a byte string becomes a sequence of guest accesses (xAPIC
// MMIO at any offset and size, x2APIC MSRs, IA32_APIC_BASE mode switches, TSC deadline, CR8),
// device-side events (accept_irq, posted vectors, LVT local delivery, INTA, INIT/RESET) and time
// that only moves forward. After every op the architectural invariants of Intel SDM vol. 3A
// ch. 11 are checked. Not supported: multi-vCPU interaction (apicv_vm_ops.h covers it).
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>

#include "devices/lapic.h"
#include "fuzz_input.h"
#include "x86/apic_defs.h"

namespace apicv::fuzz {

inline constexpr uint32_t kLapicInterestingOffsets[] = {
    0x000, 0x010, 0x020, 0x030, 0x080, 0x090, 0x0A0, 0x0B0, 0x0C0, 0x0D0, 0x0E0, 0x0F0,
    0x100, 0x170, 0x180, 0x1F0, 0x200, 0x270, 0x280, 0x2F0, 0x300, 0x310, 0x320, 0x330,
    0x340, 0x350, 0x360, 0x370, 0x380, 0x390, 0x3E0, 0x3F0, 0x400, 0xFF0, 0xFFC, 0xFFF};

inline constexpr uint32_t kLapicLvtOffsets[] = {0x320, 0x330, 0x340, 0x350, 0x360, 0x370};

// Highest set bit of a 256-bit bank read through reg(): an independent recomputation of what
// highest_irr()/highest_isr() must report.
inline int LapicBankHighest(const Lapic& l, uint32_t base) {
  for (int w = 7; w >= 0; --w) {
    const uint32_t bits = l.reg(base + 0x10 * static_cast<uint32_t>(w));
    if (bits != 0) return w * 32 + 31 - __builtin_clz(bits);
  }
  return -1;
}

// Writable bits of each LVT (SDM Figure 11-8): vector, delivery mode where the LVT has one,
// delivery status (stored as written, like KVM), polarity/remote IRR/trigger for LINT0/1, mask,
// timer mode for LVTT.
inline uint32_t LapicLvtLegalBits(uint32_t offset, bool tsc_deadline) {
  const uint32_t base = 0xFF | (1u << 12) | (1u << 16);
  switch (offset) {
    case 0x320:
      return base | (tsc_deadline ? (3u << 17) : (1u << 17));
    case 0x330:
    case 0x340:
      return base | 0x700;
    case 0x350:
    case 0x360:
      return base | 0x700 | (7u << 13);
    default:
      return base;
  }
}

// Every invariant that must hold between two guest operations, whatever the guest did.
inline void CheckLapicInvariants(Lapic& l, const LapicConfig& cfg, uint64_t now, size_t op,
                                 Verdict& v) {
  using namespace x86;
  const ApicMode mode = l.mode();
  v.check(mode != ApicMode::kInvalid, op, "APIC in the invalid mode (EN=0, EXTD=1)");
  const uint64_t reserved =
      0x2FFull | ~((1ull << cfg.maxphyaddr) - 1) | (cfg.x2apic_supported ? 0 : kApicBaseExtd);
  v.check((l.get_apic_base() & reserved) == 0, op, "IA32_APIC_BASE has reserved bits set");

  // IRR/ISR/TMR: 256 bits, highest vectors agree with the banks.
  v.check(l.highest_irr() == LapicBankHighest(l, 0x200), op, "highest_irr disagrees with IRR");
  v.check(l.highest_isr() == LapicBankHighest(l, 0x100), op, "highest_isr disagrees with ISR");
  v.check(l.highest_irr() >= -1 && l.highest_irr() <= 255, op, "IRR vector out of range");
  if (cfg.esr_sdm_mode) {
    // SDM 11.5.3 / 11.8.4: vectors 0-15 are illegal and never accepted into IRR (nor ISR).
    v.check((l.reg(0x200) & 0xFFFF) == 0, op, "IRR holds a vector below 16");
    v.check((l.reg(0x100) & 0xFFFF) == 0, op, "ISR holds a vector below 16");
  }

  // TPR/PPR (SDM 11.8.3.1).
  const uint32_t tpr = l.reg(0x80);
  v.check((tpr & ~0xFFu) == 0, op, "TPR has bits above 7:0");
  v.check(l.get_cr8() == (tpr >> 4), op, "CR8 != TPR[7:4]");
  const int isrv = l.highest_isr();
  const uint32_t isr_class = isrv < 0 ? 0 : (static_cast<uint32_t>(isrv) & 0xF0);
  const uint32_t ppr = (tpr & 0xF0) >= isr_class ? tpr : isr_class;
  if (l.ppr() != ppr) {
    v.fail(op, "PPR " + std::to_string(l.ppr()) + " != SDM value " + std::to_string(ppr));
  }
  const int pend = l.pending_deliverable();
  if (pend >= 0) {
    v.check(l.hw_enabled(), op, "deliverable vector while hardware-disabled");
    v.check((static_cast<uint32_t>(pend) & 0xF0) > (ppr & 0xF0), op,
            "deliverable vector not above PPR");
  }

  // Read-only LVR.
  const uint32_t lvr = 0x14 | (5u << 16) | (cfg.directed_eoi ? (1u << 24) : 0);
  v.check(l.reg(0x30) == lvr, op, "LVR changed");

  // ESR: KVM never reports errors; the SDM mode only the three modelled bits.
  const uint32_t esr = l.reg(0x280);
  if (cfg.esr_sdm_mode) {
    v.check((esr & ~0xE0u) == 0, op, "ESR has an unmodelled bit");
  } else {
    v.check(esr == 0, op, "ESR non-zero in KVM parity mode");
  }

  // SPIV and the LVTs.
  const uint32_t spiv_mask = 0x3FF | (cfg.directed_eoi ? (1u << 12) : 0);
  v.check((l.reg(0xF0) & ~spiv_mask) == 0, op, "SPIV reserved bits set");
  for (uint32_t off : kLapicLvtOffsets) {
    const uint32_t lvt = l.reg(off);
    if ((lvt & ~LapicLvtLegalBits(off, cfg.tsc_deadline_supported)) != 0) {
      v.fail(op, "LVT reserved bits set at " + std::to_string(off));
    }
    // SDM 11.4.7.2: every LVT stays masked while software-disabled. The one exception is
    // KVM_X86_QUIRK_LINT0_REENABLED: RESET leaves the BSP's LVT0 as unmasked ExtINT.
    const bool lint0_quirk = off == 0x350 && cfg.lint0_reenabled_quirk && lvt == 0x700;
    if (!l.sw_enabled() && !lint0_quirk) {
      v.check(lvt & kLvtMasked, op, "LVT unmasked while software-disabled");
    }
  }
  v.check((l.reg(0x3E0) & ~0xBu) == 0, op, "TDCR reserved bits set");
  v.check((l.reg(0x300) & kIcrBusy) == 0, op, "ICR delivery status stuck busy");

  if (mode == ApicMode::kX2Apic) {
    const uint32_t id = l.vcpu_id();
    v.check(l.reg(0x20) == id, op, "x2APIC ID != vcpu_id");
    v.check(l.reg(0xD0) == (((id >> 4) << 16) | (1u << (id & 0xF))), op,
            "x2APIC LDR not derived from the ID");
  } else if (mode == ApicMode::kXApic) {
    // (While hardware-disabled the registers are invisible: KVM keeps an x2APIC-format ID there
    // after x2APIC -> disabled and rewrites it on re-enable, so only xAPIC mode is checked.)
    v.check((l.reg(0x20) & 0x00FFFFFF) == 0, op, "xAPIC ID bits 23:0 set");
    // LDR and ICR2 are not checked here: SDM 11.12.5.1 leaves every register but the ID
    // undefined across x2APIC -> disabled -> xAPIC, and KVM carries the x2APIC LDR and ICR
    // destination over. CheckXApicWrite() checks that xAPIC writes mask their reserved bits.
  }

  // TMCCT never above TMICT (read without side effects in both modes).
  uint32_t tmcct = 0;
  if (mode == ApicMode::kXApic) {
    l.mmio_read(0x390, &tmcct, 4, now);
  } else if (mode == ApicMode::kX2Apic) {
    tmcct = static_cast<uint32_t>(l.rdmsr_x2apic(0x839, now).value);
  }
  v.check(tmcct <= l.reg(0x380), op, "TMCCT above TMICT");
  if (!l.hw_enabled()) {
    uint32_t hole = 0;
    l.mmio_read(0x30, &hole, 4, now);
    v.check(hole == 0xFFFFFFFFu, op, "MMIO read of a disabled APIC is not all-ones");
  }
}

// After an aligned 4-byte xAPIC MMIO write: LDR and ICR2 keep only bits 31:24, DFR bits 27:0 read
// as ones (SDM Figures 11-13, 11-14, 11-12).
inline void CheckXApicWrite(const Lapic& l, uint32_t off, uint32_t val, size_t op, Verdict& v) {
  if (l.mode() != ApicMode::kXApic) return;
  if (off == 0xD0) v.check(l.reg(0xD0) == (val & 0xFF000000u), op, "xAPIC LDR write not masked");
  if (off == 0x310) v.check(l.reg(0x310) == (val & 0xFF000000u), op, "ICR2 write not masked");
  if (off == 0xE0) v.check(l.reg(0xE0) == (val | 0x0FFFFFFFu), op, "DFR write not masked");
}

// SDM 11.5.4: writing TMICT copies it into TMCCT and starts the countdown (not in TSC-deadline
// mode, where TMICT writes are ignored and TMCCT reads 0). Read back at the same instant.
inline void CheckTmictWrite(Lapic& l, uint32_t off, uint32_t val, uint64_t now, size_t op,
                            Verdict& v) {
  if (off != 0x380 || val == 0) return;
  const ApicMode mode = l.mode();
  if (mode != ApicMode::kXApic && mode != ApicMode::kX2Apic) return;
  if (((l.reg(0x320) >> 17) & 3) == 2) return;  // TSC-deadline mode
  uint32_t tmcct = 0;
  if (mode == ApicMode::kXApic) {
    l.mmio_read(0x390, &tmcct, 4, now);
  } else {
    tmcct = static_cast<uint32_t>(l.rdmsr_x2apic(0x839, now).value);
  }
  v.check(l.reg(0x380) == val, op, "TMICT not stored");
  v.check(tmcct == val, op, "TMCCT != TMICT right after the TMICT write");
  v.check(l.next_timer_deadline_ns() > now, op, "a fresh countdown is already due");
}

// Output sanity of one call.
inline void CheckLapicOutput(const LapicOutput& out, size_t op, Verdict& v) {
  if (out.ipi) {
    v.check(static_cast<unsigned>(out.ipi->delivery_mode) <= 7, op, "IPI delivery mode");
  }
}

inline uint64_t LapicApicBaseValue(OpReader& in) {
  using namespace x86;
  const uint8_t sel = in.u8();
  const uint64_t addr = (sel & 0x80) ? (in.u32() & ~0xFFFull) : kApicDefaultBase;
  switch (sel & 7) {
    case 0:
      return addr | kApicBaseEnable;  // xAPIC
    case 1:
      return addr | kApicBaseEnable | kApicBaseExtd;  // x2APIC
    case 2:
      return addr;  // disabled
    case 3:
      return addr | kApicBaseExtd;  // invalid
    case 4:
      return addr | kApicBaseEnable | kApicBaseBsp;
    default:
      return in.u64();  // anything, reserved bits included
  }
}

// x2APIC MSRs that are read-only (writes #GP) and write-only (reads #GP), SDM Table 11-6.
inline bool LapicMsrReadOnly(uint32_t msr) {
  return msr == 0x802 || msr == 0x803 || msr == 0x80A || msr == 0x80D ||
         (msr >= 0x810 && msr <= 0x827) || msr == 0x839;
}
inline bool LapicMsrWriteOnly(uint32_t msr) {
  return msr == 0x80B || msr == 0x83F;
}

// Runs one input. Returns "" when every invariant held, else the first violation.
inline std::string RunLapicOps(const uint8_t* data, size_t size) {
  using namespace x86;
  OpReader in(data, size);
  const uint8_t c = in.u8();
  LapicConfig cfg;
  cfg.x2apic_supported = !(c & 1);
  cfg.tsc_deadline_supported = !(c & 2);
  cfg.directed_eoi = cfg.x2apic_supported && (c & 4);
  cfg.esr_sdm_mode = c & 8;
  cfg.lint0_reenabled_quirk = !(c & 16);
  cfg.tsc_khz = (c & 32) ? 0 : 1000000;
  const bool bsp = c & 64;
  const uint32_t vcpu_id = (c & 128) ? in.u32() : in.u8();
  Lapic l(vcpu_id, bsp, cfg);
  Verdict v;
  uint64_t now = 1'000'000'000;
  CheckLapicInvariants(l, cfg, now, 0, v);
  for (size_t op = 1; !in.done() && op <= kMaxOpsPerInput && v.ok(); ++op) {
    const uint8_t kind = in.u8();
    switch (kind % 16) {
      case 0: {  // MMIO write, any offset and size
        const uint8_t s = in.u8();
        const uint32_t off =
            (s & 1) ? (in.u16() & 0xFFF)
                    : kLapicInterestingOffsets[(s >> 1) % std::size(kLapicInterestingOffsets)];
        const unsigned len = (s & 0x40) ? (in.u8() % 10) : 4;
        const uint64_t val = in.u64();
        CheckLapicOutput(l.mmio_write(off, &val, len, now), op, v);
        if (len == 4) {
          CheckXApicWrite(l, off, static_cast<uint32_t>(val), op, v);
          if (l.mode() == ApicMode::kXApic) {  // MMIO is dropped in the other modes
            CheckTmictWrite(l, off, static_cast<uint32_t>(val), now, op, v);
          }
        }
        break;
      }
      case 1: {  // MMIO read
        const uint8_t s = in.u8();
        const uint32_t off =
            (s & 1) ? in.u16()
                    : kLapicInterestingOffsets[(s >> 1) % std::size(kLapicInterestingOffsets)];
        const unsigned len = (s & 0x40) ? (in.u8() % 10) : 4;
        uint8_t buf[16] = {};
        CheckLapicOutput(l.mmio_read(off, buf, len, now), op, v);
        for (unsigned i = len; i < sizeof(buf); ++i) {
          v.check(buf[i] == 0, op, "MMIO read wrote past len");
        }
        break;
      }
      case 2: {  // x2APIC MSR write
        const uint32_t msr = (in.u8() & 1) ? in.u32() : 0x800 + in.u8();
        const uint64_t val = (in.u8() & 1) ? in.u64() : in.u32();
        const bool was_x2 = l.x2apic_mode();
        const MsrAccess r = l.wrmsr_x2apic(msr, val, now);
        if (!was_x2 || msr < 0x800 || msr > 0x8FF || LapicMsrReadOnly(msr)) {
          if (!r.gp) v.fail(op, "wrmsr " + std::to_string(msr) + " must #GP");
        }
        if (r.gp) v.check(!r.out.ipi && !r.out.eoi, op, "#GP wrmsr had side effects");
        CheckLapicOutput(r.out, op, v);
        break;
      }
      case 3: {  // x2APIC MSR read
        const uint32_t msr = (in.u8() & 1) ? in.u32() : 0x800 + in.u8();
        const bool was_x2 = l.x2apic_mode();
        const MsrAccess r = l.rdmsr_x2apic(msr, now);
        if (!was_x2 || msr < 0x800 || msr > 0x8FF || LapicMsrWriteOnly(msr)) {
          if (!r.gp) v.fail(op, "rdmsr " + std::to_string(msr) + " must #GP");
        }
        break;
      }
      case 4: {  // IA32_APIC_BASE
        const uint64_t before = l.get_apic_base();
        const uint64_t val = LapicApicBaseValue(in);
        const bool host = in.flag();
        const MsrAccess r = l.set_apic_base(val, host);
        if (r.gp) {
          v.check(l.get_apic_base() == before, op, "#GP APIC_BASE write changed the MSR");
        } else {
          v.check(l.get_apic_base() == val, op, "APIC_BASE write not stored");
        }
        break;
      }
      case 5: {  // time moves forward, the owner services the timer like a host timer would
        const uint8_t s = in.u8();
        uint64_t delta = (s & 1) ? in.u32() : (static_cast<uint64_t>(in.u16()) << (s >> 4));
        if (s & 2) delta = in.u64() >> 2;
        now = now > UINT64_MAX / 2 - delta ? UINT64_MAX / 2 : now + delta;
        l.on_timer(now);
        const uint64_t next = l.next_timer_deadline_ns();
        v.check(next == UINT64_MAX || next > now, op,
                "timer still due after on_timer (a host loop would spin)");
        break;
      }
      case 6: {  // EOI in whichever mode is active
        // SDM 11.8.5: an EOI retires the highest-priority in-service vector, and only that one.
        const int isr_before = l.highest_isr();
        const bool reachable = l.x2apic_mode() || l.mode() == ApicMode::kXApic;
        LapicOutput out;
        if (l.x2apic_mode()) {
          out = l.wrmsr_x2apic(0x80B, 0, now).out;
        } else {
          const uint32_t zero = 0;
          out = l.mmio_write(0xB0, &zero, 4, now);
        }
        CheckLapicOutput(out, op, v);
        if (reachable && isr_before >= 0) {
          v.check(out.eoi && out.eoi->vector == isr_before, op, "EOI did not report the ISR top");
          v.check(l.highest_isr() < isr_before, op, "EOI left the highest ISR bit set");
        } else {
          v.check(!out.eoi, op, "EOI reported with nothing in service");
        }
        break;
      }
      case 7: {  // a message from the bus
        InterruptRequest irq;
        irq.vector = in.u8();
        const uint8_t m = in.u8();
        irq.delivery_mode = static_cast<DeliveryMode>(m & 7);
        irq.trigger_level = m & 8;
        irq.level = m & 16;
        const bool enabled_before = l.hw_enabled() && l.sw_enabled();
        const bool accepted = l.accept_irq(irq);
        if (accepted && (irq.delivery_mode == DeliveryMode::kFixed ||
                         irq.delivery_mode == DeliveryMode::kLowestPriority)) {
          v.check(enabled_before, op, "fixed interrupt accepted by a disabled APIC");
          v.check(!cfg.esr_sdm_mode || irq.vector >= 16, op, "illegal vector accepted");
          v.check(l.highest_irr() >= irq.vector, op, "accepted vector not in IRR");
        }
        break;
      }
      case 8: {  // INTA
        const int want = l.pending_deliverable();
        const int got = l.get_interrupt();
        v.check(want == got, op, "get_interrupt != pending_deliverable");
        if (got >= 0) v.check(l.highest_isr() == got, op, "acked vector is not the highest ISR");
        break;
      }
      case 9: {  // posted interrupt, then the owner's harvest
        const uint8_t n = in.u8() % 4;
        for (uint8_t i = 0; i < n; ++i) l.post(in.u8(), in.flag());
        l.sync_pir_to_irr();
        v.check(!l.has_posted(), op, "PIR ON still set after sync");
        break;
      }
      case 10:  // IA32_TSC_DEADLINE
        CheckLapicOutput(l.wrmsr_tsc_deadline(in.u64(), now, now / 1000 * 1000), op, v);
        break;
      case 11:  // CR8
        l.set_cr8(in.u64());
        break;
      case 12: {  // INIT or RESET
        const bool init_only = in.flag();
        const uint64_t base_before = l.get_apic_base();
        l.reset(init_only);
        if (init_only) v.check(l.get_apic_base() == base_before, op, "INIT changed APIC_BASE");
        v.check(l.highest_irr() == -1 && l.highest_isr() == -1, op, "reset left IRR/ISR");
        break;
      }
      case 13: {  // LVT local delivery (LINT pins, PMI, thermal, error, or a bogus offset)
        const uint8_t s = in.u8();
        const uint32_t off = (s & 8) ? in.u16() : kLapicLvtOffsets[s % 6];
        l.local_deliver(off, s & 16);
        break;
      }
      case 14: {  // the owner consumes latched NMI/INIT/SIPI
        uint8_t vec = 0;
        l.take_nmi();
        l.take_init();
        l.take_sipi(&vec);
        l.accept_pic_intr();
        break;
      }
      default: {  // a burst of register writes at legal offsets (drives deeper state quickly)
        const uint8_t n = in.u8() % 8;
        for (uint8_t i = 0; i < n; ++i) {
          const uint32_t off =
              kLapicInterestingOffsets[in.u8() % std::size(kLapicInterestingOffsets)];
          const uint32_t val = in.u32();
          if (l.x2apic_mode()) {
            CheckLapicOutput(l.wrmsr_x2apic(0x800 + (off >> 4), val, now).out, op, v);
          } else {
            CheckLapicOutput(l.mmio_write(off, &val, 4, now), op, v);
            CheckXApicWrite(l, off, val, op, v);
          }
          CheckTmictWrite(l, off, val, now, op, v);
        }
        break;
      }
    }
    CheckLapicInvariants(l, cfg, now, op, v);
  }
  return v.message();
}

}  // namespace apicv::fuzz
