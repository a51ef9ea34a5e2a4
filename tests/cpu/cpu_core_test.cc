// The software CPU's run loop, counting, decode cache, events and interrupt shadows, on small
// hand-encoded programs (the encodings are spelled out next to each byte sequence).
#include <gtest/gtest.h>

#include "cpu_test_machine.h"

namespace apicv::cpu::test {
namespace {

constexpr uint64_t kCode = TestMachine::kCode;

// mov ecx, 1000; xor eax, eax; L: add eax, ecx; dec ecx; jnz L; hlt
void put_sum_loop(TestMachine& m) {
  m.put(kCode, {0xB9, 0xE8, 0x03, 0x00, 0x00,  // mov ecx, 1000
                0x31, 0xC0,                    // xor eax, eax
                0x01, 0xC8,                    // add eax, ecx
                0xFF, 0xC9,                    // dec ecx
                0x75, 0xFA,                    // jnz -6
                0xF4});                        // hlt
}

TEST(CpuCore, RegisterLoopRetiresExactlyAndHalts) {
  TestMachine m;
  m.long_mode();
  put_sum_loop(m);
  const RunResult r = m.cpu().run(1'000'000);
  EXPECT_EQ(r.reason, StopReason::kHlt);
  EXPECT_EQ(r.retired, 2u + 3 * 1000 + 1);
  EXPECT_EQ(m.s().gpr[kRax], 500500u);
  EXPECT_EQ(m.s().activity, Activity::kHalted);
  EXPECT_EQ(m.s().rip, kCode + 14);  // after the HLT
}

TEST(CpuCore, BudgetStopsAtExactlyThatManyInstructions) {
  TestMachine m;
  m.long_mode();
  put_sum_loop(m);
  uint64_t total = 0;
  for (uint64_t budget : {1u, 7u, 100u, 1000u}) {
    const RunResult r = m.cpu().run(budget);
    EXPECT_EQ(r.reason, StopReason::kBudget);
    EXPECT_EQ(r.retired, budget);
    total += r.retired;
  }
  const RunResult r = m.cpu().run(1'000'000);
  EXPECT_EQ(r.reason, StopReason::kHlt);
  EXPECT_EQ(total + r.retired, 3003u);
  EXPECT_EQ(m.cpu().retired(), 3003u);
  EXPECT_EQ(m.s().gpr[kRax], 500500u);
}

TEST(CpuCore, StoreIntoDecodedCodeIsSeen) {
  TestMachine m;
  m.long_mode();
  // mov byte [rip+1], 0x42 (patches the immediate of the next instruction); mov al, 5; hlt
  m.put(kCode, {0xC6, 0x05, 0x01, 0x00, 0x00, 0x00, 0x42, 0xB0, 0x05, 0xF4});
  const RunResult r = m.cpu().run(100);
  EXPECT_EQ(r.reason, StopReason::kHlt);
  EXPECT_EQ(m.s().gpr[kRax] & 0xFF, 0x42u);
}

TEST(CpuCore, HostWriteInvalidatesCachedBlock) {
  TestMachine m;
  m.long_mode();
  m.put(kCode, {0xB0, 0x05, 0xF4});  // mov al, 5; hlt
  m.cpu().run(100);
  EXPECT_EQ(m.s().gpr[kRax] & 0xFF, 5u);
  m.put(kCode, {0xB0, 0x09, 0xF4});  // the host rewrites it (a loader, a reboot)
  m.s().rip = kCode;
  m.s().activity = Activity::kActive;
  m.cpu().run(100);
  EXPECT_EQ(m.s().gpr[kRax] & 0xFF, 9u);
}

TEST(CpuCore, PageFaultDeliveredWithErrorCodeAndCr2) {
  TestMachine m;
  m.long_mode();
  m.gate(14, 0x110000);
  m.put(0x110000, {0xF4});  // handler: hlt
  // mov rax, [0x40000000] (PDPT entry 1 is not present)
  m.put(kCode, {0x48, 0x8B, 0x04, 0x25, 0x00, 0x00, 0x00, 0x40});
  const RunResult r = m.cpu().run(100);
  EXPECT_EQ(r.reason, StopReason::kHlt);
  EXPECT_EQ(m.s().rip, 0x110001u);
  EXPECT_EQ(m.s().cr2, 0x40000000u);
  const uint64_t sp = m.s().gpr[kRsp];
  EXPECT_EQ(m.get64(sp), 0u);                    // error code: not present, read, supervisor
  EXPECT_EQ(m.get64(sp + 8), kCode);             // RIP of the faulting instruction
  EXPECT_EQ(m.get64(sp + 16), 0x08u);            // CS
  EXPECT_EQ(m.get64(sp + 32), TestMachine::kStackTop);  // RSP before delivery
}

TEST(CpuCore, WriteToReadOnlyPageFaultsWithProtectionErrorCode) {
  TestMachine m;
  m.long_mode();
  m.put64(TestMachine::kPd + 8 * 1, (1ull << 21) | 0x85);  // 2-4 MiB: present, user, read-only
  m.gate(14, 0x110000);
  m.put(0x110000, {0xF4});
  m.put(kCode, {0xC6, 0x04, 0x25, 0x00, 0x00, 0x20, 0x00, 0x01});  // mov byte [0x200000], 1
  m.cpu().run(100);
  EXPECT_EQ(m.s().rip, 0x110001u);
  EXPECT_EQ(m.get64(m.s().gpr[kRsp]), 0x3u);  // present | write (CR0.WP = 1)
}

TEST(CpuCore, DivideErrorIsDeliveredAndFaultingRipPushed) {
  TestMachine m;
  m.long_mode();
  m.gate(0, 0x110000);
  m.put(0x110000, {0xF4});
  m.put(kCode, {0x31, 0xC9, 0xF7, 0xF1});  // xor ecx, ecx; div ecx
  m.cpu().run(100);
  EXPECT_EQ(m.s().rip, 0x110001u);
  EXPECT_EQ(m.get64(m.s().gpr[kRsp]), kCode + 2);  // no error code for #DE
}

TEST(CpuCore, UnusableIdtEndsInTripleFault) {
  TestMachine m;
  m.long_mode();
  m.s().idtr = {TestMachine::kIdt, 0};  // every vector is outside the IDT
  m.put(kCode, {0x31, 0xC9, 0xF7, 0xF1});  // #DE -> #GP (IDT limit) -> #DF -> shutdown
  const RunResult r = m.cpu().run(100);
  EXPECT_EQ(r.reason, StopReason::kShutdown);
  EXPECT_EQ(m.s().activity, Activity::kShutdown);
}

TEST(CpuCore, StiShadowHoldsTheWindowForOneInstruction) {
  TestMachine m;
  m.long_mode();
  m.put(kCode, {0xFB, 0x90, 0x90, 0xF4});  // sti; nop; nop; hlt
  m.cpu().set_interrupt_window_request(true);
  const RunResult r = m.cpu().run(100);
  EXPECT_EQ(r.reason, StopReason::kIrqWindow);
  EXPECT_EQ(r.retired, 2u);  // sti and the nop in its shadow
  EXPECT_EQ(m.s().rip, kCode + 2);
  EXPECT_TRUE(m.cpu().ready_for_interrupt());
}

TEST(CpuCore, StiHltHaltsInsideTheShadowAndTheInterruptWakesIt) {
  TestMachine m;
  m.long_mode();
  m.gate(0x30, 0x110000);
  m.put(0x110000, {0xB0, 0x77, 0xF4});  // handler: mov al, 0x77; hlt
  m.put(kCode, {0xFB, 0xF4, 0xF4});      // sti; hlt; hlt
  m.cpu().set_interrupt_window_request(true);
  RunResult r = m.cpu().run(100);
  EXPECT_EQ(r.reason, StopReason::kHlt);  // the window never opened before the HLT
  EXPECT_EQ(m.s().rip, kCode + 2);
  m.cpu().set_interrupt_window_request(false);
  ASSERT_TRUE(m.cpu().ready_for_interrupt());
  m.cpu().inject_interrupt(0x30);
  r = m.cpu().run(100);
  EXPECT_EQ(r.reason, StopReason::kHlt);
  EXPECT_EQ(m.s().gpr[kRax] & 0xFF, 0x77u);
  EXPECT_EQ(m.get64(m.s().gpr[kRsp]), kCode + 2);  // returns after the first HLT
  EXPECT_EQ(m.s().rflags & kIF, 0u);               // interrupt gate cleared IF
}

TEST(CpuCore, PortOutReachesHostAndEndsTheRun) {
  TestMachine m;
  m.long_mode();
  m.put(kCode, {0xB0, 0x41, 0xE6, 0xE9, 0x90, 0xF4});  // mov al, 'A'; out 0xE9, al; nop; hlt
  const RunResult r = m.cpu().run(100);
  EXPECT_EQ(r.reason, StopReason::kExit);
  EXPECT_EQ(r.retired, 2u);
  ASSERT_EQ(m.host().outs.size(), 1u);
  EXPECT_EQ(m.host().outs[0].port, 0xE9);
  EXPECT_EQ(m.host().outs[0].value, 0x41u);
}

TEST(CpuCore, MmioOutsideRamGoesToHostAndEndsTheRun) {
  TestMachine m;
  m.long_mode();
  // Map 0xFEE00000 (beyond RAM) with PD entry 0x7F7 in a second PDPT slot: use the 3-4 GiB GiB.
  m.put64(TestMachine::kPdpt + 3 * 8, 0x4000 | 0x7);
  for (uint64_t i = 0; i < 512; ++i) m.put64(0x4000 + i * 8, ((3ull << 30) + (i << 21)) | 0x87);
  m.host().mmio[0xFEE00030] = 0x50014;
  // mov eax, [abs 0xFEE00030] (moffs64: a disp32 would be sign-extended); nop; hlt
  m.put(kCode, {0xA1, 0x30, 0x00, 0xE0, 0xFE, 0x00, 0x00, 0x00, 0x00, 0x90, 0xF4});
  const RunResult r = m.cpu().run(100);
  EXPECT_EQ(r.reason, StopReason::kExit);
  EXPECT_EQ(m.s().gpr[kRax], 0x50014u);
  EXPECT_EQ(m.host().mmio_reads, 1);
}

TEST(CpuCore, RealModeSegmentArithmetic) {
  TestMachine m;  // after RESET: real mode
  m.s().seg[kCs] = Segment{0, 0, 0xFFFF, 0x9B};
  m.s().rip = 0x7C00;
  m.cpu().state_changed();
  // mov ax, 0x1234; mov ds, ax; mov byte [0x10], 0x5A; hlt
  m.put(0x7C00, {0xB8, 0x34, 0x12, 0x8E, 0xD8, 0xC6, 0x06, 0x10, 0x00, 0x5A, 0xF4});
  const RunResult r = m.cpu().run(100);
  EXPECT_EQ(r.reason, StopReason::kHlt);
  EXPECT_EQ(m.s().seg[kDs].base, 0x12340u);
  EXPECT_EQ(m.mem()[0x12350], 0x5A);
}

TEST(CpuCore, InitWaitsForSipiAndSipiStartsRealMode) {
  TestMachine m;
  m.long_mode();
  m.cpu().init(true);
  EXPECT_EQ(m.s().activity, Activity::kWaitForSipi);
  EXPECT_EQ(m.cpu().run(100).reason, StopReason::kNotActive);
  m.put(0x9000, {0xB0, 0x11, 0xF4});  // mov al, 0x11; hlt
  m.cpu().sipi(0x09);
  EXPECT_EQ(m.s().seg[kCs].selector, 0x0900);
  EXPECT_EQ(m.s().seg[kCs].base, 0x9000u);
  EXPECT_EQ(m.cpu().run(100).reason, StopReason::kHlt);
  EXPECT_EQ(m.s().gpr[kRax] & 0xFF, 0x11u);
}

}  // namespace
}  // namespace apicv::cpu::test
