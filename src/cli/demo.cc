// `apicv demo`: the main job of the README quick start.
#include <cstdio>

#include "cli/command.h"

namespace apicv::cli {
namespace {

CommandRegistration reg("", [](CLI::App& app) {
  auto* cmd = app.add_subcommand("demo", "Main job with built-in defaults");
  cmd->callback([] {
    throw UsageError("demo: no scenario is built yet in this revision; see `apicv --help`");
  });
});

}  // namespace
}  // namespace apicv::cli
