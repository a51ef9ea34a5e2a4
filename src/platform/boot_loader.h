// Boot loaders: a flat binary with a 16-, 32- or 64-bit entry, and Multiboot v1 (Multiboot
// Specification 0.6.96 §3: header, ELF32/ELF64 PT_LOAD segments by physical address or the
// a.out-kludge address fields, boot information with memory sizes, memory map, command line,
// one module), entered in 32-bit flat protected mode with EAX=0x2BADB002, EBX=info (§3.2).
// Page 0 is left free. Not supported (rejected with a message containing "unsupported"):
// Multiboot video mode requests (flag bit 2) and any other required flag bits >= 3 in 0..15,
// ELF section-header info, boot device, APM/VBE tables, more than one module.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "platform/guest_memory.h"

namespace apicv::platform {

enum class EntryMode : uint8_t { kReal16, kProtected32, kLong64 };

// Where and how the BSP starts; platform/cpu_state.h BootCpuState() turns it into the full
// register state (segments, control registers, EAX/EBX) a backend loads.
struct BootImage {
  EntryMode mode = EntryMode::kProtected32;
  uint64_t entry = 0;     // linear RIP (real mode: IP with CS base 0)
  uint32_t eax = 0;       // multiboot magic
  uint32_t ebx = 0;       // multiboot info address
  uint64_t cr3 = 0;       // long mode: identity page tables
  uint64_t gdt_base = 0;  // long mode: GDT with a 64-bit code segment at 0x8, data at 0x10
  uint16_t gdt_limit = 0;
};

// Fixed addresses used by the loaders.
inline constexpr uint64_t kFlat16LoadAddr = 0x7C00;
inline constexpr uint64_t kFlatLoadAddr = 0x100000;
inline constexpr uint64_t kMultibootInfoAddr = 0x9000;  // info block area 0x9000..0x9FFFF
inline constexpr uint64_t kMultibootInfoEnd = 0x9FC00;
inline constexpr uint32_t kMultibootBootloaderMagic = 0x2BADB002;
inline constexpr uint32_t kMultibootHeaderMagic = 0x1BADB002;

struct MultibootArgs {
  std::string kernel_name;          // first word of the command line
  std::string append;               // -append
  std::span<const uint8_t> initrd;  // -initrd contents (empty: no module)
  std::string initrd_name;
};

// True when the image carries a valid Multiboot v1 header in its first 8 KiB.
bool IsMultiboot(std::span<const uint8_t> image);
bool IsElf(std::span<const uint8_t> image);

// Loaders throw std::runtime_error with a one-line reason when the image cannot be loaded.
BootImage LoadFlat(GuestMemory& mem, std::span<const uint8_t> image, EntryMode mode);
BootImage LoadMultiboot(GuestMemory& mem, std::span<const uint8_t> image,
                        const MultibootArgs& args);

// Builds identity-mapped 4-level page tables for the first 4 GiB (2 MiB pages) and a flat GDT;
// fills cr3/gdt_* of `boot`. Used for 64-bit flat entry.
void SetupLongModeTables(GuestMemory& mem, BootImage& boot);

}  // namespace apicv::platform
