// The end of one boot, the same for every backend: a reset reboots the VM (RAM kept, the kernel
// image reloaded, as on a PC and in QEMU) until --max-reboots; any other stop ends the run.
// Not supported: a reboot that keeps device state (every reset is a full platform reset).
#pragma once

#include <string>

#include "platform/machine.h"
#include "platform/run_options.h"

namespace apicv::platform {

// True when the backend should reset its devices and boot again (and counts the reboot);
// otherwise fills `res`'s exit status, error and stop flags from this boot's stop.
bool EndOfBoot(StopKind kind, int exit_code, const std::string& error, const RunOptions& opt,
               RunResult* res);

}  // namespace apicv::platform
