# End-to-end smoke run of `apicv bench route`: the CLI, the benchmark runner and the JSON writer,
# on two runs picked by --filter. The time-independent check runs on what was selected (the fast
# path examined 1 APIC entry); every target whose runs the filter left out is NOT EVALUATED, and
# the last line counts them. No timing is judged (none of the ratio's runs is selected).
apicv_add_checked_test(NAME irq_bench_route_smoke TIMEOUT 120
  EXPECT "^PASS fast path examines 1 APIC entry per delivery at every size \\(1 runs\\)$"
         "^NOT EVALUATED slow matcher examines every vCPU per delivery: route/slow/\\* not run \\(excluded by --filter"
         "^NOT EVALUATED fast path 1024 vCPUs within 1.5x of 1 vCPU: route/fast/physical/1024 not run"
         "^route: evaluated targets met \\(1 passed, 0 failed, 0 reported, 3 not evaluated\\)$"
  REJECT "FAIL|^PASS.*1024"
  FILE ${CMAKE_CURRENT_BINARY_DIR}/route_smoke.json
  FILE_EXPECT "\"name\": \"route/fast/physical/1\"," "\"name\": \"route/highest_irr\","
  COMMAND $<TARGET_FILE:apicv> bench route --min-time 0.01
          --filter "^route/(highest_irr|fast/physical/1)$"
          --json ${CMAKE_CURRENT_BINARY_DIR}/route_smoke.json)
