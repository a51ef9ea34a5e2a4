// Deterministic replay of the 8254 PIT fuzzer's op decoder (fuzz/pit_ops.h): CI builds with g++ and
// never runs libFuzzer, so the same decoder and invariants run here on fixed pseudo-random inputs
// and on the hand-made seed corpus. Any failure names the seed and the op that broke the
// invariant; reproduce it with the libFuzzer target (docs/fuzzing.md).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "../../fuzz/pit_ops.h"

namespace apicv::fuzz {
namespace {

constexpr uint64_t kSeedBase = 4000000;  // distinct per device
constexpr int kInputs = 2000;
constexpr size_t kBytesPerInput = 800;  // about 200 ops

TEST(PitHostileReplay, FixedSeedsKeepEveryInvariant) {
  for (int seed = 0; seed < kInputs; ++seed) {
    const std::vector<uint8_t> input =
        ReplayInput(kSeedBase + static_cast<uint64_t>(seed), kBytesPerInput);
    const std::string failure = RunPitOps(input.data(), input.size());
    ASSERT_EQ(failure, "") << "seed " << seed;
  }
}

TEST(PitHostileReplay, ShortAndEmptyInputs) {
  // Truncated programs decode missing bytes as zeros; none of them may break an invariant.
  const std::vector<uint8_t> input = ReplayInput(7, 64);
  for (size_t n = 0; n <= input.size(); ++n) {
    ASSERT_EQ(RunPitOps(input.data(), n), "") << "length " << n;
  }
}

TEST(PitHostileReplay, SeedCorpus) {
  const std::filesystem::path dir =
      std::filesystem::path(__FILE__).parent_path() / "../../fuzz/corpus/pit";
  ASSERT_TRUE(std::filesystem::is_directory(dir)) << dir;
  int files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    std::ifstream f(e.path(), std::ios::binary);
    const std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(f)),
                                     std::istreambuf_iterator<char>());
    EXPECT_EQ(RunPitOps(bytes.data(), bytes.size()), "") << e.path();
    ++files;
  }
  EXPECT_GT(files, 0);
}

}  // namespace
}  // namespace apicv::fuzz
