#include "cli/explore_results.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <variant>

#include "cli/command.h"

namespace apicv::cli::explore {

namespace {

// ---- writing ----

std::string Quote(const std::string& s) {
  std::string o = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        o += "\\\"";
        break;
      case '\\':
        o += "\\\\";
        break;
      case '\n':
        o += "\\n";
        break;
      case '\t':
        o += "\\t";
        break;
      case '\r':
        o += "\\r";
        break;
      default:
        if (c < 0x20) {
          char b[8];
          std::snprintf(b, sizeof b, "\\u%04x", c);
          o += b;
        } else {
          o += static_cast<char>(c);
        }
    }
  }
  return o + "\"";
}

std::string QuoteList(const std::vector<std::string>& v) {
  std::string o = "[";
  for (size_t i = 0; i < v.size(); ++i) o += (i ? "," : "") + Quote(v[i]);
  return o + "]";
}

// ---- reading: just enough JSON for these records ----

struct Value {
  std::variant<std::nullptr_t, bool, double, std::string, std::vector<std::string>> v;
  std::string number_text;  // a number as written, so 64-bit seeds survive exactly
};
using Object = std::map<std::string, Value>;

class LineParser {
 public:
  explicit LineParser(const std::string& s) : s_(s) {}
  Object ParseObject() {
    Object o;
    Expect('{');
    Ws();
    if (Peek() == '}') {
      ++i_;
      return o;
    }
    for (;;) {
      Ws();
      std::string key = String();
      Ws();
      Expect(':');
      Ws();
      o[key] = ParseValue();
      Ws();
      if (Peek() == ',') {
        ++i_;
        continue;
      }
      Expect('}');
      Ws();
      if (i_ != s_.size()) throw std::runtime_error("text after the object");
      return o;
    }
  }

 private:
  char Peek() const { return i_ < s_.size() ? s_[i_] : '\0'; }
  void Ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\r')) ++i_;
  }
  void Expect(char c) {
    if (Peek() != c) throw std::runtime_error(std::string("expected '") + c + "'");
    ++i_;
  }
  Value ParseValue() {
    Value val;
    const char c = Peek();
    if (c == '"') {
      val.v = String();
    } else if (c == '[') {
      ++i_;
      std::vector<std::string> list;
      Ws();
      if (Peek() == ']') {
        ++i_;
      } else {
        for (;;) {
          Ws();
          list.push_back(String());
          Ws();
          if (Peek() == ',') {
            ++i_;
            continue;
          }
          Expect(']');
          break;
        }
      }
      val.v = std::move(list);
    } else if (s_.compare(i_, 4, "true") == 0) {
      i_ += 4;
      val.v = true;
    } else if (s_.compare(i_, 5, "false") == 0) {
      i_ += 5;
      val.v = false;
    } else if (s_.compare(i_, 4, "null") == 0) {
      i_ += 4;
    } else {
      const size_t start = i_;
      while (i_ < s_.size() && std::strchr("0123456789+-.eE", s_[i_]) != nullptr) ++i_;
      if (start == i_) throw std::runtime_error("expected a value");
      val.number_text = s_.substr(start, i_ - start);
      size_t pos = 0;
      val.v = std::stod(val.number_text, &pos);
      if (pos != val.number_text.size()) throw std::runtime_error("bad number");
    }
    return val;
  }
  std::string String() {
    Expect('"');
    std::string o;
    for (;;) {
      if (i_ >= s_.size()) throw std::runtime_error("unterminated string");
      const char c = s_[i_++];
      if (c == '"') return o;
      if (c != '\\') {
        o += c;
        continue;
      }
      if (i_ >= s_.size()) throw std::runtime_error("unterminated string");
      const char e = s_[i_++];
      switch (e) {
        case 'n':
          o += '\n';
          break;
        case 't':
          o += '\t';
          break;
        case 'r':
          o += '\r';
          break;
        case 'b':
          o += '\b';
          break;
        case 'f':
          o += '\f';
          break;
        case 'u': {
          if (i_ + 4 > s_.size()) throw std::runtime_error("bad \\u escape");
          const unsigned cp = static_cast<unsigned>(std::stoul(s_.substr(i_, 4), nullptr, 16));
          i_ += 4;
          if (cp < 0x80) {
            o += static_cast<char>(cp);
          } else if (cp < 0x800) {
            o += static_cast<char>(0xC0 | (cp >> 6));
            o += static_cast<char>(0x80 | (cp & 0x3F));
          } else {
            o += static_cast<char>(0xE0 | (cp >> 12));
            o += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
            o += static_cast<char>(0x80 | (cp & 0x3F));
          }
          break;
        }
        default:
          o += e;  // \" \\ \/
      }
    }
  }

  const std::string& s_;
  size_t i_ = 0;
};

const Value& Field(const Object& o, const std::string& key) {
  auto it = o.find(key);
  if (it == o.end()) throw std::runtime_error("missing field '" + key + "'");
  return it->second;
}
std::string StringField(const Object& o, const std::string& key) {
  const auto* s = std::get_if<std::string>(&Field(o, key).v);
  if (!s) throw std::runtime_error("field '" + key + "' is not a string");
  return *s;
}
uint64_t UintField(const Object& o, const std::string& key) {
  const Value& v = Field(o, key);
  if (!std::holds_alternative<double>(v.v)) {
    throw std::runtime_error("field '" + key + "' is not a number");
  }
  size_t pos = 0;
  const unsigned long long n = std::stoull(v.number_text, &pos, 10);
  if (pos != v.number_text.size() || v.number_text[0] == '-') {
    throw std::runtime_error("field '" + key + "' is not an unsigned integer");
  }
  return n;
}
double NumberField(const Object& o, const std::string& key) {
  const auto* d = std::get_if<double>(&Field(o, key).v);
  if (!d) throw std::runtime_error("field '" + key + "' is not a number");
  return *d;
}

struct ShardFile {
  std::string path;
  Campaign campaign;
  std::vector<SeedResult> seeds;
  bool finished = false;  // its summary line was written
};

ShardFile ReadShardFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    throw UsageError("explore --merge: cannot open '" + path + "': " + std::strerror(errno));
  }
  ShardFile f;
  f.path = path;
  std::string line;
  size_t lineno = 0;
  bool have_campaign = false;
  while (std::getline(in, line)) {
    ++lineno;
    if (line.empty()) continue;
    try {
      const Object o = LineParser(line).ParseObject();
      const std::string type = StringField(o, "type");
      if (type == "campaign") {
        if (have_campaign) throw std::runtime_error("a second campaign line");
        have_campaign = true;
        f.campaign.guest = StringField(o, "guest");
        f.campaign.seeds = ParseSeedRange("seeds", StringField(o, "seeds"));
        f.campaign.shard = ParseShard("shard", StringField(o, "shard"));
        const auto* args = std::get_if<std::vector<std::string>>(&Field(o, "run_args").v);
        if (!args) throw std::runtime_error("field 'run_args' is not a list of strings");
        f.campaign.run_args = *args;
      } else if (!have_campaign) {
        throw std::runtime_error("the first line is not the campaign line");
      } else if (type == "seed") {
        SeedResult r;
        r.seed = UintField(o, "seed");
        r.kind = StringField(o, "result");
        r.pass = r.kind == "pass";
        if (!r.pass) {
          r.kind = StringField(o, "kind");
          r.reason = StringField(o, "reason");
          r.replay = StringField(o, "replay");
        }
        const Value& ex = Field(o, "exit");
        r.exit_code =
            std::holds_alternative<double>(ex.v) ? static_cast<int>(NumberField(o, "exit")) : -1;
        r.wall_s = NumberField(o, "wall_s");
        f.seeds.push_back(std::move(r));
      } else if (type == "summary") {
        f.finished = true;
      } else {
        throw std::runtime_error("unknown record type '" + type + "'");
      }
    } catch (const UsageError& e) {
      throw UsageError("explore --merge: " + path + ":" + std::to_string(lineno) + ": " + e.what());
    } catch (const std::exception& e) {
      throw UsageError("explore --merge: " + path + ":" + std::to_string(lineno) +
                       ": not an explore record: " + e.what());
    }
  }
  if (!have_campaign) throw UsageError("explore --merge: '" + path + "' has no campaign line");
  return f;
}

}  // namespace

uint64_t ShardSize(const SeedRange& r, const Shard& s) {
  if (r.last - r.first < s.index) return 0;
  return (r.last - r.first - s.index) / s.count + 1;
}

std::string FormatRange(const SeedRange& r) {
  return std::to_string(r.first) + ".." + std::to_string(r.last);
}
std::string FormatShard(const Shard& s) {
  return std::to_string(s.index) + "/" + std::to_string(s.count);
}

namespace {
uint64_t ParseU64(const std::string& opt, const std::string& what, const std::string& v,
                  uint64_t hi) {
  if (v.empty() || v.find_first_not_of("0123456789") != std::string::npos || v.size() > 19) {
    throw UsageError(opt + ": expected " + what + ", got '" + v + "'");
  }
  const uint64_t n = std::stoull(v);
  if (n > hi) throw UsageError(opt + ": " + v + " is larger than " + std::to_string(hi));
  return n;
}
}  // namespace

SeedRange ParseSeedRange(const std::string& opt, const std::string& v) {
  // Seeds are --sched-seed values, 0..INT64_MAX (0 is the fixed, unseeded schedule).
  constexpr uint64_t kMax = INT64_MAX;
  const size_t dots = v.find("..");
  SeedRange r;
  if (dots == std::string::npos) {
    r.first = r.last = ParseU64(opt, "A..B or a seed", v, kMax);
  } else {
    r.first = ParseU64(opt, "A..B", v.substr(0, dots), kMax);
    r.last = ParseU64(opt, "A..B", v.substr(dots + 2), kMax);
  }
  if (r.first > r.last) throw UsageError(opt + ": empty range '" + v + "' (A > B)");
  return r;
}

Shard ParseShard(const std::string& opt, const std::string& v) {
  const size_t slash = v.find('/');
  if (slash == std::string::npos) throw UsageError(opt + ": expected K/N, got '" + v + "'");
  Shard s;
  s.index = ParseU64(opt, "K/N", v.substr(0, slash), 1000000);
  s.count = ParseU64(opt, "K/N", v.substr(slash + 1), 1000000);
  if (s.count == 0 || s.index >= s.count) {
    throw UsageError(opt + ": shard K/N needs 0 <= K < N, got '" + v + "'");
  }
  return s;
}

void WriteCampaign(std::FILE* f, const Campaign& c) {
  std::fprintf(f,
               "{\"type\":\"campaign\",\"guest\":%s,\"seeds\":%s,\"shard\":%s,\"run_args\":%s,"
               "\"seeds_in_shard\":%llu}\n",
               Quote(c.guest).c_str(), Quote(FormatRange(c.seeds)).c_str(),
               Quote(FormatShard(c.shard)).c_str(), QuoteList(c.run_args).c_str(),
               static_cast<unsigned long long>(ShardSize(c.seeds, c.shard)));
  std::fflush(f);
}

void WriteSeed(std::FILE* f, const SeedResult& r) {
  const std::string ex = r.exit_code >= 0 ? std::to_string(r.exit_code) : "null";
  if (r.pass) {
    std::fprintf(
        f, "{\"type\":\"seed\",\"seed\":%llu,\"result\":\"pass\",\"exit\":%s,\"wall_s\":%.3f}\n",
        static_cast<unsigned long long>(r.seed), ex.c_str(), r.wall_s);
  } else {
    std::fprintf(f,
                 "{\"type\":\"seed\",\"seed\":%llu,\"result\":\"fail\",\"kind\":%s,\"exit\":%s,"
                 "\"reason\":%s,\"replay\":%s,\"wall_s\":%.3f}\n",
                 static_cast<unsigned long long>(r.seed), Quote(r.kind).c_str(), ex.c_str(),
                 Quote(r.reason).c_str(), Quote(r.replay).c_str(), r.wall_s);
  }
  std::fflush(f);
}

void WriteSummary(std::FILE* f, const Summary& s) {
  std::fprintf(f, "{\"type\":\"summary\",\"passed\":%llu,\"failed\":%llu,\"wall_s\":%.3f}\n",
               static_cast<unsigned long long>(s.passed), static_cast<unsigned long long>(s.failed),
               s.wall_s);
  std::fflush(f);
}

void PrintFailure(std::FILE* f, const SeedResult& r) {
  std::string status = r.exit_code >= 0 ? " (exit " + std::to_string(r.exit_code) + ")" : "";
  std::fprintf(f, "FAIL seed %llu: %s%s%s%s\n  replay: %s\n",
               static_cast<unsigned long long>(r.seed), r.kind.c_str(), status.c_str(),
               r.reason.empty() ? "" : ": ", r.reason.c_str(), r.replay.c_str());
}

int Merge(const std::vector<std::string>& paths) {
  if (paths.empty()) throw UsageError("explore --merge: give the result files of the shards");
  std::vector<ShardFile> files;
  for (const std::string& p : paths) files.push_back(ReadShardFile(p));
  const Campaign& c0 = files[0].campaign;
  std::map<uint64_t, const ShardFile*> by_index;
  for (const ShardFile& f : files) {
    const Campaign& c = f.campaign;
    if (c.guest != c0.guest || c.seeds.first != c0.seeds.first || c.seeds.last != c0.seeds.last ||
        c.shard.count != c0.shard.count || c.run_args != c0.run_args) {
      throw UsageError("explore --merge: '" + f.path + "' is another campaign than '" +
                       files[0].path + "' (guest, seeds, shard count and run options must match)");
    }
    if (!by_index.emplace(c.shard.index, &f).second) {
      throw UsageError("explore --merge: shard " + FormatShard(c.shard) + " appears twice ('" +
                       by_index[c.shard.index]->path + "', '" + f.path + "')");
    }
  }
  std::vector<SeedResult> failures;
  uint64_t passed = 0, failed = 0;
  double seed_wall = 0;
  std::set<uint64_t> seen;
  std::vector<std::string> problems;
  for (const ShardFile& f : files) {
    for (const SeedResult& r : f.seeds) {
      const uint64_t off = r.seed - c0.seeds.first;
      if (r.seed < c0.seeds.first || r.seed > c0.seeds.last ||
          off % c0.shard.count != f.campaign.shard.index || !seen.insert(r.seed).second) {
        throw UsageError("explore --merge: '" + f.path + "': seed " + std::to_string(r.seed) +
                         " does not belong to shard " + FormatShard(f.campaign.shard) +
                         " or appears twice");
      }
      seed_wall += r.wall_s;
      if (r.pass) {
        ++passed;
      } else {
        ++failed;
        failures.push_back(r);
      }
    }
    const uint64_t want = ShardSize(c0.seeds, f.campaign.shard);
    if (!f.finished || f.seeds.size() != want) {
      problems.push_back("shard " + FormatShard(f.campaign.shard) + " ('" + f.path + "') has " +
                         std::to_string(f.seeds.size()) + " of its " + std::to_string(want) +
                         " seeds" + (f.finished ? "" : " and no summary line (did not finish)"));
    }
  }
  for (uint64_t k = 0; k < c0.shard.count; ++k) {
    if (!by_index.count(k) && ShardSize(c0.seeds, Shard{k, c0.shard.count}) != 0) {
      problems.push_back("shard " + FormatShard(Shard{k, c0.shard.count}) + " is missing");
    }
  }
  std::sort(failures.begin(), failures.end(),
            [](const SeedResult& a, const SeedResult& b) { return a.seed < b.seed; });
  for (const SeedResult& r : failures) PrintFailure(stdout, r);
  for (const std::string& p : problems) std::printf("INCOMPLETE: %s\n", p.c_str());
  const uint64_t total = c0.seeds.last - c0.seeds.first + 1;
  char per_seed[64] = "";
  if (passed + failed) {
    std::snprintf(per_seed, sizeof per_seed, ", %.2f s/seed",
                  seed_wall / static_cast<double>(passed + failed));
  }
  std::printf(
      "explore --merge: %s, seeds %s: %llu of %llu seeds ran in %zu of %llu shards: %llu passed, "
      "%llu failed%s\n",
      c0.guest.c_str(), FormatRange(c0.seeds).c_str(),
      static_cast<unsigned long long>(passed + failed), static_cast<unsigned long long>(total),
      files.size(), static_cast<unsigned long long>(c0.shard.count),
      static_cast<unsigned long long>(passed), static_cast<unsigned long long>(failed), per_seed);
  if (!failures.empty()) {
    std::string list;
    for (const SeedResult& r : failures) list += " " + std::to_string(r.seed);
    std::printf("explore: failing seeds:%s\n", list.c_str());
  }
  return failed == 0 && problems.empty() ? 0 : 1;
}

}  // namespace apicv::cli::explore
