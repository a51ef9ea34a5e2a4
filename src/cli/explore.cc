// `apicv explore GUEST --seeds A..B [--shard K/N] [-j N] [--jsonl FILE] [apicv run options]`:
// runs a guest under many schedule seeds of -accel emu's deterministic mode (--sched-seed, issue
// 13 item 6), each as a child `apicv run` process, up to N at once (default: the CPUs this
// process may use), and reports every seed that fails with the exact command that replays it.
// A seed passes when its run exits 1 (the guest's pass status) and the guest printed a PASS line,
// as the guest ctests require. `--shard K/N` runs the seeds s with (s - A) mod N = K, so N jobs
// of a job runner cover A..B once; `--merge FILE...` merges their --jsonl files
// (explore_results.h, docs/explore.md).
// Exit status: 0 every seed passed; 1 some seed failed (or, merging, a shard is missing or did
// not finish); 2 bad options.
// Not supported: -accel kvm and -accel emu,thread=multi (neither replays a schedule from a seed),
// --trace and -serial (each child's serial output is captured to classify the run).
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "builtin_guests.h"
#include "cli/command.h"
#include "cli/explore_results.h"
#include "cli/run.h"
#include "cli/scenario.h"

extern char** environ;

namespace apicv::cli {
namespace {

using explore::Campaign;
using explore::SeedResult;

constexpr const char* kExploreHelp =
    R"(apicv explore GUEST --seeds A..B [options] [apicv run options]
  GUEST                   a built-in guest (apicv run --guest list) or a kernel file (-kernel)
  --seeds A..B            the --sched-seed values to run (inclusive; a single N runs one seed)
  --shard K/N             only the seeds s with (s - A) mod N = K (0 <= K < N): one job of N
  -j N                    runs at once (default: the CPUs this process may use)
  --jsonl FILE            results as JSON lines (campaign, one line per seed, summary)
apicv explore --merge FILE...   merges the --jsonl files of a campaign's shards
Every other option is passed to each `apicv run -accel emu --sched-seed S` (e.g. -smp 4,
--timeout 60, --vendor vmx). A seed fails unless its run exits 1 with the guest's PASS line;
each failure is printed with the command that replays it. Exit status: 0 all seeds passed,
1 a seed failed, 2 bad options. docs/explore.md)";

std::string ShellQuote(const std::string& s) {
  if (!s.empty() && s.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                        "0123456789_./=,:+-@%") == std::string::npos) {
    return s;
  }
  std::string o = "'";
  for (char c : s) o += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return o + "'";
}

std::string SelfExe() {
  char buf[PATH_MAX];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) throw std::runtime_error("cannot read /proc/self/exe");
  return std::string(buf, static_cast<size_t>(n));
}

unsigned UsableCpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) {
    return static_cast<unsigned>(CPU_COUNT(&set));
  }
  const long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? static_cast<unsigned>(n) : 1;
}

// The option's name as `apicv run` reads it: -opt and --opt alike, without "=value".
std::string RunOptionName(const std::string& arg) {
  std::string a = arg.rfind("--", 0) == 0 ? arg.substr(1) : arg;
  return a.substr(0, a.find('='));
}

struct Options {
  bool merge = false;
  std::vector<std::string> merge_files;
  Campaign campaign;
  bool have_seeds = false;
  unsigned jobs = 0;
  std::string jsonl;
  std::vector<std::string> guest_args;  // --guest NAME or -kernel /abs/path
};

Options Parse(const std::vector<std::string>& args) {
  Options o;
  if (!args.empty() && (args[0] == "--merge" || args[0] == "-merge")) {
    o.merge = true;
    o.merge_files.assign(args.begin() + 1, args.end());
    return o;
  }
  if (args.empty() || args[0].empty() || args[0][0] == '-') {
    throw UsageError("explore: expected GUEST first (apicv explore GUEST --seeds A..B ...)");
  }
  o.campaign.guest = args[0];
  for (size_t i = 1; i < args.size(); ++i) {
    const std::string& a = args[i];
    std::string name = RunOptionName(a);
    const bool inline_val = a.find('=') != std::string::npos;
    auto value = [&]() -> std::string {
      if (inline_val) return a.substr(a.find('=') + 1);
      if (i + 1 >= args.size()) throw UsageError("explore: " + a + ": missing value");
      return args[++i];
    };
    if (name == "-seeds") {
      o.campaign.seeds = explore::ParseSeedRange("--seeds", value());
      o.have_seeds = true;
    } else if (name == "-shard") {
      o.campaign.shard = explore::ParseShard("--shard", value());
    } else if (name == "-j" || name == "-jobs") {
      o.jobs = static_cast<unsigned>(ParseIntOption("-j", value(), 1, 1024));
    } else if (name == "-jsonl") {
      o.jsonl = value();
      CheckWritable("--jsonl", o.jsonl);
    } else if (name == "-merge") {
      throw UsageError("explore: --merge takes only result files (apicv explore --merge FILE...)");
    } else if (name == "-sched-seed" || name == "-guest" || name == "-kernel" ||
               name == "-serial" || name == "-trace") {
      throw UsageError("explore: " + a + " is set by explore for each seed (apicv explore -h)");
    } else if (name == "-accel") {
      // Only the deterministic mode replays a schedule from its seed.
      const std::string v = value();
      if (v != "emu" && v != "emu,thread=single") {
        throw UsageError("explore: -accel " + v +
                         ": explore runs -accel emu's deterministic mode (thread=single)");
      }
    } else if (name == "-h" || name == "-help") {
      throw UsageError("explore: -h is not a run option here (apicv explore -h alone)");
    } else {
      o.campaign.run_args.push_back(a);
    }
  }
  if (!o.have_seeds) throw UsageError("explore: --seeds A..B is required");
  if (guests::FindBuiltinGuest(o.campaign.guest) != nullptr) {
    o.guest_args = {"--guest", o.campaign.guest};
  } else {
    struct stat st {};
    if (stat(o.campaign.guest.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
      throw UsageError("explore: '" + o.campaign.guest +
                       "' is neither a built-in guest (apicv run --guest list) nor a kernel file");
    }
    char real[PATH_MAX];
    if (realpath(o.campaign.guest.c_str(), real) == nullptr) {
      throw UsageError("explore: cannot resolve '" + o.campaign.guest +
                       "': " + std::strerror(errno));
    }
    o.guest_args = {"-kernel", real};  // absolute: the replay command works from anywhere
  }
  // Everything `apicv run` would refuse is refused here, once, before any seed runs.
  std::vector<std::string> check = {"-accel", "emu", "--sched-seed", "1"};
  check.insert(check.end(), o.guest_args.begin(), o.guest_args.end());
  check.insert(check.end(), o.campaign.run_args.begin(), o.campaign.run_args.end());
  CheckRunOptions(check);
  return o;
}

struct Running {
  uint64_t seed;
  std::string out, err;  // the child's stdout (serial) and stderr files
  std::string replay;
  std::chrono::steady_clock::time_point t0;
};

// The first line starting with `prefix` (first match) or the last one (!first), at most 300 bytes.
std::string FindLine(const std::string& path, const char* prefix, bool first) {
  std::FILE* f = std::fopen(path.c_str(), "r");
  if (!f) return "";
  std::string found;
  char buf[4096];
  bool at_line_start = true;
  while (std::fgets(buf, sizeof buf, f)) {
    const size_t n = std::strlen(buf);
    const bool starts = at_line_start;
    at_line_start = n > 0 && buf[n - 1] == '\n';
    if (!starts || std::strncmp(buf, prefix, std::strlen(prefix)) != 0) continue;
    std::string line(buf, at_line_start ? n - 1 : n);
    if (line.size() > 300) line = line.substr(0, 300) + "...";
    for (char& c : line) {
      if (static_cast<unsigned char>(c) < 0x20) c = ' ';
    }
    found = line;
    if (first) break;
  }
  std::fclose(f);
  return found;
}

bool HasPassLine(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "r");
  if (!f) return false;
  char buf[4096];
  bool pass = false, at_line_start = true;
  while (std::fgets(buf, sizeof buf, f)) {
    if (at_line_start && (std::strcmp(buf, "PASS\n") == 0 || std::strcmp(buf, "PASS") == 0)) {
      pass = true;
    }
    const size_t n = std::strlen(buf);
    at_line_start = n > 0 && buf[n - 1] == '\n';
  }
  std::fclose(f);
  return pass;
}

SeedResult Classify(const Running& r, int status) {
  SeedResult res;
  res.seed = r.seed;
  res.replay = r.replay;
  res.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - r.t0).count();
  if (WIFSIGNALED(status)) {
    res.kind = std::string("killed by signal ") + std::to_string(WTERMSIG(status)) + " (" +
               strsignal(WTERMSIG(status)) + ")";
  } else {
    res.exit_code = WEXITSTATUS(status);
    switch (res.exit_code) {
      case 1:
        res.pass = HasPassLine(r.out);
        res.kind = res.pass ? "pass" : "no PASS line";
        break;
      case 3:
        res.kind = "guest FAIL";
        break;
      case 124:
        res.kind = "timeout (wall clock, not the schedule: rerun with a larger --timeout)";
        break;
      case 125:
        res.kind = "VMM error";
        break;
      default:
        res.kind = "exit status " + std::to_string(res.exit_code);
    }
  }
  if (!res.pass) {
    res.reason = FindLine(r.out, "FAIL", true);
    if (res.reason.empty()) res.reason = FindLine(r.err, "apicv:", false);
  }
  return res;
}

pid_t Spawn(const std::vector<std::string>& argv, const Running& r) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, r.out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&fa, 2, r.err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  std::vector<char*> cargv;
  for (const std::string& s : argv) cargv.push_back(const_cast<char*>(s.c_str()));
  cargv.push_back(nullptr);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, cargv[0], &fa, nullptr, cargv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) throw std::runtime_error(std::string("posix_spawn: ") + std::strerror(rc));
  return pid;
}

int RunCampaign(const Options& o) {
  const Campaign& c = o.campaign;
  const std::string exe = SelfExe();
  const unsigned jobs = o.jobs ? o.jobs : UsableCpus();
  std::FILE* jsonl = nullptr;
  if (!o.jsonl.empty()) {
    jsonl = std::fopen(o.jsonl.c_str(), "w");
    if (!jsonl) throw UsageError("--jsonl: cannot write '" + o.jsonl + "'");
    explore::WriteCampaign(jsonl, c);
  }
  const char* tmp_env = std::getenv("TMPDIR");
  std::string tmpl = std::string(tmp_env && *tmp_env ? tmp_env : "/tmp") + "/apicv-explore.XXXXXX";
  const char* tmpdir = mkdtemp(tmpl.data());
  if (!tmpdir) throw std::runtime_error(std::string("mkdtemp: ") + std::strerror(errno));
  const auto t0 = std::chrono::steady_clock::now();
  const uint64_t total = explore::ShardSize(c.seeds, c.shard);
  uint64_t launched = 0, passed = 0;
  double seed_wall = 0;
  std::vector<SeedResult> failures;
  std::map<pid_t, Running> running;
  const bool progress = isatty(2);
  auto last_progress = t0;
  while (launched < total || !running.empty()) {
    while (launched < total && running.size() < jobs) {
      Running r;
      r.seed = c.seeds.first + c.shard.index + launched * c.shard.count;
      ++launched;
      const std::string base = std::string(tmpdir) + "/" + std::to_string(r.seed);
      r.out = base + ".out";
      r.err = base + ".err";
      std::vector<std::string> argv = {exe,   "run",          "-accel",
                                       "emu", "--sched-seed", std::to_string(r.seed)};
      argv.insert(argv.end(), o.guest_args.begin(), o.guest_args.end());
      argv.insert(argv.end(), c.run_args.begin(), c.run_args.end());
      for (const std::string& a : argv) r.replay += (r.replay.empty() ? "" : " ") + ShellQuote(a);
      r.t0 = std::chrono::steady_clock::now();
      const pid_t pid = Spawn(argv, r);
      running.emplace(pid, std::move(r));
    }
    int status = 0;
    const pid_t pid = waitpid(-1, &status, 0);
    if (pid < 0) {
      if (errno == EINTR) continue;
      throw std::runtime_error(std::string("waitpid: ") + std::strerror(errno));
    }
    auto it = running.find(pid);
    if (it == running.end()) continue;
    const SeedResult res = Classify(it->second, status);
    std::remove(it->second.out.c_str());
    std::remove(it->second.err.c_str());
    running.erase(it);
    seed_wall += res.wall_s;
    if (res.pass) {
      ++passed;
    } else {
      explore::PrintFailure(stdout, res);
      std::fflush(stdout);
      failures.push_back(res);
    }
    if (jsonl) explore::WriteSeed(jsonl, res);
    const auto now = std::chrono::steady_clock::now();
    if (progress && now - last_progress > std::chrono::seconds(5)) {
      last_progress = now;
      std::fprintf(stderr, "explore: %llu of %llu seeds done, %zu failed\n",
                   static_cast<unsigned long long>(passed + failures.size()),
                   static_cast<unsigned long long>(total), failures.size());
    }
  }
  rmdir(tmpdir);
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (jsonl) {
    explore::WriteSummary(jsonl, {passed, failures.size(), wall});
    std::fclose(jsonl);
  }
  const uint64_t done = passed + failures.size();
  std::printf(
      "explore: %s, seeds %s, shard %s: %llu seeds, %llu passed, %zu failed; %.2f s/seed, %u "
      "jobs, %.1f s wall\n",
      c.guest.c_str(), explore::FormatRange(c.seeds).c_str(), explore::FormatShard(c.shard).c_str(),
      static_cast<unsigned long long>(done), static_cast<unsigned long long>(passed),
      failures.size(), done ? seed_wall / static_cast<double>(done) : 0.0, jobs, wall);
  if (!failures.empty()) {
    std::sort(failures.begin(), failures.end(),
              [](const SeedResult& a, const SeedResult& b) { return a.seed < b.seed; });
    std::string list;
    for (const SeedResult& r : failures) list += " " + std::to_string(r.seed);
    std::printf("explore: failing seeds:%s\n", list.c_str());
  }
  return failures.empty() ? 0 : 1;
}

CommandRegistration reg("", [](CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "explore", "Run a guest under many -accel emu schedule seeds (explore -h; docs/explore.md)");
  cmd->prefix_command();
  cmd->set_help_flag();  // -h/--help are ours: the remaining arguments go to `apicv run`
  cmd->callback([cmd] {
    const std::vector<std::string> args = cmd->remaining();
    if (args.size() == 1 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help")) {
      std::puts(kExploreHelp);
      SetExitStatus(0);
      return;
    }
    const Options o = Parse(args);
    try {
      SetExitStatus(o.merge ? explore::Merge(o.merge_files) : RunCampaign(o));
    } catch (const UsageError&) {
      throw;  // exit 2
    } catch (const std::exception& e) {
      std::fprintf(stderr, "apicv: error: %s\n", e.what());
      SetExitStatus(125);
    }
  });
});

}  // namespace
}  // namespace apicv::cli
