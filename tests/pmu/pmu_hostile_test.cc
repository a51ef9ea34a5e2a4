// Hostile guest input: random MSR accesses around every PMU MSR block, interleaved with counting.
// Checks the architectural invariants after every step: no reserved bit is ever stored, counters
// stay within 48 bits, a faulting write changes nothing, and accepted writes read back as the
// architecture says.
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <vector>

#include "devices/pmu/pmu.h"

namespace apicv {
namespace {

constexpr uint64_t k48 = 0xFFFFFFFFFFFFull;

std::vector<uint32_t> CandidateMsrs() {
  std::vector<uint32_t> msrs;
  auto range = [&](uint32_t first, uint32_t n) {
    for (uint32_t i = 0; i < n; ++i) msrs.push_back(first + i);
  };
  range(0xBF, 12);        // around IA32_PMCx
  range(0x184, 12);       // around IA32_PERFEVTSELx
  range(0x307, 8);        // around IA32_FIXED_CTRx
  range(0x343, 4);        // PERF_CAPABILITIES
  range(0x38B, 8);        // fixed ctrl .. OVF_CTRL
  range(0x4BF, 12);       // IA32_A_PMCx
  range(0xC000FFFE, 12);  // AMD legacy
  range(0xC00101FE, 16);  // AMD core extension
  range(0xC00002FF, 5);   // PerfMonV2 (absent)
  msrs.push_back(0);
  msrs.push_back(0xFFFFFFFF);
  return msrs;
}

uint64_t RandomValue(std::mt19937_64& rng) {
  switch (rng() % 6) {
    case 0:
      return 0;
    case 1:
      return ~0ull;
    case 2:
      return 1ull << (rng() % 64);
    case 3:
      return rng() & 0xFFFFFFFFull;
    case 4:  // plausible event select: EN|OS|USR|INT and one of the counted events
      return (1ull << 22) | (rng() & (3ull << 16)) | (rng() & (1ull << 20)) |
             ((rng() & 1) ? 0xC0 : 0x3C) | ((rng() & 7) == 0 ? (1ull << 32) : 0);
    default:
      return rng();
  }
}

struct Snapshot {
  std::vector<std::pair<PmuMsrResult, uint64_t>> reads;
  bool operator==(const Snapshot&) const = default;
};

Snapshot Take(const Pmu& p, const std::vector<uint32_t>& msrs) {
  Snapshot s;
  for (uint32_t m : msrs) {
    uint64_t v = 0;
    const PmuMsrResult r = p.rdmsr(m, &v);
    s.reads.emplace_back(r, r == PmuMsrResult::kOk ? v : 0);
  }
  return s;
}

void CheckInvariants(const Pmu& p) {
  const bool intel = p.config().model == PmuModel::kIntelV2;
  for (unsigned i = 0; i < p.nr_gp(); ++i) {
    ASSERT_LE(p.counter(i), k48);
    if (intel) {
      ASSERT_EQ(p.eventsel(i) & 0xFFFFFFFF00200000ull, 0u);
    } else {
      ASSERT_EQ(p.eventsel(i) & 0xFFFFFFF000280000ull, 0u);
    }
  }
  for (unsigned i = 0; i < p.nr_fixed(); ++i) ASSERT_LE(p.counter(32 + i), k48);
  if (intel) {
    ASSERT_EQ(p.fixed_ctr_ctrl() & ~0xBBBull, 0u);
    ASSERT_EQ(p.global_ctrl() & ~0x70000000Full, 0u);
    ASSERT_EQ(p.global_status() & ~0xC00000070000000Full, 0u);
  } else {
    ASSERT_EQ(p.global_ctrl(), 0u);
  }
}

void Fuzz(const PmuConfig& config, uint64_t seed, int steps) {
  Pmu p(config);
  std::mt19937_64 rng(seed);
  const std::vector<uint32_t> msrs = CandidateMsrs();
  uint64_t tsc = 0, now = 0;
  for (int step = 0; step < steps; ++step) {
    const uint32_t msr = msrs[rng() % msrs.size()];
    const uint64_t value = RandomValue(rng);
    switch (rng() % 8) {
      case 0: {
        uint64_t v = 0;
        p.rdmsr(msr, &v);
        break;
      }
      case 1:
        p.instruction_retired(static_cast<uint8_t>(rng() % 4), rng() % 3 == 0 ? rng() : 1);
        break;
      case 2:
        now += rng() % 100000;
        tsc = (rng() % 50 == 0) ? rng() : tsc + rng() % 1000000;
        p.advance_cycles(now, tsc, static_cast<uint8_t>(rng() % 4), rng() % 5 == 0);
        (void)p.next_cycles_overflow_ns(rng() % 4000000);
        break;
      case 3:
        p.take_pmi_request();
        break;
      default: {
        const bool host = rng() % 10 == 0;
        const Snapshot before = Take(p, msrs);
        const PmuMsrResult r = p.wrmsr(msr, value, host);
        if (r != PmuMsrResult::kOk) {
          ASSERT_EQ(Take(p, msrs), before) << std::hex << "msr " << msr << " value " << value;
        }
        // Event selects that were accepted read back unchanged on Intel, masked on AMD.
        if (r == PmuMsrResult::kOk && config.model == PmuModel::kIntelV2 && msr >= 0x186 &&
            msr < 0x18A) {
          uint64_t v = 0;
          ASSERT_EQ(p.rdmsr(msr, &v), PmuMsrResult::kOk);
          ASSERT_EQ(v, value);
        }
        if (r == PmuMsrResult::kOk && config.model == PmuModel::kAmd && msr >= 0xC0010000 &&
            msr < 0xC0010004) {
          uint64_t v = 0;
          ASSERT_EQ(p.rdmsr(msr, &v), PmuMsrResult::kOk);
          ASSERT_EQ(v, value & ~0xFFFFFFF000280000ull);
        }
        break;
      }
    }
    CheckInvariants(p);
    if (::testing::Test::HasFatalFailure()) return;
  }
}

TEST(PmuHostile, IntelRandomMsrWrites) {
  Fuzz(PmuConfig{}, 1, 40000);
}

TEST(PmuHostile, IntelFullWidthRandomMsrWrites) {
  Fuzz(PmuConfig{.model = PmuModel::kIntelV2, .amd_core_ext = false, .full_width_writes = true}, 2,
       40000);
}

TEST(PmuHostile, AmdRandomMsrWrites) {
  Fuzz(PmuConfig{.model = PmuModel::kAmd, .amd_core_ext = false, .full_width_writes = false}, 3,
       40000);
}

TEST(PmuHostile, AmdCoreExtRandomMsrWrites) {
  Fuzz(PmuConfig{.model = PmuModel::kAmd, .amd_core_ext = true, .full_width_writes = false}, 4,
       40000);
}

TEST(PmuHostile, NullValuePointerOnRead) {
  Pmu p;
  EXPECT_EQ(p.rdmsr(0x186, nullptr), PmuMsrResult::kOk);
}

TEST(PmuHostile, HugeCountsDoNotOverflowArithmetic) {
  Pmu p;
  ASSERT_EQ(p.wrmsr(0x186, (1ull << 22) | (1ull << 17) | (1ull << 20) | 0xC0), PmuMsrResult::kOk);
  ASSERT_EQ(p.wrmsr(0xC1, 0x10, true), PmuMsrResult::kOk);
  const PmuOverflow o = p.instruction_retired(0, ~0ull);
  EXPECT_EQ(o.status_bits_new, 1u);
  EXPECT_TRUE(o.pmi);
  // (0x10 + 2^64 - 1) mod 2^48 = 0xF.
  EXPECT_EQ(p.counter(0), 0xFu);
}

}  // namespace
}  // namespace apicv
