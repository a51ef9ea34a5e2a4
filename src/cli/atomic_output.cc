// Temporary file + rename output; see atomic_output.h.
#include "cli/atomic_output.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "cli/command.h"

namespace apicv::cli {

AtomicOutput::AtomicOutput(std::string opt, std::string path)
    : opt_(std::move(opt)), path_(std::move(path)) {
  if (path_.empty()) throw UsageError(opt_ + ": empty file name");
  struct stat st {};
  if (stat(path_.c_str(), &st) == 0 && S_ISDIR(st.st_mode))
    throw UsageError(opt_ + ": cannot write '" + path_ + "': it is a directory");
  std::vector<char> name(path_.begin(), path_.end());
  const std::string suffix = ".tmp.XXXXXX";
  name.insert(name.end(), suffix.begin(), suffix.end());
  name.push_back('\0');
  const int fd = mkstemp(name.data());
  if (fd < 0) throw UsageError(opt_ + ": cannot write '" + path_ + "': " + std::strerror(errno));
  ::close(fd);
  tmp_ = name.data();
  out_.open(tmp_, std::ios::binary | std::ios::trunc);
  if (!out_) {
    const int err = errno;
    std::remove(tmp_.c_str());
    throw UsageError(opt_ + ": cannot write '" + path_ + "': " + std::strerror(err));
  }
}

AtomicOutput::~AtomicOutput() {
  if (!committed_) {
    out_.close();
    std::remove(tmp_.c_str());
  }
}

void AtomicOutput::commit() {
  out_.flush();
  const bool ok = static_cast<bool>(out_);
  out_.close();
  if (!ok || out_.fail()) throw UsageError(opt_ + ": write failed for '" + path_ + "'");
  // mkstemp made it 0600; an output file gets the usual permissions.
  const mode_t mask = umask(0);
  umask(mask);
  chmod(tmp_.c_str(), 0666 & ~mask);
  if (std::rename(tmp_.c_str(), path_.c_str()) != 0)
    throw UsageError(opt_ + ": cannot write '" + path_ + "': " + std::strerror(errno));
  committed_ = true;
}

std::string ReportIndexPath(const std::string& opt, const std::string& dir) {
  if (dir.empty()) throw UsageError(opt + ": empty directory name");
  struct stat st {};
  if (stat(dir.c_str(), &st) == 0) {
    if (!S_ISDIR(st.st_mode)) throw UsageError(opt + ": '" + dir + "' is not a directory");
  } else if (mkdir(dir.c_str(), 0777) != 0) {
    throw UsageError(opt + ": cannot create '" + dir + "': " + std::strerror(errno));
  }
  return dir + "/index.html";
}

void WriteFileAtomically(const std::string& opt, const std::string& path, const std::string& text) {
  AtomicOutput o(opt, path);
  o.stream() << text;
  o.commit();
}

}  // namespace apicv::cli
