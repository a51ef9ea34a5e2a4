// The embedded guests are loadable multiboot v1 kernels (Multiboot Specification 0.6.96 3.1.1:
// magic 0x1BADB002 4-byte aligned in the first 8192 bytes, magic + flags + checksum == 0) in an
// ELF32 i386 container (the form QEMU's multiboot loader accepts).
#include "builtin_guests.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <set>
#include <string>

namespace apicv::guests {
namespace {

uint32_t Le32(const unsigned char* p) {
  return uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 | uint32_t{p[3]} << 24;
}

TEST(BuiltinGuests, ListsTheIssueGuests) {
  std::set<std::string> names;
  for (const BuiltinGuest& g : BuiltinGuests()) names.insert(g.name);
  for (const char* want : {"apic", "smp", "pit-extint", "ioapic", "reboot", "ipi-bench"}) {
    EXPECT_TRUE(names.count(want)) << want;
  }
  EXPECT_EQ(names.size(), BuiltinGuests().size()) << "duplicate names";
}

TEST(BuiltinGuests, FindByName) {
  const BuiltinGuest* g = FindBuiltinGuest("smp");
  ASSERT_NE(g, nullptr);
  EXPECT_STREQ(g->name, "smp");
  EXPECT_EQ(FindBuiltinGuest("no-such-guest"), nullptr);
  EXPECT_EQ(FindBuiltinGuest(""), nullptr);
  EXPECT_EQ(FindBuiltinGuest("sm"), nullptr);
}

TEST(BuiltinGuests, AreElf32I386) {
  for (const BuiltinGuest& g : BuiltinGuests()) {
    ASSERT_GT(g.size, 52u) << g.name;
    EXPECT_EQ(std::memcmp(g.data,
                          "\x7f"
                          "ELF",
                          4),
              0)
        << g.name;
    EXPECT_EQ(g.data[4], 1) << g.name << ": ELFCLASS32";
    EXPECT_EQ(g.data[5], 1) << g.name << ": little endian";
    EXPECT_EQ(g.data[18] | g.data[19] << 8, 3) << g.name << ": EM_386";
    uint32_t entry = Le32(g.data + 24);
    EXPECT_GE(entry, 0x100000u) << g.name;
    EXPECT_LT(entry, 0x200000u) << g.name;
  }
}

TEST(BuiltinGuests, HaveMultibootHeaderWithMemoryInfo) {
  for (const BuiltinGuest& g : BuiltinGuests()) {
    size_t limit = g.size < 8192 ? g.size : 8192;
    bool found = false;
    for (size_t off = 0; off + 12 <= limit; off += 4) {
      if (Le32(g.data + off) != 0x1BADB002u) continue;
      uint32_t flags = Le32(g.data + off + 4);
      EXPECT_EQ(0x1BADB002u + flags + Le32(g.data + off + 8), 0u) << g.name << ": checksum";
      EXPECT_TRUE(flags & 2u) << g.name << ": memory info flag";
      EXPECT_FALSE(flags & 0x10000u) << g.name << ": must use ELF, not a.out kludge";
      found = true;
      break;
    }
    EXPECT_TRUE(found) << g.name;
  }
}

}  // namespace
}  // namespace apicv::guests
