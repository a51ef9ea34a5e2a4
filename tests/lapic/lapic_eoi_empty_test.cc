// EOI writes that find no vector in service. SDM vol. 3A 11.8.5: the EOI retires the highest
// priority ISR bit; with the ISR empty there is nothing to retire and no state changes. KVM's
// apic_set_eoi() still traces such a write (kvm_eoi with vector -1), so the Lapic reports it
// separately from a real EOI, which is broadcast to the IOAPIC and requests an event.
#include <gtest/gtest.h>

#include "devices/lapic.h"
#include "lapic_test_util.h"

namespace apicv {
namespace {

using lapic_test::Read;
using lapic_test::SwEnable;
using lapic_test::Write;

TEST(LapicEoiEmptyTest, EoiWithEmptyIsrIsReportedWithoutSideEffects) {
  Lapic apic(0, true, LapicConfig{});
  SwEnable(apic);
  const uint32_t ppr = Read(apic, x86::kApicPpr);
  const LapicOutput out = Write(apic, x86::kApicEoi, 0);
  EXPECT_TRUE(out.eoi_empty);
  EXPECT_FALSE(out.eoi.has_value());
  EXPECT_FALSE(out.event);
  EXPECT_EQ(Read(apic, x86::kApicPpr), ppr);
}

TEST(LapicEoiEmptyTest, EoiOfAnInServiceVectorIsNotEmpty) {
  Lapic apic(0, true, LapicConfig{});
  SwEnable(apic);
  x86::InterruptRequest r;
  r.vector = 0x45;
  apic.accept_irq(r);
  ASSERT_EQ(apic.get_interrupt(), 0x45);  // IRR -> ISR
  LapicOutput out = Write(apic, x86::kApicEoi, 0);
  EXPECT_FALSE(out.eoi_empty);
  ASSERT_TRUE(out.eoi.has_value());
  EXPECT_EQ(out.eoi->vector, 0x45);
  // The second EOI finds the ISR empty again.
  out = Write(apic, x86::kApicEoi, 0);
  EXPECT_TRUE(out.eoi_empty);
  EXPECT_FALSE(out.eoi.has_value());
}

TEST(LapicEoiEmptyTest, X2ApicEoiMsrWithEmptyIsr) {
  Lapic apic(0, true, LapicConfig{});
  SwEnable(apic);
  lapic_test::EnterX2Apic(apic);
  const MsrAccess a = apic.wrmsr_x2apic(0x80B, 0, 0);
  ASSERT_FALSE(a.gp);
  EXPECT_TRUE(a.out.eoi_empty);
  EXPECT_FALSE(a.out.eoi.has_value());
}

}  // namespace
}  // namespace apicv
