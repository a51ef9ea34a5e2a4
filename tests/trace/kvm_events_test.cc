// Event bodies against the TP_printk formats of arch/x86/kvm/trace.h and
// include/trace/events/kvm.h, with expected text written out by hand from those formats, the
// kernel's vsnprintf rules ("%#x" of 0 is "0x0", "%#08x" counts the "0x"), __print_symbolic /
// __print_flags fallbacks, and the ICR / redirection-entry / MSI layouts (SDM vol. 3A 11.6.1,
// 11.11.1-2, 82093AA 3.2.4). Also the sink.
#include "trace/kvm_events.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <thread>
#include <vector>

#include "devices/clock.h"
#include "trace/trace_sink.h"

namespace apicv::trace {
namespace {

TEST(KvmEvents, InjVirq) {
  EXPECT_EQ(FormatInjVirq(0x30, false, false), "IRQ 0x30");
  EXPECT_EQ(FormatInjVirq(0x80, true, true), "Soft/INTn 0x80 [reinjected]");
  EXPECT_EQ(FormatInjVirq(0xff, false, false), "IRQ 0xff");
  EXPECT_EQ(FormatInjVirq(0, false, false), "IRQ 0x0");  // kernel "0x%x", not "%#x": same here
  EXPECT_EQ(FormatInjVirq(0x3, true, false), "Soft/INTn 0x3");
  EXPECT_EQ(FormatInjVirq(0x20, false, true), "IRQ 0x20 [reinjected]");
}

// One line per enum kvm_apicv_inhibit bit: the names are the enum suffixes of
// APICV_INHIBIT_REASONS (arch/x86/include/asm/kvm_host.h), "DISABLED" since the 2024 rename.
TEST(KvmEvents, ApicvInhibitChangedNamesEveryBit) {
  const char* const expected[] = {
      "set reason=0, inhibits=0x1 DISABLED",
      "set reason=1, inhibits=0x2 HYPERV",
      "set reason=2, inhibits=0x4 ABSENT",
      "set reason=3, inhibits=0x8 BLOCKIRQ",
      "set reason=4, inhibits=0x10 PHYSICAL_ID_ALIASED",
      "set reason=5, inhibits=0x20 APIC_ID_MODIFIED",
      "set reason=6, inhibits=0x40 APIC_BASE_MODIFIED",
      "set reason=7, inhibits=0x80 NESTED",
      "set reason=8, inhibits=0x100 IRQWIN",
      "set reason=9, inhibits=0x200 PIT_REINJ",
      "set reason=10, inhibits=0x400 SEV",
      "set reason=11, inhibits=0x800 LOGICAL_ID_ALIASED",
      "set reason=12, inhibits=0x1000 PHYSICAL_ID_TOO_BIG",
  };
  for (unsigned i = 0; i < 13; ++i) {
    EXPECT_EQ(FormatApicvInhibitChanged(i, true, 1ul << i), expected[i]);
  }
}

TEST(KvmEvents, ApicvInhibitChangedUnknownBitsAndEmptyMask) {
  // __print_flags(): leftover bits as one "0x%lx", after "|" when a name came first.
  EXPECT_EQ(FormatApicvInhibitChanged(13, true, 0x2000), "set reason=13, inhibits=0x2000 0x2000");
  EXPECT_EQ(FormatApicvInhibitChanged(8, true, 0x8000000000006104ul),
            "set reason=8, inhibits=0x8000000000006104 ABSENT|IRQWIN|0x8000000000006000");
  // Empty mask: kvm_print_apicv_inhibit_reasons() adds neither the space nor names.
  EXPECT_EQ(FormatApicvInhibitChanged(9, false, 0), "cleared reason=9, inhibits=0x0");
}

TEST(KvmEvents, ApicIpi) {
  // Fixed, physical, assert, edge, no shorthand, vector 0x30 -> ICR low 0x4030.
  EXPECT_EQ(FormatApicIpi(0x4030, 1), "dst 1 vec 48 (Fixed|physical|assert|edge|dst)");
  // INIT (5 << 8), logical (bit 11), level assert, level trigger, all-but-self (3 << 18).
  EXPECT_EQ(FormatApicIpi(0xCCD00, 0xff), "dst ff vec 0 (INIT|logical|assert|level|all-but-self)");
  // SIPI vector 0x9a to self, de-assert.
  EXPECT_EQ(FormatApicIpi(0x4069A, 0), "dst 0 vec 154 (SIPI|physical|de-assert|edge|self)");
  // Vector 0xff to the x2APIC broadcast ID.
  EXPECT_EQ(FormatApicIpi(0x40FF, 0xFFFFFFFF),
            "dst ffffffff vec 255 (Fixed|physical|assert|edge|dst)");
  // 0xC5130: delivery status (bit 12) is not printed; LowPrio, assert, all-but-self.
  EXPECT_EQ(FormatApicIpi(0xC5130, 0), "dst 0 vec 48 (LowPrio|physical|assert|edge|all-but-self)");
  // SMI, Res3 and "all" spelled out.
  EXPECT_EQ(FormatApicIpi(0x80200, 0), "dst 0 vec 0 (SMI|physical|de-assert|edge|all)");
  EXPECT_EQ(FormatApicIpi(0x0300, 2), "dst 2 vec 0 (Res3|physical|de-assert|edge|dst)");
}

TEST(KvmEvents, ApicAcceptIrq) {
  EXPECT_EQ(FormatApicAcceptIrq(1, 0x400, 1, 2), "apicid 1 vec 2 (NMI|level)");
  EXPECT_EQ(FormatApicAcceptIrq(0x1f, 0x100, 0, 0xec), "apicid 1f vec 236 (LowPrio|edge)");
  EXPECT_EQ(FormatApicAcceptIrq(0, 0x700, 0, 0x20), "apicid 0 vec 32 (ExtINT|edge)");
  // vcpu_id 999, vector 0xff, INIT; dm bits outside 10:8 do not count (0xD00 -> 5).
  EXPECT_EQ(FormatApicAcceptIrq(999, 0xD00, 0, 0xff), "apicid 3e7 vec 255 (INIT|edge)");
  EXPECT_EQ(FormatApicAcceptIrq(2, 0x200, 0, 0), "apicid 2 vec 0 (SMI|edge)");
  EXPECT_EQ(FormatApicAcceptIrq(2, 0x600, 0, 0x9a), "apicid 2 vec 154 (SIPI|edge)");
}

TEST(KvmEvents, Eoi) {
  EXPECT_EQ(FormatEoi(0x10, 236), "apicid 10 vector 236");
  // apic_set_eoi() traces before checking for an empty ISR: vector -1.
  EXPECT_EQ(FormatEoi(0, -1), "apicid 0 vector -1");
  EXPECT_EQ(FormatEoi(300, 255), "apicid 12c vector 255");
}

TEST(KvmEvents, ApicRegisterAccess) {
  EXPECT_EQ(FormatApic(false, 0x20, 0x01000000), "apic_read APIC_ID = 0x1000000");
  // x2APIC ICR writes are 64 bits wide ("0x%llx").
  EXPECT_EQ(FormatApic(true, 0x300, 0x0000000500004030ull), "apic_write APIC_ICR = 0x500004030");
  EXPECT_EQ(FormatApic(true, 0x3F0, 0x31), "apic_write APIC_SELF_IPI = 0x31");
  // LVTCMCI (0x2f0) is not in kvm_trace_symbol_apic.
  EXPECT_EQ(FormatApic(true, 0x2F0, 0), "apic_write 0x2f0 = 0x0");
}

TEST(KvmEvents, AvicIncompleteIpi) {
  EXPECT_EQ(FormatAvicIncompleteIpi(1, 0x02000000, 0x4030, 1, 2),
            "vcpu=1, icrh:icrl=0x02000000:00004030, id=1, index=2");
  // The kernel prints the 0x prefix for zero as well.
  EXPECT_EQ(FormatAvicIncompleteIpi(0, 0, 0, 0, 0),
            "vcpu=0, icrh:icrl=0x00000000:00000000, id=0, index=0");
  EXPECT_EQ(FormatAvicIncompleteIpi(511, 0xff000000, 0x000C40ff, 4, 0x1ff),
            "vcpu=511, icrh:icrl=0xff000000:000c40ff, id=4, index=511");
}

TEST(KvmEvents, AvicKickVcpuSlowpath) {
  // "%#08x": 8 columns including "0x" leave 6 digits; longer values are not cut.
  EXPECT_EQ(FormatAvicKickVcpuSlowpath(0, 0x4030, 3), "icrh:icrl=0x000000:00004030, index=3");
  EXPECT_EQ(FormatAvicKickVcpuSlowpath(0x12, 0, 0), "icrh:icrl=0x000012:00000000, index=0");
  EXPECT_EQ(FormatAvicKickVcpuSlowpath(0x05000000, 0x41, 5),
            "icrh:icrl=0x5000000:00000041, index=5");
}

TEST(KvmEvents, AvicDoorbellAndGaLog) {
  EXPECT_EQ(FormatAvicDoorbell(1, 2), "vcpuid=1, apicid=2");
  EXPECT_EQ(FormatAvicGaLog(7, 3), "vmid=7, vcpuid=3");
}

TEST(KvmEvents, AvicUnacceleratedAccess) {
  EXPECT_EQ(FormatAvicUnacceleratedAccess(3, 0x300, true, true, 0),
            "vcpu=3, offset=0x300(APIC_ICR), trap, write, vec=0x0");
  EXPECT_EQ(FormatAvicUnacceleratedAccess(0, 0x390, false, false, 0x30),
            "vcpu=0, offset=0x390(APIC_TMCCT), fault, read, vec=0x30");
  // Not in kvm_trace_symbol_apic: __print_symbolic falls back to hex.
  EXPECT_EQ(FormatAvicUnacceleratedAccess(0, 0x3a0, false, true, 0),
            "vcpu=0, offset=0x3a0(0x3a0), fault, write, vec=0x0");
  // Offset 0: both the "%#x" and the symbolic fallback print "0x0".
  EXPECT_EQ(FormatAvicUnacceleratedAccess(1, 0, false, false, 0),
            "vcpu=1, offset=0x0(0x0), fault, read, vec=0x0");
  EXPECT_EQ(FormatAvicUnacceleratedAccess(2, 0x400, false, false, 0xff),
            "vcpu=2, offset=0x400(APIC_EFEAT), fault, read, vec=0xff");
  EXPECT_EQ(FormatAvicUnacceleratedAccess(2, 0x410, true, true, 0),
            "vcpu=2, offset=0x410(APIC_ECTRL), trap, write, vec=0x0");
}

TEST(KvmEvents, PicSetIrq) {
  EXPECT_EQ(FormatPicSetIrq(0, 0, 0x00, 0x00, false), "chip 0 pin 0 (edge)");
  EXPECT_EQ(FormatPicSetIrq(1, 3, 0x08, 0x08, true), "chip 1 pin 3 (level|masked) (coalesced)");
  EXPECT_EQ(FormatPicSetIrq(0, 200, 0xff, 0xff, false), "chip 0 pin 200 (edge)");
  EXPECT_EQ(FormatPicSetIrq(1, 7, 0x80, 0x80, false), "chip 1 pin 7 (level|masked)");
  // Only the pin's own ELCR/IMR bit counts.
  EXPECT_EQ(FormatPicSetIrq(0, 2, 0xFB, 0xFB, false), "chip 0 pin 2 (edge)");
  EXPECT_EQ(FormatPicSetIrq(0, 1, 0x00, 0x02, true), "chip 0 pin 1 (edge|masked) (coalesced)");
}

TEST(KvmEvents, IoapicSetIrq) {
  // dest 0x01 in bits 63:56, masked (bit 16), level (bit 15), logical (bit 11), LowPrio, vec 0x41.
  const uint64_t e = (1ull << 56) | (1u << 16) | (1u << 15) | (1u << 11) | (1u << 8) | 0x41;
  EXPECT_EQ(FormatIoapicSetIrq(e, 9, false), "pin 9 dst 1 vec 65 (LowPrio|logical|level|masked)");
  EXPECT_EQ(FormatIoapicSetIrq(0x30, 2, true),
            "pin 2 dst 0 vec 48 (Fixed|physical|edge) (coalesced)");
  // Vector and destination 0xff, NMI; delivery status, polarity and remote IRR (bits 12-14) and
  // the reserved bits 55:17 are not printed.
  const uint64_t nmi =
      (0xFFull << 56) | (0x1FFull << 40) | (1u << 16) | (1u << 15) | 0x7000 | (4u << 8) | 0xFF;
  EXPECT_EQ(FormatIoapicSetIrq(nmi, 23, true),
            "pin 23 dst ff vec 255 (NMI|physical|level|masked) (coalesced)");
}

TEST(KvmEvents, IoapicDelayedEoiInj) {
  EXPECT_EQ(FormatIoapicDelayedEoiInj((3ull << 56) | (1u << 15) | 0x61),
            "dst 3 vec 97 (Fixed|physical|level)");
  EXPECT_EQ(FormatIoapicDelayedEoiInj((1u << 16) | (1u << 11) | (7u << 8)),
            "dst 0 vec 0 (ExtINT|logical|edge|masked)");
}

TEST(KvmEvents, MsiSetIrq) {
  // Address 0xFEE01000: destination 1 in bits 19:12.
  EXPECT_EQ(FormatMsiSetIrq(0xFEE01000, 0x4031), "dst 1 vec 49 (Fixed|physical|edge)");
  // Destination mode (bit 2) and redirection hint (bit 3); data: LowPrio, level, vector 0x41.
  EXPECT_EQ(FormatMsiSetIrq(0xFEE0300C, 0x8141), "dst 3 vec 65 (LowPrio|logical|level|rh)");
  // Extended destination: address[63:40] supplies destination bits 31:8.
  EXPECT_EQ(FormatMsiSetIrq(0x00000123FEE05000ull, 0x400), "dst 105 vec 0 (NMI|physical|edge)");
}

TEST(KvmEvents, SetIrqAndAckIrq) {
  EXPECT_EQ(FormatSetIrq(0, 1, 0), "gsi 0 level 1 source 0");
  EXPECT_EQ(FormatSetIrq(23, 0, 2), "gsi 23 level 0 source 2");
  EXPECT_EQ(FormatAckIrq(0, 0), "irqchip PIC master pin 0");
  EXPECT_EQ(FormatAckIrq(1, 6), "irqchip PIC slave pin 6");
  EXPECT_EQ(FormatAckIrq(2, 9), "irqchip IOAPIC pin 9");
  EXPECT_EQ(FormatAckIrq(5, 1), "irqchip 0x5 pin 1");
}

TEST(TraceSink, RingKeepsLastLinesWithPrefix) {
  FakeClock clock(42212649282000ull);
  TraceSink sink(clock);
  sink.set_ring_capacity(2);
  set_current_task({"CPU 2/KVM", 10404, 263});
  trace_kvm_apicv_inhibit_changed(&sink, 2, true, 0x4);
  trace_kvm_apicv_inhibit_changed(&sink, 8, true, 0x300);
  clock.advance(5000);
  trace_kvm_apicv_inhibit_changed(&sink, 8, false, 0x200);
  auto lines = sink.ring_lines();
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0],
            "       CPU 2/KVM-10404   [263] ..... 42212.649282: kvm_apicv_inhibit_changed: set "
            "reason=8, inhibits=0x300 IRQWIN|PIT_REINJ");
  EXPECT_EQ(lines[1],
            "       CPU 2/KVM-10404   [263] ..... 42212.649287: kvm_apicv_inhibit_changed: cleared "
            "reason=8, inhibits=0x200 PIT_REINJ");
  EXPECT_EQ(sink.lines_emitted(), 3u);
}

TEST(TraceSink, EventNamesAndRoundedTimestamp) {
  // 42214.4892935 s: ns2usecs() rounds the half microsecond up.
  FakeClock clock(42214489293500ull);
  TraceSink sink(clock);
  sink.set_ring_capacity(8);
  set_current_task({"CPU 3/KVM", 10405, 10});
  trace_kvm_pv_eoi(&sink, 3, 0xec);
  trace_kvm_apic_write(&sink, 0xB0, 0);
  trace_kvm_apicv_accept_irq(&sink, 1, 0, 0, 0x30);
  trace_kvm_inj_virq(&sink, 0xff, false, false);
  const auto lines = sink.ring_lines();
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_EQ(lines[0],
            "       CPU 3/KVM-10405   [010] ..... 42214.489294: kvm_pv_eoi: apicid 3 vector 236");
  EXPECT_EQ(
      lines[1],
      "       CPU 3/KVM-10405   [010] ..... 42214.489294: kvm_apic: apic_write APIC_EOI = 0x0");
  EXPECT_EQ(
      lines[2],
      "       CPU 3/KVM-10405   [010] ..... 42214.489294: kvm_apicv_accept_irq: apicid 1 vec 48 "
      "(Fixed|edge)");
  EXPECT_EQ(lines[3], "       CPU 3/KVM-10405   [010] ..... 42214.489294: kvm_inj_virq: IRQ 0xff");
}

TEST(TraceSink, DisabledEmitsNothing) {
  FakeClock clock;
  TraceSink sink(clock);
  sink.set_ring_capacity(8);
  sink.set_enabled(false);
  trace_kvm_eoi(&sink, 0, 32);
  trace_kvm_eoi(nullptr, 0, 32);
  EXPECT_TRUE(sink.ring_lines().empty());
  EXPECT_EQ(sink.lines_emitted(), 0u);
}

TEST(TraceSink, WritesToFileAndIsThreadSafe) {
  FakeClock clock;
  TraceSink sink(clock);
  std::FILE* f = std::tmpfile();
  ASSERT_NE(f, nullptr);
  sink.set_output(f);
  sink.set_ring_capacity(1000);
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t) {
    ts.emplace_back([&sink, t] {
      set_current_task({"CPU " + std::to_string(t) + "/KVM", 100 + t, t});
      for (int i = 0; i < 100; ++i) trace_kvm_eoi(&sink, t, i);
    });
  }
  for (auto& t : ts) t.join();
  sink.set_output(nullptr);
  std::fflush(f);
  std::rewind(f);
  int newlines = 0;
  for (int c; (c = std::fgetc(f)) != EOF;) newlines += c == '\n';
  std::fclose(f);
  EXPECT_EQ(newlines, 400);
  EXPECT_EQ(sink.ring_lines().size(), 400u);
}

}  // namespace
}  // namespace apicv::trace
