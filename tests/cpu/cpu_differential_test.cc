// Differential test of apicv's software CPU against the host CPU (issue 12, "Differential against
// the host CPU"): random sequences of general-purpose instructions (diff_gen.h) run natively at
// ring 3 in a forked child (diff_native.h) and in the interpreter at CPL 3 in 64-bit mode from
// the same state at the same virtual addresses (diff_guest.h); all 16 GPRs, RFLAGS, the 8 KiB of
// scratch memory (data and stack) and the fault (vector, RIP, error code, CR2) must be equal.
//
// Masks (nothing else is masked; see diff_gen.h for how each is derived):
//   - RFLAGS bits the SDM leaves undefined at the point where the sequence ended (Zydis's
//     per-instruction undefined-flag table, refined by count for shifts/rotates/SHLD/SHRD);
//   - a BSF/BSR destination whose source was zero (undefined result), until rewritten.
//   - RFLAGS.RF in the frame of a fault: not masked (see the RF note below), except against
//     qemu-i386, which never reports it (qemu_masks).
// Not generated (undefined result): SHLD/SHRD r/m16 with count > 16, BSWAP r16. Left out by
// design: RDTSC, CPUID, RDRAND (differ from the host by construction).
//
// Reproduce one sequence: APICV_DIFF_SEED=<seed> cpu_cpu_differential_test
//   --gtest_filter=CpuDifferential.* (prints its disassembly and the state either way).
// APICV_DIFF_COUNT=<n> runs n sequences instead of the CI count (a longer soak).
//
// 32-bit code (CompatMode32Ring3), the interpreter in compatibility mode (CS.L = 0, CS.D = 1:
// the same 32-bit encodings and semantics as i386 protected mode, under IA-32e paging) against
// the first oracle available (choose_oracle32; the output names it):
//   1. the host CPU: the 64-bit child far-jumps to Linux's 32-bit user code segment and runs the
//      sequence in compatibility mode;
//   2. where the host kernel refuses that (no IA-32 emulation, e.g. a PVM guest, as on the
//      machine this was written on and on CI): qemu-i386 (QEMU user mode, Debian qemu-user)
//      running the freestanding i386 child diff_child_i386.c, which runs the sequence in legacy
//      32-bit protected mode at CPL 3 (diff_qemu_i386.h). QEMU is an emulator, not hardware: its
//      deviations from the SDM found so far are masked in their exact case and counted
//      (qemu_masks, and the JMP +0 before CMPXCHG8B in diff_gen.h);
//   3. neither: NOT EVALUATED with the reason.
// Against qemu-i386 each sequence also runs in the interpreter in legacy 32-bit protected mode
// (PAE paging, 32-bit IDT and TSS: diff_guest.h), the mode QEMU runs it in.
// APICV_DIFF_ORACLE=qemu forces the QEMU oracle, =host the host one.
// Not covered: real mode (the mode tests cover it), legacy protected mode where the host CPU is
// the oracle;
// x87/SSE (the interpreter raises #UD); instructions whose result depends on the host (RDTSC,
// CPUID).
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "diff_gen.h"
#include "diff_guest.h"
#include "diff_layout.h"
#include "diff_native.h"
#include "diff_qemu_i386.h"

namespace apicv::cpu::difftest {
namespace {

constexpr unsigned kItemsPerSequence = 32;
// >= 1,000,000 instructions compared (asserted below) in an optimised build without sanitizers;
// Debug/ASan/TSan builds run a fifth of it (the interpreter is 5-20x slower there).
#if defined(__OPTIMIZE__) && !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
constexpr uint64_t kCiSequences = 40000;
constexpr bool kFullCount = true;
#else
constexpr uint64_t kCiSequences = 8000;
constexpr bool kFullCount = false;
#endif
constexpr size_t kBatch = 1000;  // sequences per forked child
// Mismatches printed in full (all are counted); APICV_DIFF_REPORT=<n> prints more.
uint64_t kMaxReported = 20;
// The reference in messages: "native" (the host CPU) or "qemu-i386".
const char* g_oracle_name = "native";

const char* const kGprName[16] = {"rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
                                  "r8",  "r9",  "r10", "r11", "r12", "r13", "r14", "r15"};

std::string hex(uint64_t v) {
  return GuestRunner::hex(v);
}

std::string flag_names(uint32_t f) {
  static const std::pair<uint32_t, const char*> kN[] = {
      {kFlagCF, "CF"},     {kFlagPF, "PF"},     {kFlagAF, "AF"},  {kFlagZF, "ZF"},
      {kFlagSF, "SF"},     {kFlagOF, "OF"},     {1u << 9, "IF"},  {1u << 10, "DF"},
      {1u << 12, "IOPL0"}, {1u << 13, "IOPL1"}, {1u << 14, "NT"}, {1u << 16, "RF"},
      {1u << 18, "AC"},    {1u << 21, "ID"}};
  std::string s;
  for (const auto& [bit, name] : kN) {
    if (f & bit) s += std::string(s.empty() ? "" : "|") + name;
  }
  return s.empty() ? "-" : s;
}

// Index of the instruction at `rip`, or offs.size() for the end of the sequence, or -1.
long insn_index(const Sequence& s, uint64_t rip) {
  if (rip == kCodeVa + s.code.size()) return static_cast<long>(s.offs.size());
  for (size_t i = 0; i < s.offs.size(); ++i) {
    if (kCodeVa + s.offs[i] == rip) return static_cast<long>(i);
  }
  return -1;
}

std::string disassemble(const Sequence& s, long mark) {
  ZydisDecoder dec;
  if (s.compat32) {
    ZydisDecoderInit(&dec, ZYDIS_MACHINE_MODE_LONG_COMPAT_32, ZYDIS_STACK_WIDTH_32);
  } else {
    ZydisDecoderInit(&dec, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64);
  }
  ZydisFormatter fmt;
  ZydisFormatterInit(&fmt, ZYDIS_FORMATTER_STYLE_INTEL);
  std::string out;
  for (size_t i = 0; i < s.offs.size(); ++i) {
    const size_t at = s.offs[i];
    const size_t len = (i + 1 < s.offs.size() ? s.offs[i + 1] : s.code.size()) - at;
    ZydisDecodedInstruction insn;
    ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
    char text[128] = "?";
    if (ZYAN_SUCCESS(ZydisDecoderDecodeFull(&dec, s.code.data() + at, len, &insn, ops))) {
      ZydisFormatterFormatInstruction(&fmt, &insn, ops, insn.operand_count_visible, text,
                                      sizeof text, kCodeVa + at, nullptr);
    }
    char line[256];
    std::string bytes;
    for (size_t k = 0; k < len; ++k) {
      char b[4];
      std::snprintf(b, sizeof b, "%02x", s.code[at + k]);
      bytes += b;
    }
    std::snprintf(line, sizeof line, "  %3zu %#" PRIx64 "  %-30s %-40s undef[%s]%s\n", i,
                  kCodeVa + at, bytes.c_str(), text, flag_names(s.undef_flags[i]).c_str(),
                  static_cast<long>(i) == mark ? "  <-- stopped here" : "");
    out += line;
  }
  return out;
}

std::string describe(const Outcome& o) {
  std::string s = o.faulted ? "fault vector " + std::to_string(o.vector) + " at " + hex(o.rip) +
                                  " error " + hex(o.error) +
                                  (o.vector == 14 ? " cr2 " + hex(o.cr2) : std::string())
                            : "completed at " + hex(o.rip);
  s += "\n    rflags " + hex(o.rflags) + "\n   ";
  for (int r = 0; r < 16; ++r) {
    s += " " + std::string(kGprName[r]) + "=" + hex(o.gpr[r]);
    if (r % 4 == 3) s += "\n   ";
  }
  return s;
}

// RF: the SDM (vol. 3A 17.3.1.1) has the processor set RF in the EFLAGS image pushed for a
// fault-class exception; the interpreter is compared against that too, so RF is not masked.

// Compares one sequence; returns "" when equal, else the differences.
std::string compare(const Sequence& s, const Outcome& nat, const Outcome& emu, long* index) {
  std::string d;
  const long idx = insn_index(s, nat.rip);
  *index = idx;
  if (idx < 0)
    return std::string(g_oracle_name) + " run stopped at " + hex(nat.rip) +
           ", not an instruction boundary";
  if (nat.faulted != emu.faulted || nat.vector != emu.vector) {
    d += "  outcome: " + std::string(g_oracle_name) + " " +
         (nat.faulted ? "vector " + std::to_string(nat.vector) : "completed") + ", interpreter " +
         (emu.faulted ? "vector " + std::to_string(emu.vector) : "completed") + "\n";
  }
  if (nat.rip != emu.rip)
    d += "  rip: native " + hex(nat.rip) + ", interpreter " + hex(emu.rip) + "\n";
  if (nat.error != emu.error) {
    d += "  error code: native " + hex(nat.error) + ", interpreter " + hex(emu.error) + "\n";
  }
  if (nat.cr2 != emu.cr2)
    d += "  cr2: native " + hex(nat.cr2) + ", interpreter " + hex(emu.cr2) + "\n";
  const uint16_t ugprs = s.undef_gprs[static_cast<size_t>(idx)];
  // Compatibility mode: only EAX..EDI exist; the upper halves and R8-R15 are undefined after
  // the mode switches around the sequence (SDM vol. 1 3.4.1.1).
  const uint64_t gmask = s.compat32 ? 0xFFFFFFFFu : ~0ull;
  for (int r = 0; r < (s.compat32 ? 8 : 16); ++r) {
    if ((ugprs >> r & 1) == 0 && ((nat.gpr[r] ^ emu.gpr[r]) & gmask) != 0) {
      d += "  " + std::string(kGprName[r]) + ": " + std::string(g_oracle_name) + " " +
           hex(nat.gpr[r]) + ", interpreter " + hex(emu.gpr[r]) + "\n";
    }
  }
  const uint64_t fmask = ~static_cast<uint64_t>(s.undef_flags[static_cast<size_t>(idx)]);
  if ((nat.rflags & fmask) != (emu.rflags & fmask)) {
    d += "  rflags: native " + hex(nat.rflags) + ", interpreter " + hex(emu.rflags) +
         " (differ in " + flag_names(static_cast<uint32_t>((nat.rflags ^ emu.rflags) & fmask)) +
         "; masked undefined " + flag_names(static_cast<uint32_t>(~fmask)) + ")\n";
  }
  int shown = 0;
  for (size_t k = 0; k < kScratchSize; ++k) {
    if (nat.scratch[k] != emu.scratch[k]) {
      if (shown++ < 8) {
        d += "  memory " + hex(kScratchVa + k) + ": " + std::string(g_oracle_name) + " " +
             hex(nat.scratch[k]) + ", interpreter " + hex(emu.scratch[k]) + "\n";
      }
    }
  }
  if (shown > 8) d += "  ... " + std::to_string(shown) + " bytes differ\n";
  if (!d.empty() && ugprs != 0) {
    std::string m;
    for (int r = 0; r < 16; ++r) {
      if (ugprs >> r & 1) m += std::string(" ") + kGprName[r];
    }
    d += "  (masked undefined registers:" + m + ")\n";
  }
  return d;
}

struct Totals {
  uint64_t sequences = 0, instructions = 0, mismatches = 0;
  uint64_t instructions_legacy = 0;        // again with the interpreter in legacy protected mode
  std::map<int, uint64_t> faults;          // vector -> count
  std::map<std::string, uint64_t> masked;  // QEMU deviation -> sequences it was masked in
};

// Who executes the sequences as the reference.
struct Oracle {
  enum Kind { kHost, kQemuI386 } kind = kHost;
  std::string qemu, child;  // kQemuI386: the emulator and the i386 child program
};

// The instruction at index `idx` reads and writes a memory operand (a read-modify-write).
bool is_memory_rmw(const Sequence& s, long idx) {
  if (idx < 0 || static_cast<size_t>(idx) >= s.offs.size()) return false;
  ZydisDecoder dec;
  ZydisDecoderInit(&dec, ZYDIS_MACHINE_MODE_LONG_COMPAT_32, ZYDIS_STACK_WIDTH_32);
  const size_t at = s.offs[static_cast<size_t>(idx)];
  ZydisDecodedInstruction insn;
  ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
  if (!ZYAN_SUCCESS(
          ZydisDecoderDecodeFull(&dec, s.code.data() + at, s.code.size() - at, &insn, ops))) {
    return false;
  }
  for (unsigned k = 0; k < insn.operand_count_visible; ++k) {
    if (ops[k].type == ZYDIS_OPERAND_TYPE_MEMORY &&
        (ops[k].actions & ZYDIS_OPERAND_ACTION_MASK_READ) != 0 &&
        (ops[k].actions & ZYDIS_OPERAND_ACTION_MASK_WRITE) != 0) {
      return true;
    }
  }
  return false;
}

// The qemu-i386 oracle's known deviations from the hardware, each masked only in its exact case
// (the interpreter must show the SDM's value; QEMU's differs in just that field) and counted:
//   - "RF in a fault's EFLAGS": the SDM (vol. 3A 17.3.1.1) has the processor set RF in the
//     EFLAGS image of a fault-class exception; QEMU linux-user builds the signal frame from its
//     own EFLAGS, which never hold RF (the 64-bit host oracle shows RF there).
//   - "#PF W bit on a read-modify-write": the SDM (vol. 3A 4.7) sets W/R = 1 when the access
//     causing the fault was a write; a read-modify-write instruction (ADD/XCHG/XADD/BTS/... to
//     memory) faults on a not-present page with W = 1 on hardware (the host oracle of the
//     64-bit half checks it), while QEMU's TCG performs the load first and its
//     x86_cpu_record_sigsegv reports that load: W = 0.
// `count`: count the masks applied (once per sequence, not once per interpreter run).
void qemu_masks(const Sequence& s, long idx, Outcome& nat, const Outcome& emu, bool count,
                Totals& t) {
  constexpr uint64_t kRf = 1u << 16;
  if (nat.faulted && emu.faulted && nat.vector == emu.vector && (emu.rflags & kRf) != 0 &&
      (nat.rflags & kRf) == 0) {
    nat.rflags |= kRf;
    if (count) ++t.masked["RF in a fault's EFLAGS"];
  }
  constexpr uint64_t kPfW = 2;
  if (nat.faulted && emu.faulted && nat.vector == 14 && emu.vector == 14 &&
      emu.error == (nat.error | kPfW) && (nat.error & kPfW) == 0 && is_memory_rmw(s, idx)) {
    nat.error |= kPfW;
    if (count) ++t.masked["#PF W bit on a read-modify-write"];
  }
}

// False when the oracle failed (reported as a test failure).
bool run_batch(const std::vector<Sequence>& seqs, const Oracle& oracle, GuestRunner& guest,
               Totals& t, bool verbose, const char* test) {
  std::vector<Outcome> nat;
  const std::string err = oracle.kind == Oracle::kQemuI386
                              ? run_qemu_i386(oracle.qemu, oracle.child, seqs, nat)
                              : run_native(seqs, nat);
  EXPECT_TRUE(err.empty()) << err << " (first seed " << seqs.front().seed << ")";
  if (!err.empty()) return false;
  Outcome emu;
  for (size_t i = 0; i < seqs.size(); ++i) {
    const Sequence& s = seqs[i];
    ++t.sequences;
    if (s.qemu_tb_breaks != 0) t.masked["JMP +0 before CMPXCHG8B (stale CC_OP)"] += 1;
    if (nat[i].faulted) ++t.faults[nat[i].vector];
    // Two interpreter runs: to the INT3 end marker / first fault (state from the exception
    // frame), and, when the instruction count is known, run(budget) with the state read from
    // Cpu::state() as the platform reads it. Against qemu-i386, which runs the bytes in legacy
    // protected mode, both again with the interpreter in legacy protected mode.
    for (const GuestRunner::Mode mode :
         {GuestRunner::Mode::kNative, GuestRunner::Mode::kLegacy32}) {
      const bool legacy = mode == GuestRunner::Mode::kLegacy32;
      if (legacy && oracle.kind != Oracle::kQemuI386) break;
      for (const bool budget : {false, true}) {
        // (The instruction count is exact only without REP iterations and skipped instructions.)
        const bool inexact = s.has_rep || std::find(s.maybe_skipped.begin(), s.maybe_skipped.end(),
                                                    1) != s.maybe_skipped.end();
        if (budget && (nat[i].faulted || inexact)) break;
        const std::string gerr = budget ? guest.run_budget(s, emu, mode) : guest.run(s, emu, mode);
        long idx = -1;
        Outcome ref = nat[i];
        if (oracle.kind == Oracle::kQemuI386) {
          compare(s, ref, emu, &idx);
          qemu_masks(s, idx, ref, emu, !legacy && !budget, t);
        }
        std::string diff = compare(s, ref, emu, &idx);
        if (!gerr.empty()) diff = "  " + gerr + "\n" + diff;
        if (!budget && idx >= 0) {
          // Instructions before the end / the fault, less any a taken branch may have skipped.
          uint64_t& n = legacy ? t.instructions_legacy : t.instructions;
          for (long k = 0; k < idx; ++k) n += s.maybe_skipped[static_cast<size_t>(k)] ? 0 : 1;
        }
        if (!diff.empty()) ++t.mismatches;
        if (diff.empty() ? !verbose : t.mismatches > kMaxReported) continue;
        std::string msg =
            "seed " + std::to_string(s.seed) +
            (budget ? " (run(budget), state())" : " (to INT3 / fault)") +
            (legacy       ? " [interpreter in legacy protected mode]"
             : s.compat32 ? " [interpreter in compatibility mode]"
                          : "") +
            (diff.empty() ? ": equal\n" : ": MISMATCH\n") + disassemble(s, idx) + "  " +
            g_oracle_name + ":" + std::string(12 - std::strlen(g_oracle_name), ' ') +
            describe(ref) + "\n  interpreter: " + describe(emu) + "\n" + diff +
            "  reproduce: APICV_DIFF_SEED=" + std::to_string(s.seed) +
            " cpu_cpu_differential_test --gtest_filter='CpuDifferential." + test + "'\n";
        if (diff.empty()) {
          std::printf("%s", msg.c_str());
        } else {
          ADD_FAILURE() << msg;
        }
      }
    }
  }
  return true;
}

// The oracle for 32-bit code, in this order: the host CPU in compatibility mode if the host
// kernel lets user code far-jump to its 32-bit code segment; else qemu-i386 if installed; else
// none (prints NOT EVALUATED with the reason and returns false). APICV_DIFF_ORACLE=host or
// =qemu forces one (qemu: to exercise the QEMU oracle on a host that has both).
bool choose_oracle32(uint64_t probe_seed, Oracle& oracle) {
  const char* force = std::getenv("APICV_DIFF_ORACLE");
  const std::string forced = force != nullptr ? force : "";
  std::string why;
  if (forced != "qemu") {
    const std::vector<Sequence> probe{Generator(probe_seed, true).generate(kItemsPerSequence)};
    std::vector<Outcome> out;
    const std::string err = run_native(probe, out);
    if (!err.empty()) {
      ADD_FAILURE() << err << " (probing the host with seed " << probe_seed << ")";
      return false;
    }
    if (!(out[0].faulted && out[0].rip == kCodeVa + kEnter32Off)) {
      oracle.kind = Oracle::kHost;
      g_oracle_name = "native";
      std::printf(
          "32-bit oracle: the host CPU (compatibility mode: far jump to the host's 32-bit user "
          "code segment %#x)\n",
          kLinuxUser32Cs);
      return true;
    }
    why = "the host kernel refuses the far jump to its 32-bit user code segment " +
          hex(kLinuxUser32Cs) + " (vector " + std::to_string(out[0].vector) + ")";
    if (forced == "host") {
      std::printf("compatibility mode: NOT EVALUATED (%s; APICV_DIFF_ORACLE=host)\n", why.c_str());
      return false;
    }
  } else {
    why = "APICV_DIFF_ORACLE=qemu";
  }
  oracle.qemu = find_qemu_i386();
  if (oracle.qemu.empty()) {
    std::printf(
        "32-bit code: NOT EVALUATED (%s, and qemu-i386 is not on PATH: Debian package "
        "qemu-user)\n",
        why.c_str());
    return false;
  }
  oracle.child = APICV_DIFF_CHILD_I386;
  if (::access(oracle.child.c_str(), R_OK) != 0) {
    ADD_FAILURE() << "the i386 child " << oracle.child << " was not built";
    return false;
  }
  oracle.kind = Oracle::kQemuI386;
  g_oracle_name = "qemu-i386";
  std::printf(
      "32-bit oracle: %s running %s (QEMU user-mode TCG, legacy 32-bit protected mode at CPL 3: "
      "an emulator, not hardware; its known deviations are masked and counted), because %s\n",
      oracle.qemu.c_str(), oracle.child.c_str(), why.c_str());
  return true;
}

void run_test(bool compat32, uint64_t ci_sequences, uint64_t ci_instructions, const char* test) {
  const char* one = std::getenv("APICV_DIFF_SEED");
  const char* count = std::getenv("APICV_DIFF_COUNT");
  if (const char* rep = std::getenv("APICV_DIFF_REPORT"))
    kMaxReported = std::strtoull(rep, nullptr, 0);
  uint64_t first = 1, n = ci_sequences;
  if (one != nullptr) {
    first = std::strtoull(one, nullptr, 0);
    n = 1;
  } else if (count != nullptr) {
    n = std::strtoull(count, nullptr, 0);
  }
  const auto t0 = std::chrono::steady_clock::now();
  Oracle oracle;
  if (compat32 && !choose_oracle32(first, oracle)) return;
  GuestRunner guest;
  Totals t;
  std::vector<Sequence> batch;
  for (uint64_t seed = first; seed < first + n; ++seed) {
    batch.push_back(
        Generator(seed, compat32, oracle.kind == Oracle::kQemuI386).generate(kItemsPerSequence));
    if (batch.size() == kBatch || seed + 1 == first + n) {
      if (!run_batch(batch, oracle, guest, t, one != nullptr, test)) return;
      batch.clear();
    }
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::string faults;
  for (const auto& [v, c] : t.faults) faults += " #" + std::to_string(v) + "=" + std::to_string(c);
  std::string masked;
  for (const auto& [m, c] : t.masked) masked += " " + m + ": " + std::to_string(c) + ";";
  std::printf("differential %s (oracle %s): %" PRIu64 " sequences, %" PRIu64
              " instructions compared, %" PRIu64 " mismatches, faults:%s, %.1f s\n",
              test, g_oracle_name, t.sequences, t.instructions, t.mismatches, faults.c_str(), secs);
  if (oracle.kind == Oracle::kQemuI386) {
    std::printf("the same sequences with the interpreter in legacy 32-bit protected mode: %" PRIu64
                " instructions compared\n",
                t.instructions_legacy);
    std::printf("masked QEMU deviations (sequences):%s\n",
                masked.empty() ? " none" : masked.c_str());
  }
  EXPECT_EQ(t.mismatches, 0u);
  if (one == nullptr && count == nullptr) {
    if (kFullCount) {
      EXPECT_GE(t.instructions, ci_instructions);
    } else {
      std::printf("%" PRIu64
                  "-instruction target: NOT EVALUATED (Debug/sanitizer build runs %" PRIu64
                  " sequences; the optimised build asserts it)\n",
                  ci_instructions, ci_sequences);
    }
  }
}

TEST(CpuDifferential, LongMode64Ring3) {
  run_test(false, kCiSequences, 1000000, "LongMode64Ring3");
}

// 32-bit code: the interpreter runs the bytes with CS.L = 0, CS.D = 1 (compatibility mode); the
// oracle is the host CPU in compatibility mode or, where the host refuses 32-bit code, qemu-i386
// (see the file header). The 250,000-instruction floor holds for either oracle.
TEST(CpuDifferential, CompatMode32Ring3) {
  run_test(true, kCiSequences / 4, 250000, "CompatMode32Ring3");
}

}  // namespace
}  // namespace apicv::cpu::difftest
