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

# Issue 14 items 1 and 2: `apicv trace` reads trace-cmd's trace.dat and perf's text. The fixtures
# (tests/trace/fixtures/) hold one list of kvm events in every format: ftrace text (5.19 and 6.12
# bodies), perf script, perf trace, a perf kvm stat table (make_text_fixtures.py) and trace.dat
# files written by make_tracedat.cc with libtracecmd's output API (5.19 formats as file version 6,
# 6.12 formats as version 7 plain and zstd, and the 5.19 v6 file converted by `trace-cmd convert`
# to version 7 zstd). Every format must give the same figures as the ftrace text; the figures in
# EXPECT were counted by hand from kvm_events.ftrace.txt (45 lines; 6 kvm_apicv_inhibit_changed,
# IRQWIN set 3 / cleared 3 under PIT_REINJ from 100.000110 to 100.020117; 13 kvm_exit: interrupt,
# vintr, avic_unaccelerated_access, hlt 3 each, npf 1).
add_executable(make_tracedat ${CMAKE_CURRENT_SOURCE_DIR}/tests/trace/fixtures/make_tracedat.cc)
target_link_libraries(make_tracedat PRIVATE PkgConfig::TRACECMD)

set(_tf ${CMAKE_CURRENT_SOURCE_DIR}/tests/trace/fixtures)
set(_tin ${CMAKE_CURRENT_SOURCE_DIR}/tests/trace/trace_input_ctest.cmake)
set(_tfig "lines: 45 read, 6 kvm_apicv_inhibit_changed, 0 comments, 39 other&&transitions: 6 after&&\n +8  IRQWIN +3 +3\n&&0x200 +PIT_REINJ +3\n&&0x300 +IRQWIN.PIT_REINJ +3\n&&CPU 0/KVM-4711 +6\n&&exits: 13 kvm_exit lines\n&&verdict: seed-000 signature PRESENT: IRQWIN \\(reason 8\\) set 3 and cleared 3 times while PIT_REINJ \\(bit 9\\) stays set in both masks, 149.948 IRQ windows/s over 0.020007 s")
set(_tfig612 "${_tfig}&&format: 6 lines with reason names&&time span: 100.000110 .. 100.020117 \\(0.020007 s\\), 299.895 lines/s&&\\[002\\] +6\n")
set(_tfig519 "${_tfig}&&format: 0 lines with reason names \\(2024\\+\\), 6 without")

# One line "apicv: ..." and exit 2 (tests/cli/expect_usage_error.cmake, as the cli_bad_* tests).
function(apicv_trace_bad_input name args expect)
  add_test(NAME cli_bad_${name}
           COMMAND ${CMAKE_COMMAND} -DAPICV=$<TARGET_FILE:apicv> "-DARGS=${args}"
                   "-DEXPECT=${expect}" -P ${CMAKE_CURRENT_SOURCE_DIR}/tests/cli/expect_usage_error.cmake)
  set_tests_properties(cli_bad_${name} PROPERTIES TIMEOUT 90)
endfunction()

function(apicv_trace_input_test name mode)
  add_test(NAME ${name} COMMAND ${CMAKE_COMMAND} -DAPICV=$<TARGET_FILE:apicv> -DMODE=${mode}
                                ${ARGN} -P ${_tin})
  set_tests_properties(${name} PROPERTIES TIMEOUT 120)
endfunction()

# Item 2: perf's text, same figures as ftrace's. perf trace prints times relative to its first
# event and no CPU: the span, not the absolute times, and the CPU table are left out there.
apicv_trace_input_test(trace_input_perf_script_same_figures same -DA=${_tf}/kvm_events.ftrace.txt
  -DB=${_tf}/kvm_events.perf-script.txt "-DEXPECT=${_tfig612}")
apicv_trace_input_test(trace_input_perf_trace_same_figures same -DA=${_tf}/kvm_events.ftrace.txt
  -DB=${_tf}/kvm_events.perf-trace.txt "-DEXPECT=${_tfig612}"
  "-DIGNORE=time span: [0-9.]+ \\.\\. [0-9.]+ &&cpus:\n(  [^\n]*\n)+")
apicv_trace_input_test(trace_input_perf_kvm_stat_exits exits -DA=${_tf}/kvm_events.ftrace.txt
  -DB=${_tf}/kvm_events.perf-kvm-stat.txt
  "-DEXPECT=  avic_unaccelerated_access +3\n  hlt +3\n  interrupt +3\n  vintr +3\n  npf +1\n")
apicv_trace_test(trace_input_perf_kvm_stat_only 0 "trace|summary|${_tf}/kvm_events.perf-kvm-stat.txt"
  "exits: 13 samples in a perf kvm stat VM-EXIT table&&0 kvm_apicv_inhibit_changed&&verdict: seed-000 signature absent")

# Item 1: trace.dat, same figures as the text of the same events.
apicv_trace_input_test(trace_input_tracedat_v6_5_19_same_figures same
  -DA=${_tf}/kvm_events.ftrace-5.19.txt -DB=${_tf}/kvm_events-5.19-v6.dat "-DEXPECT=${_tfig519}")
apicv_trace_input_test(trace_input_tracedat_v7_6_12_same_figures same
  -DA=${_tf}/kvm_events.ftrace.txt -DB=${_tf}/kvm_events-6.12-v7.dat "-DEXPECT=${_tfig612}")
apicv_trace_input_test(trace_input_tracedat_v7_zstd_same_figures same
  -DA=${_tf}/kvm_events.ftrace.txt -DB=${_tf}/kvm_events-6.12-v7-zstd.dat "-DEXPECT=${_tfig612}")
apicv_trace_input_test(trace_input_tracedat_converted_same_figures same
  -DA=${_tf}/kvm_events.ftrace-5.19.txt -DB=${_tf}/kvm_events-5.19-v7-zstd-converted.dat
  "-DEXPECT=${_tfig519}")
apicv_trace_test(trace_input_tracedat_diff_text 0
  "trace|diff|${_tf}/kvm_events.ftrace.txt|${_tf}/kvm_events-6.12-v7-zstd.dat"
  "transitions: agree: 6 equal&&IRQ-window rate: agree: IRQWIN set lines per PIT tick: a 3/3 = 1.000, b 3/3 = 1.000&&result: MATCH")
# The committed trace.dat files hold the text fixture's events by trace-cmd's own reading, and the
# generator still writes files that read the same.
foreach(dat kvm_events-5.19-v6 kvm_events-6.12-v7 kvm_events-6.12-v7-zstd)
  string(REGEX MATCH "5\\.19" _old "${dat}")
  set(_text ${_tf}/kvm_events.ftrace.txt)
  if(_old)
    set(_text ${_tf}/kvm_events.ftrace-5.19.txt)
  endif()
  apicv_trace_input_test(trace_input_${dat}_trace_cmd_report report -DDAT=${_tf}/${dat}.dat
    -DTEXT=${_text})
endforeach()
apicv_trace_input_test(trace_input_tracedat_regenerated regen -DGEN=$<TARGET_FILE:make_tracedat>
  -DTEXT=${_tf}/kvm_events.ftrace.txt -DKERNEL=6.12 -DVERSION=7 -DCOMPRESSION=zstd
  -DOUT=${CMAKE_CURRENT_BINARY_DIR}/regenerated-6.12-v7-zstd.dat "-DEXPECT=${_tfig612}")

# Bad input: one line "apicv: ...", exit 2.
apicv_trace_bad_input(trace_dat_truncated_headers "trace|summary|${_tf}/bad-truncated-headers.dat"
  "bad-truncated-headers.dat: truncated or corrupt trace.dat")
apicv_trace_bad_input(trace_dat_truncated_data "trace|summary|${_tf}/bad-truncated-data.dat"
  "bad-truncated-data.dat: (truncated or )?corrupt trace.dat")
apicv_trace_bad_input(trace_dat_no_kvm_events "trace|summary|${_tf}/bad-no-kvm-events.dat"
  "bad-no-kvm-events.dat: no kvm events in this trace.dat \\(record them: trace-cmd record -e kvm\\)")
apicv_trace_bad_input(trace_dat_unknown_format "trace|summary|${_tf}/bad-unknown-inhibit-format.dat"
  "unknown event format version: kvm:kvm_apicv_inhibit_changed has no field 'set'")
apicv_trace_bad_input(trace_dat_file_version_9 "trace|summary|${_tf}/bad-file-version-9.dat"
  "trace.dat file version '9' is not supported \\(6 and 7 are\\)")
apicv_trace_bad_input(trace_dat_diff_unknown_format
  "trace|diff|${_tf}/kvm_events.ftrace.txt|${_tf}/bad-unknown-inhibit-format.dat"
  "unknown event format version")
apicv_trace_bad_input(trace_input_unreadable_path "trace|summary|${CMAKE_CURRENT_SOURCE_DIR}/README.md/trace.dat"
  "README.md/trace.dat: cannot open: Not a directory")
file(WRITE ${CMAKE_CURRENT_BINARY_DIR}/perf_script_no_cpu.txt
  "       CPU 0/KVM    4711   100.000110: kvm:kvm_apicv_inhibit_changed: set reason=8, inhibits=0x300 IRQWIN|PIT_REINJ\n")
apicv_trace_bad_input(trace_input_perf_script_no_cpu
  "trace|summary|${CMAKE_CURRENT_BINARY_DIR}/perf_script_no_cpu.txt"
  "perf_script_no_cpu.txt:1:[0-9]+: missing the \"\\[cpu\\]\" column")
file(WRITE ${CMAKE_CURRENT_BINARY_DIR}/perf_trace_bad_reason.txt
  "     0.010 CPU 0/KVM/4711 kvm:kvm_apicv_inhibit_changed(reason: 99, set: 1, inhibits: 768)\n")
apicv_trace_bad_input(trace_input_perf_trace_bad_reason
  "trace|summary|${CMAKE_CURRENT_BINARY_DIR}/perf_trace_bad_reason.txt"
  "perf_trace_bad_reason.txt:1:[0-9]+: reason out of range")
file(WRITE ${CMAKE_CURRENT_BINARY_DIR}/perf_kvm_stat_bad_total.txt
  "             VM-EXIT    Samples  Samples%     Time%    Min Time    Max Time         Avg time\n\n                 hlt          3    75.00%    75.00%      1.00us      9.00us      3.00us ( +-   0.00% )\n                 npf          1    25.00%    25.00%      1.00us      9.00us      3.00us ( +-   0.00% )\n\nTotal Samples:5, Total events handled time:12.00us.\n")
apicv_trace_bad_input(trace_input_perf_kvm_stat_bad_total
  "trace|summary|${CMAKE_CURRENT_BINARY_DIR}/perf_kvm_stat_bad_total.txt"
  "perf_kvm_stat_bad_total.txt:6:[0-9]+: the perf kvm stat rows add up to 4 samples, \"Total Samples\" says 5")
# A mutated trace.dat on which libtracecmd itself crashes (found by mutating kvm_events-5.19-v6.dat):
# the crash happens in the sandboxed child; apicv reports it as bad input. Under ASan/TSan the
# runtime catches the signal in the child and exits non-zero instead ("failed").
apicv_trace_bad_input(trace_dat_crashes_libtracecmd "trace|summary|${_tf}/bad-crashes-libtracecmd.dat"
  "bad-crashes-libtracecmd.dat: corrupt trace.dat: the reader process (died \\(Segmentation fault|failed)")

# Item 3 on an imported host trace.dat: the same timeline as from the ftrace text of the events.
apicv_add_checked_test(NAME timeline_export_tracedat_same_as_text
  COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/timeline_export_same.sh $<TARGET_FILE:apicv>
          $<TARGET_FILE:trace_json_check> ${_tf}/kvm_events.ftrace.txt
          ${_tf}/kvm_events-6.12-v7-zstd.dat ${CMAKE_CURRENT_BINARY_DIR}/timeline_tracedat
  EXPECT "^same timeline: [1-9][0-9]* events, [1-9][0-9]* threads \\([1-9] vCPUs\\)" "^schema: valid$")
# ... and from perf script's text of the same events (perf_text.h rewrites each line as ftrace's).
apicv_add_checked_test(NAME timeline_export_perf_script_same_as_text
  COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/timeline_export_same.sh $<TARGET_FILE:apicv>
          $<TARGET_FILE:trace_json_check> ${_tf}/kvm_events.ftrace.txt
          ${_tf}/kvm_events.perf-script.txt ${CMAKE_CURRENT_BINARY_DIR}/timeline_perf_script
  EXPECT "^same timeline: [1-9][0-9]* events, [1-9][0-9]* threads \\([1-9] vCPUs\\)" "^schema: valid$")
