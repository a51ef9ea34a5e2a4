// Flat and Multiboot v1 loaders (Multiboot Specification 0.6.96 §3), checked against the layout
// the specification defines; images are built byte by byte here.
#include "platform/boot_loader.h"

#include <elf.h>
#include <gtest/gtest.h>

#include <cstring>
#include <stdexcept>
#include <vector>

namespace apicv::platform {
namespace {

constexpr uint64_t k64M = 64ull << 20;

void Put32(std::vector<uint8_t>& v, size_t off, uint32_t x) {
  if (v.size() < off + 4) v.resize(off + 4);
  std::memcpy(v.data() + off, &x, 4);
}

uint32_t Get32(const GuestMemory& m, uint64_t gpa) {
  uint32_t v = 0;
  EXPECT_TRUE(m.read(gpa, &v, 4));
  return v;
}
uint64_t Get64(const GuestMemory& m, uint64_t gpa) {
  uint64_t v = 0;
  EXPECT_TRUE(m.read(gpa, &v, 8));
  return v;
}

// Multiboot header at `off` with `flags`.
void PutMbHeader(std::vector<uint8_t>& v, size_t off, uint32_t flags) {
  Put32(v, off, 0x1BADB002);
  Put32(v, off + 4, flags);
  Put32(v, off + 8, static_cast<uint32_t>(0u - 0x1BADB002u - flags));
}

// ELF32 with one PT_LOAD: `code` at file offset 0x100, loaded at paddr, memsz = filesz + bss.
std::vector<uint8_t> MakeElf32(uint32_t paddr, const std::vector<uint8_t>& code, uint32_t bss,
                               uint32_t entry) {
  std::vector<uint8_t> img(0x100 + code.size(), 0);
  Elf32_Ehdr eh{};
  std::memcpy(eh.e_ident, ELFMAG, SELFMAG);
  eh.e_ident[EI_CLASS] = ELFCLASS32;
  eh.e_ident[EI_DATA] = ELFDATA2LSB;
  eh.e_ident[EI_VERSION] = EV_CURRENT;
  eh.e_type = ET_EXEC;
  eh.e_machine = EM_386;
  eh.e_version = EV_CURRENT;
  eh.e_entry = entry;
  eh.e_phoff = sizeof(Elf32_Ehdr);
  eh.e_ehsize = sizeof(Elf32_Ehdr);
  eh.e_phentsize = sizeof(Elf32_Phdr);
  eh.e_phnum = 1;
  std::memcpy(img.data(), &eh, sizeof eh);
  Elf32_Phdr ph{};
  ph.p_type = PT_LOAD;
  ph.p_offset = 0x100;
  ph.p_vaddr = 0xC0000000u + paddr;  // loaders must use the physical address
  ph.p_paddr = paddr;
  ph.p_filesz = static_cast<uint32_t>(code.size());
  ph.p_memsz = static_cast<uint32_t>(code.size()) + bss;
  std::memcpy(img.data() + sizeof eh, &ph, sizeof ph);
  std::memcpy(img.data() + 0x100, code.data(), code.size());
  PutMbHeader(img, 0x80, 0x3);  // page-align modules, memory info
  return img;
}

std::vector<uint8_t> MakeElf64(uint64_t paddr, const std::vector<uint8_t>& code, uint64_t entry) {
  std::vector<uint8_t> img(0x200 + code.size(), 0);
  Elf64_Ehdr eh{};
  std::memcpy(eh.e_ident, ELFMAG, SELFMAG);
  eh.e_ident[EI_CLASS] = ELFCLASS64;
  eh.e_ident[EI_DATA] = ELFDATA2LSB;
  eh.e_ident[EI_VERSION] = EV_CURRENT;
  eh.e_type = ET_EXEC;
  eh.e_machine = EM_X86_64;
  eh.e_entry = entry;
  eh.e_phoff = sizeof(Elf64_Ehdr);
  eh.e_ehsize = sizeof(Elf64_Ehdr);
  eh.e_phentsize = sizeof(Elf64_Phdr);
  eh.e_phnum = 1;
  std::memcpy(img.data(), &eh, sizeof eh);
  Elf64_Phdr ph{};
  ph.p_type = PT_LOAD;
  ph.p_offset = 0x200;
  ph.p_paddr = paddr;
  ph.p_vaddr = paddr;
  ph.p_filesz = code.size();
  ph.p_memsz = code.size();
  std::memcpy(img.data() + sizeof eh, &ph, sizeof ph);
  std::memcpy(img.data() + 0x200, code.data(), code.size());
  PutMbHeader(img, 0x100, 0x2);
  return img;
}

TEST(FlatLoader, Entry32LoadsAtOneMiB) {
  GuestMemory mem(k64M);
  const std::vector<uint8_t> code = {0xF4, 0x90, 0xEB, 0xFE};
  BootImage b = LoadFlat(mem, code, EntryMode::kProtected32);
  EXPECT_EQ(b.mode, EntryMode::kProtected32);
  EXPECT_EQ(b.entry, 0x100000u);
  EXPECT_EQ(Get32(mem, 0x100000), 0xFEEB90F4u);
}

TEST(FlatLoader, Entry16LoadsAtBootSector) {
  GuestMemory mem(k64M);
  const std::vector<uint8_t> code = {0xAA, 0x55};
  BootImage b = LoadFlat(mem, code, EntryMode::kReal16);
  EXPECT_EQ(b.entry, 0x7C00u);
  uint8_t got[2];
  ASSERT_TRUE(mem.read(0x7C00, got, 2));
  EXPECT_EQ(got[0], 0xAA);
  EXPECT_EQ(got[1], 0x55);
  // Larger than conventional memory above 0x7C00: rejected.
  std::vector<uint8_t> big(0xA0000 - 0x7C00 + 1, 0x90);
  EXPECT_THROW(LoadFlat(mem, big, EntryMode::kReal16), std::runtime_error);
}

TEST(FlatLoader, Entry64BuildsIdentityMapAndGdt) {
  GuestMemory mem(k64M);
  const std::vector<uint8_t> code = {0xF4};
  BootImage b = LoadFlat(mem, code, EntryMode::kLong64);
  ASSERT_NE(b.cr3, 0u);
  EXPECT_EQ(b.cr3 & 0xFFF, 0u);
  EXPECT_GE(b.cr3, 0x1000u);  // page 0 stays free
  const uint64_t pml4e = Get64(mem, b.cr3);
  EXPECT_EQ(pml4e & 1, 1u);
  const uint64_t pdpt = pml4e & ~0xFFFull;
  // Walk GVA 0x40200000 (1 GiB + 2 MiB): PDPT[1] -> PD[1] must map GPA 0x40200000, PS=1.
  const uint64_t pdpte = Get64(mem, pdpt + 8);
  EXPECT_EQ(pdpte & 1, 1u);
  const uint64_t pde = Get64(mem, (pdpte & ~0xFFFull) + 8);
  EXPECT_EQ(pde & ~0xFFFull, 0x40200000u);
  EXPECT_EQ(pde & 0x83, 0x83u);  // P, RW, PS
  // GDT selector 0x8: code, L=1 (bit 53), P=1 (bit 47), type execute (bit 43).
  const uint64_t cs = Get64(mem, b.gdt_base + 8);
  EXPECT_TRUE(cs & (1ull << 53));
  EXPECT_TRUE(cs & (1ull << 47));
  EXPECT_TRUE(cs & (1ull << 43));
  EXPECT_GE(b.gdt_limit, 0x17);
}

TEST(MultibootHeader, DetectsValidHeaderOnly) {
  std::vector<uint8_t> img(8192 + 64, 0);
  EXPECT_FALSE(IsMultiboot(img));
  PutMbHeader(img, 0x40, 0);
  EXPECT_TRUE(IsMultiboot(img));
  Put32(img, 0x48, 0);  // break the checksum
  EXPECT_FALSE(IsMultiboot(img));
  std::vector<uint8_t> late(8192 + 64, 0);
  PutMbHeader(late, 8192, 0);  // outside the first 8 KiB
  EXPECT_FALSE(IsMultiboot(late));
  std::vector<uint8_t> unaligned(256, 0);
  PutMbHeader(unaligned, 0x42, 0);  // must be 32-bit aligned
  EXPECT_FALSE(IsMultiboot(unaligned));
}

TEST(MultibootLoader, Elf32InfoBlockAndModule) {
  GuestMemory mem(k64M);
  // Pre-fill the bss area so zero-fill is observable.
  std::vector<uint8_t> junk(64, 0xAA);
  ASSERT_TRUE(mem.write(0x100000, junk.data(), junk.size()));
  const std::vector<uint8_t> code = {1, 2, 3, 4, 5, 6, 7, 8};
  auto img = MakeElf32(0x100000, code, 24, 0x100004);
  const std::vector<uint8_t> initrd = {'i', 'n', 'i', 't'};
  MultibootArgs args;
  args.kernel_name = "apic.flat";
  args.append = "-v fast";
  args.initrd = initrd;
  args.initrd_name = "rd.img";
  BootImage b = LoadMultiboot(mem, img, args);
  EXPECT_EQ(b.mode, EntryMode::kProtected32);
  EXPECT_EQ(b.entry, 0x100004u);
  EXPECT_EQ(b.eax, 0x2BADB002u);
  EXPECT_EQ(Get32(mem, 0x100000), 0x04030201u);
  EXPECT_EQ(Get32(mem, 0x100008), 0u);  // bss zeroed
  EXPECT_EQ(Get32(mem, 0x10001C), 0u);
  EXPECT_EQ(Get32(mem, 0x100020), 0xAAAAAAAAu);  // beyond memsz untouched
  const uint64_t info = b.ebx;
  ASSERT_GE(info, 0x1000u);
  const uint32_t flags = Get32(mem, info);
  EXPECT_TRUE(flags & (1u << 0));  // mem_lower/upper
  EXPECT_TRUE(flags & (1u << 2));  // cmdline
  EXPECT_TRUE(flags & (1u << 3));  // mods
  EXPECT_TRUE(flags & (1u << 6));  // mmap
  EXPECT_EQ(Get32(mem, info + 4), 640u);
  EXPECT_EQ(Get32(mem, info + 8), (64u * 1024) - 1024);  // KiB above 1 MiB
  char cmd[64] = {};
  ASSERT_TRUE(mem.read(Get32(mem, info + 16), cmd, sizeof("apic.flat -v fast")));
  EXPECT_STREQ(cmd, "apic.flat -v fast");
  EXPECT_EQ(Get32(mem, info + 20), 1u);  // mods_count
  const uint32_t mods = Get32(mem, info + 24);
  const uint32_t mod_start = Get32(mem, mods);
  const uint32_t mod_end = Get32(mem, mods + 4);
  EXPECT_EQ(mod_start % 4096, 0u);
  EXPECT_GE(mod_start, 0x100020u);  // after the kernel's memsz
  EXPECT_EQ(mod_end - mod_start, 4u);
  EXPECT_EQ(Get32(mem, mod_start), 0x74696E69u);  // "init"
  char name[8] = {};
  ASSERT_TRUE(mem.read(Get32(mem, mods + 8), name, 7));
  EXPECT_STREQ(name, "rd.img");
  // Memory map: entries of size 20 (+4 for the size field); RAM from 1 MiB to 64 MiB available.
  const uint32_t mmap_len = Get32(mem, info + 44);
  const uint32_t mmap_addr = Get32(mem, info + 48);
  ASSERT_GT(mmap_len, 0u);
  bool saw_high = false, saw_low = false;
  for (uint32_t off = 0; off < mmap_len;) {
    const uint32_t size = Get32(mem, mmap_addr + off);
    ASSERT_EQ(size, 20u);
    const uint64_t base = Get64(mem, mmap_addr + off + 4);
    const uint64_t len = Get64(mem, mmap_addr + off + 12);
    const uint32_t type = Get32(mem, mmap_addr + off + 20);
    if (base == 0x100000 && type == 1) {
      EXPECT_EQ(len, k64M - 0x100000);
      saw_high = true;
    }
    if (base == 0 && type == 1) {
      EXPECT_LE(len, 0xA0000u);
      saw_low = true;
    }
    off += size + 4;
  }
  EXPECT_TRUE(saw_high);
  EXPECT_TRUE(saw_low);
}

TEST(MultibootLoader, NoInitrdMeansNoModules) {
  GuestMemory mem(k64M);
  auto img = MakeElf32(0x200000, {0xF4}, 0, 0x200000);
  MultibootArgs args;
  args.kernel_name = "k";
  BootImage b = LoadMultiboot(mem, img, args);
  EXPECT_FALSE(Get32(mem, b.ebx) & (1u << 3));
  char cmd[4] = {};
  ASSERT_TRUE(mem.read(Get32(mem, b.ebx + 16), cmd, 2));
  EXPECT_STREQ(cmd, "k");
}

TEST(MultibootLoader, Elf64SegmentsLoadByPhysicalAddress) {
  GuestMemory mem(k64M);
  auto img = MakeElf64(0x300000, {0xDE, 0xAD, 0xBE, 0xEF}, 0x300000);
  BootImage b = LoadMultiboot(mem, img, MultibootArgs{});
  EXPECT_EQ(b.mode, EntryMode::kProtected32);
  EXPECT_EQ(b.entry, 0x300000u);
  EXPECT_EQ(Get32(mem, 0x300000), 0xEFBEADDEu);
}

TEST(MultibootLoader, AoutKludgeUsesHeaderAddresses) {
  // Header at file offset 0 describing: load_addr = header_addr = 0x200000, 16 file bytes,
  // bss up to 0x200040, entry 0x200020.
  std::vector<uint8_t> img(64, 0x90);
  PutMbHeader(img, 0, 1u << 16);
  Put32(img, 12, 0x200000);
  Put32(img, 16, 0x200000);
  Put32(img, 20, 0x200030);
  Put32(img, 24, 0x200040);
  Put32(img, 28, 0x200020);
  GuestMemory mem(k64M);
  std::vector<uint8_t> junk(0x40, 0xAA);
  ASSERT_TRUE(mem.write(0x200000, junk.data(), junk.size()));
  BootImage b = LoadMultiboot(mem, img, MultibootArgs{});
  EXPECT_EQ(b.entry, 0x200020u);
  EXPECT_EQ(Get32(mem, 0x200000), 0x1BADB002u);
  EXPECT_EQ(Get32(mem, 0x20002C), 0x90909090u);
  EXPECT_EQ(Get32(mem, 0x200030), 0u);  // bss
  EXPECT_EQ(Get32(mem, 0x20003C), 0u);
}

TEST(MultibootLoader, RejectsHostileImages) {
  GuestMemory mem(k64M);
  // Video mode request is unsupported.
  std::vector<uint8_t> video(64, 0);
  PutMbHeader(video, 0, 1u << 2);
  try {
    LoadMultiboot(mem, video, MultibootArgs{});
    FAIL() << "video mode accepted";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("unsupported"), std::string::npos);
  }
  // Segment into page 0.
  EXPECT_THROW(LoadMultiboot(mem, MakeElf32(0x0, {1}, 0, 0), MultibootArgs{}), std::runtime_error);
  // Segment over the info area.
  EXPECT_THROW(LoadMultiboot(mem, MakeElf32(0x9000, {1}, 0, 0x9000), MultibootArgs{}),
               std::runtime_error);
  // Segment beyond RAM, and one whose size would wrap.
  EXPECT_THROW(LoadMultiboot(mem, MakeElf32(0x3FFFFF0, {1}, 64, 0x3FFFFF0), MultibootArgs{}),
               std::runtime_error);
  EXPECT_THROW(LoadMultiboot(mem, MakeElf32(0x100000, {1}, 0xFFFFFFF0u, 0x100000), MultibootArgs{}),
               std::runtime_error);
  // Segment data outside the file.
  auto img = MakeElf32(0x100000, {1, 2, 3, 4}, 0, 0x100000);
  img.resize(0x102);
  EXPECT_THROW(LoadMultiboot(mem, img, MultibootArgs{}), std::runtime_error);
  // Truncated: only the header.
  std::vector<uint8_t> tiny(12, 0);
  PutMbHeader(tiny, 0, 0);
  EXPECT_THROW(LoadMultiboot(mem, tiny, MultibootArgs{}), std::runtime_error);
}

TEST(GuestMemory, BoundsAreCheckedWithoutOverflow) {
  GuestMemory mem(k64M);
  EXPECT_NE(mem.ptr(0, k64M), nullptr);
  EXPECT_EQ(mem.ptr(0, k64M + 1), nullptr);
  EXPECT_EQ(mem.ptr(k64M - 4, 8), nullptr);
  EXPECT_EQ(mem.ptr(~0ull - 2, 8), nullptr);
  EXPECT_EQ(mem.ptr(8, ~0ull), nullptr);
  EXPECT_THROW(GuestMemory(1024), std::runtime_error);
}

}  // namespace
}  // namespace apicv::platform
