// Event bodies against the TP_printk formats of arch/x86/kvm/trace.h and
// include/trace/events/kvm.h, with expected text written out by hand from those formats and the
// ICR / redirection-entry layouts (SDM vol. 3A 11.6.1, 82093AA 3.2.4). Also the sink.
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
}

TEST(KvmEvents, ApicIpi) {
  // Fixed, physical, assert, edge, no shorthand, vector 0x30 -> ICR low 0x4030.
  EXPECT_EQ(FormatApicIpi(0x4030, 1), "dst 1 vec 48 (Fixed|physical|assert|edge|dst)");
  // INIT (5 << 8), logical (bit 11), level assert, level trigger, all-but-self (3 << 18).
  EXPECT_EQ(FormatApicIpi(0xCCD00, 0xff), "dst ff vec 0 (INIT|logical|assert|level|all-but-self)");
  // SIPI vector 0x9a to self, de-assert.
  EXPECT_EQ(FormatApicIpi(0x4069A, 0), "dst 0 vec 154 (SIPI|physical|de-assert|edge|self)");
}

TEST(KvmEvents, ApicAcceptIrq) {
  EXPECT_EQ(FormatApicAcceptIrq(1, 0x400, 1, 2), "apicid 1 vec 2 (NMI|level)");
  EXPECT_EQ(FormatApicAcceptIrq(0x1f, 0x100, 0, 0xec), "apicid 1f vec 236 (LowPrio|edge)");
  EXPECT_EQ(FormatApicAcceptIrq(0, 0x700, 0, 0x20), "apicid 0 vec 32 (ExtINT|edge)");
}

TEST(KvmEvents, Eoi) {
  EXPECT_EQ(FormatEoi(0x10, 236), "apicid 10 vector 236");
}

TEST(KvmEvents, AvicIncompleteIpi) {
  EXPECT_EQ(FormatAvicIncompleteIpi(1, 0x02000000, 0x4030, 1, 2),
            "vcpu=1, icrh:icrl=0x02000000:00004030, id=1, index=2");
  // The kernel prints the 0x prefix for zero as well.
  EXPECT_EQ(FormatAvicIncompleteIpi(0, 0, 0, 0, 0),
            "vcpu=0, icrh:icrl=0x00000000:00000000, id=0, index=0");
}

TEST(KvmEvents, AvicUnacceleratedAccess) {
  EXPECT_EQ(FormatAvicUnacceleratedAccess(3, 0x300, true, true, 0),
            "vcpu=3, offset=0x300(APIC_ICR), trap, write, vec=0x0");
  EXPECT_EQ(FormatAvicUnacceleratedAccess(0, 0x390, false, false, 0x30),
            "vcpu=0, offset=0x390(APIC_TMCCT), fault, read, vec=0x30");
  // Not in kvm_trace_symbol_apic: __print_symbolic falls back to hex.
  EXPECT_EQ(FormatAvicUnacceleratedAccess(0, 0x3a0, false, true, 0),
            "vcpu=0, offset=0x3a0(0x3a0), fault, write, vec=0x0");
}

TEST(KvmEvents, PicSetIrq) {
  EXPECT_EQ(FormatPicSetIrq(0, 0, 0x00, 0x00, false), "chip 0 pin 0 (edge)");
  EXPECT_EQ(FormatPicSetIrq(1, 3, 0x08, 0x08, true), "chip 1 pin 3 (level|masked) (coalesced)");
  EXPECT_EQ(FormatPicSetIrq(0, 200, 0xff, 0xff, false), "chip 0 pin 200 (edge)");
}

TEST(KvmEvents, IoapicSetIrq) {
  // dest 0x01 in bits 63:56, masked (bit 16), level (bit 15), logical (bit 11), LowPrio, vec 0x41.
  const uint64_t e = (1ull << 56) | (1u << 16) | (1u << 15) | (1u << 11) | (1u << 8) | 0x41;
  EXPECT_EQ(FormatIoapicSetIrq(e, 9, false), "pin 9 dst 1 vec 65 (LowPrio|logical|level|masked)");
  EXPECT_EQ(FormatIoapicSetIrq(0x30, 2, true),
            "pin 2 dst 0 vec 48 (Fixed|physical|edge) (coalesced)");
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
