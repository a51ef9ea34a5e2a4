# The timeline export's schema checks (nlohmann-json3-dev, tests only) and its end-to-end ctests.
find_package(nlohmann_json 3 REQUIRED)
target_link_libraries(trace_timeline_export_test PRIVATE nlohmann_json::nlohmann_json)
add_executable(trace_json_check ${CMAKE_CURRENT_LIST_DIR}/trace_json_check.cc)
target_link_libraries(trace_json_check PRIVATE nlohmann_json::nlohmann_json)

# `apicv run -accel emu --guest smp -smp 4 --trace-json`: valid, one track per vCPU, IPI flows.
apicv_add_checked_test(NAME timeline_smp_4_emu
  COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/timeline_run.sh $<TARGET_FILE:apicv>
          $<TARGET_FILE:trace_json_check> ${CMAKE_CURRENT_BINARY_DIR}/timeline_smp_4_emu.json
  EXPECT "^vCPU tracks: 4$" "^IPI flows: [1-9][0-9]*$" "^slices 'halt': [1-9]" "^schema: valid$"
  TIMEOUT 600 RUN_SERIAL)
# `apicv trace export` of the seed-000 host trace (kernel ftrace text, microseconds).
apicv_add_checked_test(NAME timeline_export_seed000_host
  COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/timeline_export.sh $<TARGET_FILE:apicv>
          $<TARGET_FILE:trace_json_check> ${CMAKE_SOURCE_DIR}/tests/data/seed000_host_trace.txt
          ${CMAKE_CURRENT_BINARY_DIR}/timeline_seed000_host.json
  EXPECT "^wrote .*timeline_seed000_host.json: [0-9]+ events" "^counter events: [1-9]"
         "^schema: valid$")
