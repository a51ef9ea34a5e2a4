# End-to-end smoke run of `apicv bench route`: the CLI, the benchmark runner and the JSON writer.
# Timing targets are not asserted here (shared CI machines); the filter leaves the checks skipped.
add_test(NAME irq_bench_route_smoke
         COMMAND apicv bench route --min-time 0.01 --filter "^route/(highest_irr|fast/physical/1)$"
                 --json ${CMAKE_CURRENT_BINARY_DIR}/route_smoke.json)
set_tests_properties(irq_bench_route_smoke PROPERTIES TIMEOUT 120 PASS_REGULAR_EXPRESSION "SKIP fast path")
