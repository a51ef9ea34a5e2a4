// Concurrent APIC map rebuilds must leave the map inhibits matching the final map. KVM recomputes
// PHYSICAL_ID_ALIASED / APIC_ID_MODIFIED in kvm_recalculate_apic_map() while it still holds
// apic_map_lock, so the last rebuild's flags are the ones that stick (spec §6.2). Four vCPU threads
// move their xAPIC IDs onto vCPU 0's ID 0 (aliasing, and an ID that differs from the vCPU id) and
// back; once both are back, nothing may remain inhibited. The race this guards against is timing
// dependent, so the test repeats the round many times; it cannot report a false failure.
#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include "trace/trace_sink.h"
#include "virt/apicv_vm.h"

namespace apicv::virt {
namespace {

TEST(ApicMapRace, InhibitsFollowTheLastRebuild) {
  FakeClock clock{1'000'000'000};
  VmConfig cfg;
  constexpr int kMovers = 4;  // vCPUs 1..4 move; vCPU 0 keeps ID 0
  cfg.nr_vcpus = kMovers + 1;
  cfg.pit_policy = PitPolicy::kDiscard;  // nothing else inhibits: the mask must end at 0
  ApicvVm vm(cfg, clock, nullptr);
  vm.set_kick([](int) {});
  for (int v = 0; v <= kMovers; ++v) {
    const uint32_t spiv = 0x1FF;
    ASSERT_EQ(vm.mmio_write(v, 0xFEE000F0, &spiv, 4), AccessResult::kHandled);
  }
  ASSERT_EQ(vm.inhibit_reasons(), 0u);

  int stale_rounds = 0;
  for (int round = 0; round < 1000; ++round) {
    std::atomic<int> ready{0};
    auto move_and_back = [&](int v) {
      ready.fetch_add(1);
      while (ready.load() < kMovers) std::this_thread::yield();
      const uint32_t alias = 0;  // vCPU 0's ID
      const uint32_t own = static_cast<uint32_t>(v) << 24;
      vm.mmio_write(v, 0xFEE00020, &alias, 4);
      vm.mmio_write(v, 0xFEE00020, &own, 4);
    };
    std::vector<std::thread> movers;
    for (int v = 1; v <= kMovers; ++v) movers.emplace_back(move_and_back, v);
    for (auto& t : movers) t.join();
    if (vm.inhibit_reasons() != 0) {
      ++stale_rounds;
      // Re-sync so the next round starts clean: any rebuild recomputes the flags.
      const uint32_t own = 1u << 24;
      vm.mmio_write(1, 0xFEE00020, &own, 4);
    }
  }
  EXPECT_EQ(stale_rounds, 0);
}

}  // namespace
}  // namespace apicv::virt
