// The end of one boot: see boot_end.h.
#include "platform/boot_end.h"

namespace apicv::platform {

bool EndOfBoot(StopKind kind, int exit_code, const std::string& error, const RunOptions& opt,
               RunResult* res) {
  if (kind == StopKind::kReset) {
    if (res->reboots < opt.max_reboots) {
      ++res->reboots;
      return true;
    }
    res->exit_code = kExitVmmError;
    res->error = "reboot limit reached (--max-reboots " + std::to_string(opt.max_reboots) + ")";
    return false;
  }
  res->exit_code = exit_code;
  res->error = error;
  res->debug_exit = kind == StopKind::kDebugExit;
  res->timed_out = kind == StopKind::kTimeout;
  return false;
}

}  // namespace apicv::platform
