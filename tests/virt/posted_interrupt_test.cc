// Posted-interrupt descriptor semantics (Intel SDM vol. 3C 30.6, spec §7.4): layout, PIR/ON
// test-and-set, SN suppression, harvest into IRR, concurrent posting (run under TSan too), and
// the EOI-exit bitmap.
#include "virt/posted_interrupt.h"

#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <thread>
#include <vector>

namespace apicv::virt {
namespace {

TEST(PiDesc, LayoutAndFields) {
  PiDesc d;
  EXPECT_EQ(reinterpret_cast<uintptr_t>(&d) % 64, 0u);
  // Control word = bits 319:256, i.e. byte offset 32.
  EXPECT_EQ(reinterpret_cast<const char*>(&d.control) - reinterpret_cast<const char*>(&d), 32);
  d.set_nv(0xF2);
  d.set_ndst(0x0300);
  EXPECT_EQ(d.nv(), 0xF2);
  EXPECT_EQ(d.ndst(), 0x0300u);
  EXPECT_EQ(d.control.load(), 0x0000030000F20000ull);
  EXPECT_FALSE(d.on());
  EXPECT_FALSE(d.sn());
  EXPECT_TRUE(d.pir_empty());
}

TEST(PiDesc, DeliverSetsPirThenOnThenNotifies) {
  PiDesc d;
  VcpuRequests target;
  EXPECT_EQ(deliver_posted_interrupt(d, 0x41, target), PiNotify::kWake);  // outside guest mode
  EXPECT_TRUE(d.test_pir(0x41));
  EXPECT_TRUE(d.on());
  // ON already set: a notification is outstanding, no second one.
  EXPECT_EQ(deliver_posted_interrupt(d, 0x42, target), PiNotify::kNone);
  // Same vector again: PIR bit already set.
  EXPECT_EQ(deliver_posted_interrupt(d, 0x41, target), PiNotify::kNone);

  PiDesc g;
  target.enter_guest_mode();
  EXPECT_EQ(deliver_posted_interrupt(g, 0xFF, target), PiNotify::kNotify);
  EXPECT_EQ(g.pir[3].load(), 1ull << 63);
}

TEST(PiDesc, SyncHarvestsAndClearsOn) {
  PiDesc d;
  VcpuRequests target;
  deliver_posted_interrupt(d, 0x20, target);
  deliver_posted_interrupt(d, 0x9F, target);
  std::array<uint32_t, 8> irr{};
  irr[1] = 1u << 2;  // vector 0x22 already pending
  const PiSyncResult r = sync_pir_to_irr(d, irr);
  EXPECT_TRUE(r.harvested);
  EXPECT_EQ(r.max_irr, 0x9F);
  EXPECT_TRUE(r.max_from_pir);
  EXPECT_EQ(irr[1], (1u << 0) | (1u << 2));  // 0x20, 0x22
  EXPECT_EQ(irr[4], 1u << 31);               // 0x9F
  EXPECT_FALSE(d.on());
  EXPECT_TRUE(d.pir_empty());
  // Nothing new: not harvested, max stays.
  const PiSyncResult again = sync_pir_to_irr(d, irr);
  EXPECT_FALSE(again.harvested);
  EXPECT_EQ(again.max_irr, 0x9F);
  EXPECT_FALSE(again.max_from_pir);
  // After the harvest the next post notifies again.
  EXPECT_EQ(deliver_posted_interrupt(d, 0x30, target), PiNotify::kWake);
  const PiSyncResult low = sync_pir_to_irr(d, irr);
  EXPECT_TRUE(low.harvested);
  EXPECT_FALSE(low.max_from_pir);  // 0x30 is below the already pending 0x9F
}

TEST(PiDesc, PirWithoutOnIsNotHarvested) {
  PiDesc d;
  d.pir[0].store(1ull << 40);
  std::array<uint32_t, 8> irr{};
  EXPECT_FALSE(sync_pir_to_irr(d, irr).harvested);
  EXPECT_EQ(irr[1], 0u);
}

TEST(PiDesc, SuppressNotification) {
  PiDesc d;
  VcpuRequests target;
  target.enter_guest_mode();
  set_sn(d);
  EXPECT_EQ(deliver_posted_interrupt(d, 0x50, target), PiNotify::kNone);
  EXPECT_TRUE(d.test_pir(0x50));
  EXPECT_FALSE(d.on());
  EXPECT_TRUE(clear_sn(d));  // PIR not empty -> ON armed
  EXPECT_TRUE(d.on());
  EXPECT_FALSE(d.sn());
  std::array<uint32_t, 8> irr{};
  EXPECT_EQ(sync_pir_to_irr(d, irr).max_irr, 0x50);
  EXPECT_FALSE(clear_sn(d));  // nothing pending
}

TEST(PiDesc, ConcurrentPostingLosesNothing) {
  PiDesc d;
  VcpuRequests target;
  constexpr int kThreads = 4;
  std::atomic<bool> done{false};
  std::atomic<int> notifications{0};
  std::array<uint32_t, 8> irr{};
  std::vector<std::thread> senders;
  for (int t = 0; t < kThreads; ++t) {
    senders.emplace_back([&, t] {
      // Each thread posts its own 60 vectors, several rounds.
      for (int round = 0; round < 200; ++round) {
        for (int v = 16 + t; v < 256; v += kThreads) {
          if (deliver_posted_interrupt(d, static_cast<uint8_t>(v), target) != PiNotify::kNone) {
            notifications.fetch_add(1);
          }
        }
      }
    });
  }
  std::thread owner([&] {
    while (!done.load()) sync_pir_to_irr(d, irr);
  });
  for (auto& s : senders) s.join();
  done.store(true);
  owner.join();
  sync_pir_to_irr(d, irr);
  // Every vector 16..255 reached IRR, none below.
  EXPECT_EQ(irr[0], 0xFFFF0000u);
  for (int w = 1; w < 8; ++w) EXPECT_EQ(irr[w], 0xFFFFFFFFu) << w;
  EXPECT_GE(notifications.load(), 1);
  EXPECT_FALSE(d.on());
}

TEST(EoiExitBitmap, SetTestClear) {
  const uint8_t handled[] = {0x00, 0x3F, 0x40, 0xFF};
  EoiExitBitmap b = EoiExitBitmap::FromHandledVectors(handled);
  EXPECT_EQ(b.words()[0], 1ull | (1ull << 63));
  EXPECT_EQ(b.words()[1], 1ull);
  EXPECT_EQ(b.words()[3], 1ull << 63);
  EXPECT_TRUE(b.test(0xFF));
  EXPECT_FALSE(b.test(0xFE));
  b.clear(0x40);
  EXPECT_FALSE(b.test(0x40));
  EoiExitBitmap c;
  c.set(0x00);
  c.set(0x3F);
  c.set(0xFF);
  EXPECT_EQ(b, c);
  b.reset();
  EXPECT_EQ(b, EoiExitBitmap{});
}

}  // namespace
}  // namespace apicv::virt
