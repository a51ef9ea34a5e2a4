# Bad command lines (issue 4, "Bad input"): each must be rejected before any guest runs, with one
# line "apicv: ..." on stderr and exit status 2. No /dev/kvm needed. Arguments are separated by |.
function(apicv_usage_error_test name args expect)
  add_test(NAME cli_bad_${name}
           COMMAND ${CMAKE_COMMAND} -DAPICV=$<TARGET_FILE:apicv> "-DARGS=${args}"
                   "-DEXPECT=${expect}" -P ${CMAKE_CURRENT_LIST_DIR}/expect_usage_error.cmake)
  set_tests_properties(cli_bad_${name} PROPERTIES TIMEOUT 90)
endfunction()

set(_nodir "${CMAKE_CURRENT_BINARY_DIR}/no-such-dir/out.json")
# apicv repro
apicv_usage_error_test(repro_unknown_seed "repro|seed-999" "unknown scenario 'seed-999'")
apicv_usage_error_test(repro_no_seed "repro" "missing scenario")
apicv_usage_error_test(repro_ticks_zero "repro|seed-000|--ticks|0"
                       "--ticks: expected an integer in 20\\.\\.100000, got '0'")
apicv_usage_error_test(repro_ticks_huge "repro|seed-000|--ticks|100000001"
                       "--ticks: expected an integer in 20\\.\\.100000")
apicv_usage_error_test(repro_ticks_junk "repro|seed-000|--ticks|12abc"
                       "--ticks: expected an integer")
apicv_usage_error_test(repro_vm_option "repro|seed-000|--vendor|vmx"
                       "repro: unexpected argument '--vendor'")
apicv_usage_error_test(repro_json_no_dir "repro|all|--json|${_nodir}" "--json: cannot write")
apicv_usage_error_test(repro_synthetic_seed000 "repro|seed-000|--backend|synthetic"
                       "repro: seed-000 needs /dev/kvm. --backend synthetic supports seed-002 only")
apicv_usage_error_test(repro_bad_backend "repro|seed-002|--backend|qemu"
                       "repro: --backend: expected kvm\\|synthetic, got 'qemu'")
apicv_usage_error_test(repro_json_dir "repro|seed-000|--json|${CMAKE_CURRENT_BINARY_DIR}"
                       "--json: cannot write")
# apicv run: invalid combinations and values
apicv_usage_error_test(run_vmx_avic_kick "run|--guest|pit-extint|--vendor|vmx|--avic-kick|fast"
                       "--avic-kick is an AVIC \\(svm\\) option and is invalid with --vendor vmx")
apicv_usage_error_test(run_avic_kick_vmx "run|--guest|pit-extint|--avic-kick|slow|--vendor|vmx"
                       "--avic-kick is an AVIC \\(svm\\) option")
apicv_usage_error_test(run_split_pit_policy
  "run|--guest|pit-extint|-machine|kernel-irqchip=split|-global|kvm-pit.lost_tick_policy=delay"
  "lost_tick_policy needs the in-kernel PIT \\(kernel-irqchip=on\\)")
apicv_usage_error_test(run_off_pit_policy
  "run|--guest|pit-extint|-global|kvm-pit.lost_tick_policy=discard|-machine|kernel-irqchip=off"
  "lost_tick_policy needs the in-kernel PIT")
apicv_usage_error_test(run_kvm_irqchip_layer_option
  "run|--guest|pit-extint|--irqchip|kvm|--irqwin|counted" "--irqwin .*needs --irqchip apicv")
apicv_usage_error_test(run_bad_irqwin "run|--guest|pit-extint|--irqwin|sometimes"
                       "--irqwin: expected counted\\|legacy, got 'sometimes'")
apicv_usage_error_test(run_smp_zero "run|--guest|smp|-smp|0" "-smp: expected an integer in 1\\.\\.288")
apicv_usage_error_test(run_smp_huge "run|--guest|smp|-smp|289" "-smp: expected an integer in 1\\.\\.288")
apicv_usage_error_test(run_timeout_zero "run|--guest|pit-extint|--timeout|0" "--timeout: out of range")
apicv_usage_error_test(run_unknown_guest "run|--guest|no-such-guest" "no built-in guest 'no-such-guest'")
apicv_usage_error_test(run_no_kernel "run|-smp|2" "give exactly one of -kernel FILE and --guest NAME")
apicv_usage_error_test(run_unknown_option "run|--guest|pit-extint|--bogus" "unknown option '--bogus'")
apicv_usage_error_test(run_missing_value "run|--guest|pit-extint|-smp" "-smp: missing value")
apicv_usage_error_test(run_trace_no_dir "run|--guest|pit-extint|--trace|${_nodir}" "--trace: cannot open")
# apicv bench irqwin-guest
apicv_usage_error_test(bench_irqwin_repeat_zero "bench|irqwin-guest|--repeat|0"
                       "--repeat: expected an integer in 1\\.\\.50")
apicv_usage_error_test(bench_irqwin_ticks_small "bench|irqwin-guest|--ticks|5"
                       "--ticks: expected an integer in 20\\.\\.100000")
apicv_usage_error_test(bench_irqwin_json_no_dir "bench|irqwin-guest|--json|${_nodir}"
                       "--json: cannot write")
apicv_usage_error_test(bench_irqwin_vm_option "bench|irqwin-guest|--irqwin|counted"
                       "unexpected argument '--irqwin'")
# Errors CLI11 itself raises (unknown option, missing value, no subcommand) follow the same rule.
apicv_usage_error_test(cli11_unknown_option "bench|inhibit|--bogus"
                       "The following argument was not expected: --bogus")
apicv_usage_error_test(cli11_missing_value "bench|inhibit|--repeat" "--repeat: 1 required")
apicv_usage_error_test(cli11_no_subcommand "bench" "A subcommand is required")
apicv_usage_error_test(bench_inhibit_threads_zero "bench|inhibit|--threads|0"
                       "--threads values must be 1\\.\\.1024")
