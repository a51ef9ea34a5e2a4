# End-to-end: every built-in guest under KVM's in-kernel irqchip (the oracle). Guest status 1 is
# a pass (isa-debug-exit value 0); 77 (no /dev/kvm) is a skip. The `--irqchip apicv` variants
# are added once the virtualization layer's CreateApicvIrqChip is linked into apicv.
foreach(guest apic smp ioapic pit-extint reboot)
  add_test(NAME kvm_guest_${guest}_kvm
           COMMAND sh -c "\"$0\" run --guest ${guest} -smp 4 --irqchip kvm --timeout 300 -serial none; rc=$?; [ $rc -eq 77 ] && exit 77; [ $rc -eq 1 ]"
                   $<TARGET_FILE:apicv>)
  set_tests_properties(kvm_guest_${guest}_kvm PROPERTIES TIMEOUT 600 SKIP_RETURN_CODE 77)
endforeach()
