// apicv command line: run, repro, trace, bench <name>.
#include <cstdio>
#include <exception>

#include "cli/command.h"

namespace apicv::cli {

namespace {
int g_exit_status = 0;
}

std::vector<Registered>& Registry() {
  static std::vector<Registered> r;
  return r;
}

CommandRegistration::CommandRegistration(std::string parent, CommandSetup setup) {
  Registry().push_back({std::move(parent), std::move(setup)});
}

void SetExitStatus(int status) {
  g_exit_status = status;
}

void CheckSubcommandName(const CLI::App& parent, const std::string& what, int argc, char** argv) {
  if (argc < 2 || parent.get_name() != argv[1]) return;
  std::string names;
  for (const CLI::App* sub : parent.get_subcommands({})) {
    names += (names.empty() ? "" : ", ") + sub->get_name();
  }
  const std::string cmd = parent.get_name();
  if (argc == 2) throw UsageError(cmd + ": missing the " + what + " (" + names + ")");
  const std::string name = argv[2];
  if (name.empty() || name[0] == '-') return;  // --help, or an option CLI11 reports
  for (const CLI::App* sub : parent.get_subcommands({})) {
    if (sub->check_name(name)) return;
  }
  throw UsageError(cmd + ": unknown " + what + " '" + name + "' (" + names + ")");
}

}  // namespace apicv::cli

int main(int argc, char** argv) {
  using namespace apicv::cli;
  CLI::App app{
      "apicv: x86 interrupt virtualization (LAPIC, IOAPIC, PIC, PIT, AVIC/APICv) in userspace"};
  app.require_subcommand(1);
  app.set_help_all_flag("--help-all", "Show help for every subcommand");
  CLI::App* bench = app.add_subcommand("bench", "Benchmarks; results as JSON");
  for (auto& r : Registry()) {
    if (r.parent.empty()) r.setup(app);
  }
  for (auto& r : Registry()) {
    if (r.parent == "bench") r.setup(*bench);
  }
  bench->require_subcommand(1);
  try {
    // A missing or unknown benchmark or trace command is named as typed, with the list (CLI11
    // would only say "A subcommand is required").
    CheckSubcommandName(*bench, "benchmark", argc, argv);
    CheckSubcommandName(*app.get_subcommand("trace"), "subcommand", argc, argv);
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and friends are "errors" with exit code 0: let CLI11 print the help.
    if (e.get_exit_code() == 0) return app.exit(e);
    // Everything else is bad user input: one line and the usage-error status, like UsageError.
    std::fprintf(stderr, "apicv: %s (see --help)\n", e.what());
    return 2;
  } catch (const UsageError& e) {
    std::fprintf(stderr, "apicv: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "apicv: error: %s\n", e.what());
    return 1;
  }
  return g_exit_status;
}
