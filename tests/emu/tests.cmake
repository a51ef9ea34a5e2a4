# -accel emu end-to-end checks (issue 13). The guests themselves run under emu from
# tests/guests/tests.cmake (the *_emu tests).
set(APICV_EMU_OUT ${CMAKE_CURRENT_BINARY_DIR}/emu-out)

# Determinism: same seed twice -> identical serial + trace; with 4 vCPUs another seed -> a
# different trace; with one vCPU another seed -> the same trace (events at fixed virtual times).
apicv_add_checked_test(NAME emu_determinism_smp4 RUN_SERIAL TIMEOUT 600
  EXPECT "^PASS: smp4 is deterministic and seeded$"
  COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/tests/emu/determinism.sh $<TARGET_FILE:apicv>
          ${APICV_EMU_OUT} smp4 1 2 differ -- --guest smp -smp 4)
apicv_add_checked_test(NAME emu_determinism_pit_extint RUN_SERIAL TIMEOUT 600
  EXPECT "^PASS: pit_extint is deterministic and seeded$"
  COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/tests/emu/determinism.sh $<TARGET_FILE:apicv>
          ${APICV_EMU_OUT} pit_extint 1 2 same -- --guest pit-extint -append ticks=200)

# The lost wake-up detector: CLI; HLT with nothing armed is reported (exit 125), not waited out.
apicv_add_checked_test(NAME emu_lost_wakeup_detected TIMEOUT 120
  EXPECT "^PASS: lost wake-up detected$"
  COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/tests/emu/lost_wakeup.sh $<TARGET_FILE:apicv>
          ${APICV_EMU_OUT})

# Option errors: --irqchip kvm needs -accel kvm; thread=multi (real time) refuses the virtual-time
# options; -accel help lists both accelerators and both emu modes.
apicv_add_checked_test(NAME emu_rejects_kvm_irqchip RC 2
  EXPECT "needs -accel kvm"
  COMMAND $<TARGET_FILE:apicv> run -accel emu --irqchip kvm --guest apic)
apicv_add_checked_test(NAME emu_multi_rejects_sched_seed RC 2
  EXPECT "^apicv: --sched-seed configures virtual time and is invalid with -accel emu,thread=multi"
  COMMAND $<TARGET_FILE:apicv> run -accel emu,thread=multi --sched-seed 3 --guest apic)
apicv_add_checked_test(NAME emu_rejects_unknown_thread_mode RC 2
  EXPECT "unknown option 'thread=mttcg'"
  COMMAND $<TARGET_FILE:apicv> run -accel emu,thread=mttcg --guest apic)
apicv_add_checked_test(NAME emu_accel_help
  EXPECT "^  kvm " "^  emu " "^ +thread=multi "
  COMMAND $<TARGET_FILE:apicv> run -accel help)
