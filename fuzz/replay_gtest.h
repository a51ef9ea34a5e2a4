// The three hostile-replay gtests every fuzzed component runs in CI (see replay.h):
//   APICV_HOSTILE_REPLAY_TESTS(Suite, RunXOps, "corpus dir", seed base, inputs, bytes per input)
// Seed bases differ per component so no two replay the same inputs.
#pragma once

#include <gtest/gtest.h>

#include "replay.h"

#define APICV_HOSTILE_REPLAY_TESTS(suite, runner, corpus, seed_base, inputs, bytes)   \
  TEST(suite##HostileReplay, FixedSeedsKeepEveryInvariant) {                          \
    EXPECT_EQ(::apicv::fuzz::ReplayFixedSeeds(runner, seed_base, inputs, bytes), ""); \
  }                                                                                   \
  TEST(suite##HostileReplay, ShortAndEmptyInputs) {                                   \
    EXPECT_EQ(::apicv::fuzz::ReplayTruncations(runner, 7, 64), "");                   \
  }                                                                                   \
  TEST(suite##HostileReplay, SeedCorpus) {                                            \
    int files = 0;                                                                    \
    EXPECT_EQ(::apicv::fuzz::ReplayCorpus(runner, corpus, &files), "");               \
    EXPECT_GT(files, 0);                                                              \
  }
