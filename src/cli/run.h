// `apicv run`'s option parser, shared with `apicv explore`, which forwards run options to each
// child run and checks them once first, so a bad option is one line before any seed runs.
#pragma once

#include <string>
#include <vector>

namespace apicv::cli {

// Throws UsageError (one line, exit 2) for anything `apicv run ARGS` refuses while parsing its
// options. Does not open files or look up built-in guests.
void CheckRunOptions(const std::vector<std::string>& args);

}  // namespace apicv::cli
