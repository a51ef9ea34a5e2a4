// Built-in guest programs embedded in the apicv binary (`apicv run --guest NAME`).
// Each is a multiboot v1 kernel (ELF32 container, 64-bit code after its entry stub) that reports
// on the serial port (0x3F8) and exits through isa-debug-exit (0xF4): it prints "PASS" and writes
// 0 (host status 1), or prints "FAIL: reason" lines and writes 1 (host status 3). See
// docs/guests.md for the host <-> guest conventions.
#pragma once

#include <cstddef>
#include <span>
#include <string_view>

namespace apicv::guests {

struct BuiltinGuest {
  const char* name;         // as given to --guest
  const char* description;  // one line
  const unsigned char* data;
  size_t size;
};

// All built-in guests, in a fixed order.
std::span<const BuiltinGuest> BuiltinGuests();

// nullptr when no guest has that name.
const BuiltinGuest* FindBuiltinGuest(std::string_view name);

}  // namespace apicv::guests
