// Subcommand registry for the `apicv` front end. Each src/cli/*.cc or bench/*.cc file registers
// its subcommands with a static CommandRegistration; main() builds the CLI11 tree from them.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

namespace apicv::cli {

// parent: "" for a top-level command (run, repro, trace), "bench" for `apicv bench <name>`.
using CommandSetup = std::function<void(CLI::App& parent)>;

struct CommandRegistration {
  CommandRegistration(std::string parent, CommandSetup setup);
};

struct Registered {
  std::string parent;
  CommandSetup setup;
};
std::vector<Registered>& Registry();

// Thrown for bad user input; main() prints "apicv: <what>" and exits with status 2.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Exit status a subcommand callback asks for (the guest's exit code, a failed check...).
void SetExitStatus(int status);

// When argv[1] is the top-level command `parent` (bench, trace): a missing or unknown subcommand
// name in argv[2] is a UsageError naming it as typed and listing the known ones ("bench: unknown
// benchmark 'nosuch' (avic-kick, inhibit, ...)"); `what` names a subcommand in the message.
void CheckSubcommandName(const CLI::App& parent, const std::string& what, int argc, char** argv);

}  // namespace apicv::cli
