// `apicv explore` results as JSON lines (docs/explore.md): one "campaign" line naming the guest,
// the seed range, the shard and the forwarded `apicv run` options; one "seed" line per seed run;
// one "summary" line when the shard finished. `apicv explore --merge` reads the files of every
// shard of a campaign, checks that they belong together and that every shard finished, and names
// every failing seed with the command that replays it.
// Not supported: JSON beyond what these records use (objects, arrays of strings, strings,
// integers, decimals, true/false/null); \u escapes above U+FFFF as surrogate pairs are kept as
// two code points.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace apicv::cli::explore {

// A --seeds A..B range (inclusive) and a --shard K/N (0 <= K < N): seed s belongs to shard
// (s - A) mod N, a fixed round-robin partition, so N independent jobs cover A..B exactly once.
struct SeedRange {
  uint64_t first = 0, last = 0;
};
struct Shard {
  uint64_t index = 0, count = 1;
};
// The number of seeds of the range in the shard.
uint64_t ShardSize(const SeedRange& r, const Shard& s);
std::string FormatRange(const SeedRange& r);  // "A..B"
std::string FormatShard(const Shard& s);      // "K/N"
// Throw UsageError naming the option on malformed input.
SeedRange ParseSeedRange(const std::string& opt, const std::string& v);
Shard ParseShard(const std::string& opt, const std::string& v);

struct Campaign {
  std::string guest;  // as given on the command line
  SeedRange seeds;
  Shard shard;
  std::vector<std::string> run_args;  // forwarded to `apicv run`
};

// One seed's run.
struct SeedResult {
  uint64_t seed = 0;
  bool pass = false;
  std::string kind;    // "pass", "guest FAIL", "timeout", "VMM error", "signal N", "exit N", ...
  int exit_code = -1;  // -1 when a signal ended the run
  std::string reason;  // the guest's first FAIL line or apicv's error line (empty on a pass)
  std::string replay;  // the shell command that replays the run
  double wall_s = 0;
};

struct Summary {
  uint64_t passed = 0, failed = 0;
  double wall_s = 0;
};

// One JSON object per line, flushed, so a shard killed half-way leaves every finished seed.
void WriteCampaign(std::FILE* f, const Campaign& c);
void WriteSeed(std::FILE* f, const SeedResult& r);
void WriteSummary(std::FILE* f, const Summary& s);

// The text report of one failing seed: "FAIL seed S: KIND (exit E): REASON" and its replay line.
void PrintFailure(std::FILE* f, const SeedResult& r);

// `apicv explore --merge FILE...`: prints every failing seed (in seed order) and a summary;
// returns 0 when every shard finished and every seed passed, 1 otherwise. Unreadable or
// malformed files, and files of different campaigns, throw UsageError.
int Merge(const std::vector<std::string>& files);

}  // namespace apicv::cli::explore
