// Flat and Multiboot v1 loaders; see boot_loader.h for the specification sections and limits.
#include "platform/boot_loader.h"

#include <elf.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <vector>

namespace apicv::platform {

namespace {

constexpr size_t kMultibootSearch = 8192;
// Multiboot header flags (spec §3.1.2).
constexpr uint32_t kMbPageAlign = 1u << 0;
constexpr uint32_t kMbMemInfo = 1u << 1;
constexpr uint32_t kMbVideoMode = 1u << 2;
constexpr uint32_t kMbAoutKludge = 1u << 16;
// Boot information flags (spec §3.3).
constexpr uint32_t kInfoMem = 1u << 0;
constexpr uint32_t kInfoCmdline = 1u << 2;
constexpr uint32_t kInfoMods = 1u << 3;
constexpr uint32_t kInfoMmap = 1u << 6;

[[noreturn]] void Fail(const std::string& why) {
  throw std::runtime_error(why);
}

uint32_t Le32(std::span<const uint8_t> b, size_t off) {
  uint32_t v;
  std::memcpy(&v, b.data() + off, 4);
  return v;
}

struct MbHeader {
  size_t offset = 0;  // file offset of the magic
  uint32_t flags = 0;
  // Only read from the image when flag bit 16 (a.out kludge) is set; zero otherwise.
  uint32_t header_addr = 0, load_addr = 0, load_end_addr = 0, bss_end_addr = 0, entry_addr = 0;
};

bool FindHeader(std::span<const uint8_t> image, MbHeader* out) {
  const size_t limit = std::min(image.size(), kMultibootSearch);
  for (size_t off = 0; off + 12 <= limit; off += 4) {
    if (Le32(image, off) != kMultibootHeaderMagic) continue;
    const uint32_t flags = Le32(image, off + 4);
    const uint32_t sum = Le32(image, off + 8);
    if (static_cast<uint32_t>(kMultibootHeaderMagic + flags + sum) != 0) continue;
    out->offset = off;
    out->flags = flags;
    if (flags & kMbAoutKludge) {
      if (off + 32 > image.size()) return false;
      out->header_addr = Le32(image, off + 12);
      out->load_addr = Le32(image, off + 16);
      out->load_end_addr = Le32(image, off + 20);
      out->bss_end_addr = Le32(image, off + 24);
      out->entry_addr = Le32(image, off + 28);
    }
    return true;
  }
  return false;
}

// Copies file bytes [off, off+filesz) to gpa and zero-fills up to memsz.
void LoadSegment(GuestMemory& mem, std::span<const uint8_t> image, uint64_t off, uint64_t filesz,
                 uint64_t gpa, uint64_t memsz) {
  if (filesz > memsz) Fail("ELF segment file size exceeds its memory size");
  if (off > image.size() || filesz > image.size() - off) Fail("ELF segment outside the file");
  if (gpa < 0x1000) Fail("kernel segment would load into page 0");
  uint8_t* dst = mem.ptr(gpa, memsz);
  if (dst == nullptr)
    Fail("kernel segment at " + std::to_string(gpa) + " does not fit in guest RAM");
  // The boot information lives at 0x9000..0x9FC00; a kernel there would be overwritten.
  if (gpa < kMultibootInfoEnd && gpa + memsz > kMultibootInfoAddr) {
    Fail("kernel segment overlaps the multiboot information area 0x9000-0x9FC00");
  }
  std::memcpy(dst, image.data() + off, filesz);
  std::memset(dst + filesz, 0, memsz - filesz);
}

// Loads every PT_LOAD segment at its physical address; returns the highest end address.
template <typename Ehdr, typename Phdr>
uint64_t LoadElf(GuestMemory& mem, std::span<const uint8_t> image, uint64_t* entry) {
  if (image.size() < sizeof(Ehdr)) Fail("truncated ELF header");
  Ehdr eh;
  std::memcpy(&eh, image.data(), sizeof eh);
  if (eh.e_phentsize != sizeof(Phdr)) Fail("unexpected ELF program header size");
  if (eh.e_phnum == 0) Fail("ELF has no program headers");
  uint64_t end = 0;
  for (unsigned i = 0; i < eh.e_phnum; ++i) {
    const uint64_t at = eh.e_phoff + static_cast<uint64_t>(i) * sizeof(Phdr);
    if (at > image.size() || sizeof(Phdr) > image.size() - at)
      Fail("ELF program header outside file");
    Phdr ph;
    std::memcpy(&ph, image.data() + at, sizeof ph);
    if (ph.p_type != PT_LOAD || ph.p_memsz == 0) continue;
    LoadSegment(mem, image, ph.p_offset, ph.p_filesz, ph.p_paddr, ph.p_memsz);
    end = std::max<uint64_t>(end, ph.p_paddr + ph.p_memsz);
  }
  if (end == 0) Fail("ELF has no loadable segment");
  *entry = eh.e_entry;
  return end;
}

uint64_t AlignUp(uint64_t v, uint64_t a) {
  return (v + a - 1) & ~(a - 1);
}

// Sequential writer into the info area with a hard bound.
class InfoArea {
 public:
  InfoArea(GuestMemory& mem, uint64_t start, uint64_t end) : mem_(mem), next_(start), end_(end) {}
  uint64_t Put(const void* data, uint64_t len, uint64_t align = 8) {
    const uint64_t at = AlignUp(next_, align);
    if (at > end_ || len > end_ - at) Fail("multiboot information does not fit below 0x9FC00");
    if (!mem_.write(at, data, len)) Fail("guest RAM too small for multiboot information");
    next_ = at + len;
    return at;
  }
  uint64_t PutString(const std::string& s) { return Put(s.c_str(), s.size() + 1, 1); }

 private:
  GuestMemory& mem_;
  uint64_t next_;
  uint64_t end_;
};

#pragma pack(push, 1)
struct MbInfo {
  uint32_t flags, mem_lower, mem_upper, boot_device, cmdline, mods_count, mods_addr;
  uint32_t syms[4];
  uint32_t mmap_length, mmap_addr;
  uint32_t rest[9];  // drives, config table, loader name, APM, VBE: left zero
};
struct MbModule {
  uint32_t mod_start, mod_end, string, reserved;
};
struct MbMmapEntry {
  uint32_t size;
  uint64_t base_addr, length;
  uint32_t type;
};
#pragma pack(pop)
static_assert(sizeof(MbMmapEntry) == 24);

}  // namespace

bool IsElf(std::span<const uint8_t> image) {
  return image.size() >= 4 && std::memcmp(image.data(), ELFMAG, SELFMAG) == 0;
}

bool IsMultiboot(std::span<const uint8_t> image) {
  MbHeader h;
  return FindHeader(image, &h);
}

BootImage LoadFlat(GuestMemory& mem, std::span<const uint8_t> image, EntryMode mode) {
  if (image.empty()) Fail("empty kernel image");
  BootImage boot;
  boot.mode = mode;
  const uint64_t at = mode == EntryMode::kReal16 ? kFlat16LoadAddr : kFlatLoadAddr;
  // Real mode reaches only the first MiB.
  if (mode == EntryMode::kReal16 && image.size() > 0xA0000 - at) {
    Fail("16-bit flat image larger than conventional memory");
  }
  if (!mem.write(at, image.data(), image.size())) Fail("flat image does not fit in guest RAM");
  boot.entry = at;
  if (mode == EntryMode::kLong64) SetupLongModeTables(mem, boot);
  return boot;
}

BootImage LoadMultiboot(GuestMemory& mem, std::span<const uint8_t> image,
                        const MultibootArgs& args) {
  MbHeader h;
  if (!FindHeader(image, &h)) Fail("no multiboot v1 header in the first 8 KiB");
  if (h.flags & kMbVideoMode) Fail("multiboot video mode request (flag bit 2) is unsupported");
  if (h.flags & 0xFFF8u)
    Fail("multiboot header requires unsupported features (flags 0x" + std::to_string(h.flags) +
         ")");
  (void)kMbPageAlign;  // modules are always page aligned
  (void)kMbMemInfo;    // memory information is always provided

  uint64_t entry = 0;
  uint64_t end = 0;
  if (h.flags & kMbAoutKludge) {
    // header_addr corresponds to file offset h.offset (spec §3.1.3).
    if (h.load_addr > h.header_addr) Fail("multiboot load_addr above header_addr");
    const uint64_t file_start = h.offset - (h.header_addr - h.load_addr);
    if (h.header_addr - h.load_addr > h.offset) Fail("multiboot header addresses inconsistent");
    uint64_t load_len = image.size() - file_start;
    if (h.load_end_addr != 0) {
      if (h.load_end_addr < h.load_addr) Fail("multiboot load_end_addr below load_addr");
      load_len = std::min<uint64_t>(load_len, h.load_end_addr - h.load_addr);
    }
    uint64_t mem_len = load_len;
    if (h.bss_end_addr != 0) {
      if (h.bss_end_addr < h.load_addr + load_len) Fail("multiboot bss_end_addr below load end");
      mem_len = h.bss_end_addr - h.load_addr;
    }
    LoadSegment(mem, image, file_start, load_len, h.load_addr, mem_len);
    entry = h.entry_addr;
    end = h.load_addr + mem_len;
  } else if (IsElf(image)) {
    if (image.size() < EI_NIDENT) Fail("truncated ELF header");
    const uint8_t cls = image[EI_CLASS];
    if (cls == ELFCLASS32) {
      end = LoadElf<Elf32_Ehdr, Elf32_Phdr>(mem, image, &entry);
    } else if (cls == ELFCLASS64) {
      end = LoadElf<Elf64_Ehdr, Elf64_Phdr>(mem, image, &entry);
    } else {
      Fail("unsupported ELF class");
    }
  } else {
    Fail("multiboot image is neither ELF nor has the a.out-kludge address fields");
  }
  if (entry >= GuestMemory::k4G) Fail("multiboot entry point above 4 GiB");
  InfoArea area(mem, kMultibootInfoAddr + sizeof(MbInfo), kMultibootInfoEnd);
  MbInfo info{};
  info.flags = kInfoMem | kInfoCmdline | kInfoMmap;
  info.mem_lower = 640;
  const uint64_t low = mem.low_size();
  info.mem_upper = low > 0x100000 ? static_cast<uint32_t>((low - 0x100000) / 1024) : 0;

  std::string cmdline = args.kernel_name;
  if (!args.append.empty()) cmdline += " " + args.append;
  info.cmdline = static_cast<uint32_t>(area.PutString(cmdline));

  // Memory map: conventional memory, the BIOS area reserved, RAM from 1 MiB, RAM above 4 GiB.
  std::vector<MbMmapEntry> mmap;
  mmap.push_back({20, 0, 0x9FC00, 1});
  mmap.push_back({20, 0xF0000, 0x10000, 2});
  if (low > 0x100000) mmap.push_back({20, 0x100000, low - 0x100000, 1});
  for (const MemorySlot& s : mem.slots()) {
    if (s.gpa >= GuestMemory::k4G) mmap.push_back({20, s.gpa, s.size, 1});
  }
  info.mmap_addr =
      static_cast<uint32_t>(area.Put(mmap.data(), mmap.size() * sizeof(MbMmapEntry), 4));
  info.mmap_length = static_cast<uint32_t>(mmap.size() * sizeof(MbMmapEntry));

  if (!args.initrd.empty()) {
    const uint64_t start = AlignUp(std::max<uint64_t>(end, 0x100000), 0x1000);
    if (!mem.write(start, args.initrd.data(), args.initrd.size()) ||
        start + args.initrd.size() >= GuestMemory::kHoleStart) {
      Fail("initrd does not fit in guest RAM after the kernel");
    }
    MbModule mod{};
    mod.mod_start = static_cast<uint32_t>(start);
    mod.mod_end = static_cast<uint32_t>(start + args.initrd.size());
    mod.string = static_cast<uint32_t>(area.PutString(args.initrd_name));
    info.mods_addr = static_cast<uint32_t>(area.Put(&mod, sizeof mod, 4));
    info.mods_count = 1;
    info.flags |= kInfoMods;
  }
  if (!mem.write(kMultibootInfoAddr, &info, sizeof info)) Fail("guest RAM too small");

  BootImage boot;
  boot.mode = EntryMode::kProtected32;
  boot.entry = entry;
  boot.eax = kMultibootBootloaderMagic;
  boot.ebx = static_cast<uint32_t>(kMultibootInfoAddr);
  return boot;
}

void SetupLongModeTables(GuestMemory& mem, BootImage& boot) {
  constexpr uint64_t kPml4 = 0x1000, kPdpt = 0x2000, kPd = 0x3000, kGdt = 0x7000;
  constexpr uint64_t kP = 1, kRw = 2, kPs = 1ull << 7;
  uint8_t* base = mem.ptr(kPml4, 0x7000);
  if (base == nullptr) Fail("guest RAM too small for page tables");
  std::memset(base, 0, 0x7000);
  const uint64_t pml4e = kPdpt | kP | kRw;
  mem.write(kPml4, &pml4e, 8);
  for (uint64_t i = 0; i < 4; ++i) {
    const uint64_t pdpte = (kPd + i * 0x1000) | kP | kRw;
    mem.write(kPdpt + i * 8, &pdpte, 8);
    for (uint64_t j = 0; j < 512; ++j) {
      const uint64_t pde = ((i * 512 + j) << 21) | kP | kRw | kPs;
      mem.write(kPd + i * 0x1000 + j * 8, &pde, 8);
    }
  }
  // Null, 64-bit code (L=1, P, S, type execute/read), data (P, S, read/write).
  const uint64_t gdt[3] = {0, 0x00AF9A000000FFFFull, 0x00CF92000000FFFFull};
  mem.write(kGdt, gdt, sizeof gdt);
  boot.cr3 = kPml4;
  boot.gdt_base = kGdt;
  boot.gdt_limit = sizeof gdt - 1;
}

}  // namespace apicv::platform
