# End-to-end ctests: each built-in guest under KVM's in-kernel irqchip (the oracle). The guest
# prints "PASS" or "FAIL: ..." lines on the serial port; `apicv run` exits 77 without /dev/kvm.
# (The --irqchip apicv variants are added once apicv's irqchip lands; they may add
# -append strict to make in-service checks fatal, see docs/guests.md.)
function(apicv_guest_test name guest)
  add_test(NAME ${name} COMMAND $<TARGET_FILE:apicv> run --guest ${guest} --irqchip kvm ${ARGN}
                                --timeout 300)
  set_tests_properties(${name} PROPERTIES
    PASS_REGULAR_EXPRESSION "\nPASS"
    FAIL_REGULAR_EXPRESSION "FAIL:"
    SKIP_RETURN_CODE 77
    TIMEOUT 400)
endfunction()

apicv_guest_test(guest_apic_kvm apic)
apicv_guest_test(guest_smp_kvm smp -smp 1)
apicv_guest_test(guest_smp_2_kvm smp -smp 2)
apicv_guest_test(guest_smp_4_kvm smp -smp 4)
apicv_guest_test(guest_smp_64_kvm smp -smp 64)
apicv_guest_test(guest_pit_extint_kvm pit-extint -append "ticks=200")
apicv_guest_test(guest_ioapic_kvm ioapic)
apicv_guest_test(guest_reboot_kvm reboot)
apicv_guest_test(guest_ipi_bench_kvm ipi-bench -smp 2 -append "n=100")
apicv_guest_test(guest_ipi_bench_timer_kvm ipi-bench -append "timer n=100")

# Seed 002 under apicv's irqchip (the default): one PMC0 overflow gives two PMIs with the 2023
# immediate-delivery path (legacy) and exactly one with the fix (current).
function(apicv_guest_pmu_test name mode count)
  add_test(NAME ${name} COMMAND $<TARGET_FILE:apicv> run --guest pmu --pmi-delivery ${mode}
                                --timeout 240)
  set_tests_properties(${name} PROPERTIES
    PASS_REGULAR_EXPRESSION "PMIs per overflow: ${count}\n"
    FAIL_REGULAR_EXPRESSION "FAIL:"
    SKIP_RETURN_CODE 77
    TIMEOUT 300)
endfunction()

apicv_guest_pmu_test(guest_pmu_legacy legacy 2)
apicv_guest_pmu_test(guest_pmu_current current 1)
