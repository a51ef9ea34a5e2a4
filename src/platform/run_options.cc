// RunCounters and the kernel loading every backend does the same way; see run_options.h.
#include "platform/run_options.h"

#include <stdexcept>

namespace apicv::platform {

void RunCounters::Add(const RunCounters& o) {
  for (size_t i = 0; i < exits.size(); ++i) exits[i] += o.exits[i];
  eintr += o.eintr;
  msr_exits_inval += o.msr_exits_inval;
  msr_exits_filter += o.msr_exits_filter;
  window_requests += o.window_requests;
  window_exits += o.window_exits;
  injections += o.injections;
  nmis += o.nmis;
  kicks += o.kicks;
  kick_signals += o.kick_signals;
  halts += o.halts;
  halt_poll_success += o.halt_poll_success;
  halt_sleeps += o.halt_sleeps;
  sipis += o.sipis;
}

BootImage LoadKernel(const RunOptions& opt, GuestMemory& mem) {
  if (opt.kernel.empty()) throw std::runtime_error("no kernel image given");
  if (opt.flat_entry) return LoadFlat(mem, opt.kernel, *opt.flat_entry);
  if (IsMultiboot(opt.kernel)) {
    MultibootArgs args;
    args.kernel_name = opt.kernel_name;
    args.append = opt.append;
    args.initrd = opt.initrd;
    args.initrd_name = opt.initrd_name;
    return LoadMultiboot(mem, opt.kernel, args);
  }
  if (IsElf(opt.kernel)) {
    throw std::runtime_error("ELF kernel without a multiboot v1 header is unsupported");
  }
  return LoadFlat(mem, opt.kernel, EntryMode::kProtected32);
}

}  // namespace apicv::platform
