// An output file written whole or not at all: the data goes to a temporary file next to the
// target (same directory, so the final rename(2) is atomic) and replaces the target only on
// commit(). A bad path is bad user input (UsageError, one line naming the option) reported when
// the object is made, before any work; an uncommitted temporary is removed by the destructor, so
// an error never leaves a half-written file behind.
#pragma once

#include <fstream>
#include <string>

namespace apicv::cli {

class AtomicOutput {
 public:
  // `opt` names the option in errors ("--trace-json"). Throws UsageError when `path` is empty, a
  // directory, or in a directory where no file can be created.
  AtomicOutput(std::string opt, std::string path);
  ~AtomicOutput();
  AtomicOutput(const AtomicOutput&) = delete;
  AtomicOutput& operator=(const AtomicOutput&) = delete;

  std::ostream& stream() { return out_; }
  const std::string& path() const { return path_; }
  // Flushes, closes and renames over the target; UsageError when any step fails.
  void commit();

 private:
  std::string opt_, path_, tmp_;
  std::ofstream out_;
  bool committed_ = false;
};

// --report DIR: makes DIR if it is missing (its parent must exist), refuses a DIR that is not a
// directory, and returns DIR/index.html (UsageError naming `opt` otherwise).
std::string ReportIndexPath(const std::string& opt, const std::string& dir);

// Writes `text` to `path` through an AtomicOutput.
void WriteFileAtomically(const std::string& opt, const std::string& path, const std::string& text);

}  // namespace apicv::cli
