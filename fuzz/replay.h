// Replays a fuzzer's op decoder outside libFuzzer, for the hostile_replay gtests that CI runs with
// g++: fixed pseudo-random inputs, every truncation of one input, and the committed seed corpus.
// Each function returns "" or the first broken invariant, prefixed with what reproduces it.
#pragma once

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "fuzz_input.h"

namespace apicv::fuzz {

using OpsRunner = std::string (*)(const uint8_t* data, size_t size);

inline std::string ReplayFixedSeeds(OpsRunner run, uint64_t seed_base, int inputs, size_t bytes) {
  for (int i = 0; i < inputs; ++i) {
    const std::vector<uint8_t> in = ReplayInput(seed_base + static_cast<uint64_t>(i), bytes);
    const std::string failure = run(in.data(), in.size());
    if (!failure.empty()) return "seed " + std::to_string(i) + ": " + failure;
  }
  return "";
}

// Truncated programs decode the missing bytes as zeros; none may break an invariant.
inline std::string ReplayTruncations(OpsRunner run, uint64_t seed, size_t max_bytes) {
  const std::vector<uint8_t> in = ReplayInput(seed, max_bytes);
  for (size_t n = 0; n <= in.size(); ++n) {
    const std::string failure = run(in.data(), n);
    if (!failure.empty()) return "length " + std::to_string(n) + ": " + failure;
  }
  return "";
}

// Every file of fuzz/corpus/<target>; *files counts them (a missing directory leaves it 0).
inline std::string ReplayCorpus(OpsRunner run, const std::string& target, int* files) {
  *files = 0;
  const std::filesystem::path dir =
      std::filesystem::path(__FILE__).parent_path() / "corpus" / target;
  if (!std::filesystem::is_directory(dir)) return "no corpus directory " + dir.string();
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    std::ifstream f(e.path(), std::ios::binary);
    const std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(f)),
                                     std::istreambuf_iterator<char>());
    ++*files;
    const std::string failure = run(bytes.data(), bytes.size());
    if (!failure.empty()) return e.path().string() + ": " + failure;
  }
  return "";
}

}  // namespace apicv::fuzz
