# CTest registration helpers for end-to-end runs of the apicv binary (issue 10, items 3-4).
# A test passes on its exit status AND its output, never on a regex alone: both go through
# tests/run_checked.sh. Exit 77 means "cannot run here" and is reported as skipped; which tests may
# skip is written down in tests/allowed-skips.txt (checked by scripts/check-skips in CI).

set(APICV_RUN_CHECKED ${CMAKE_CURRENT_LIST_DIR}/run_checked.sh)

# apicv_add_checked_test(NAME name COMMAND cmd args... [RC n] [EXPECT ere...] [REJECT ere...]
#                        [FILE path] [FILE_EXPECT ere...] [TIMEOUT s] [RUN_SERIAL])
# RC: required exit status (default 0). EXPECT: each must match a line of the output (stdout and
# stderr, grep -E). REJECT: no output line may match. FILE/FILE_EXPECT: a file the command writes and regexes its
# lines must match.
function(apicv_add_checked_test)
  cmake_parse_arguments(T "RUN_SERIAL" "NAME;RC;FILE;TIMEOUT"
                        "COMMAND;EXPECT;REJECT;FILE_EXPECT" ${ARGN})
  if(NOT T_NAME OR NOT T_COMMAND OR T_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "apicv_add_checked_test: NAME and COMMAND are required "
                        "(unparsed: '${T_UNPARSED_ARGUMENTS}')")
  endif()
  if(NOT DEFINED T_RC)
    set(T_RC 0)
  endif()
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 300)
  endif()
  set(opts --rc ${T_RC})
  foreach(re IN LISTS T_EXPECT)
    list(APPEND opts --expect "${re}")
  endforeach()
  foreach(re IN LISTS T_REJECT)
    list(APPEND opts --reject "${re}")
  endforeach()
  if(T_FILE)
    list(APPEND opts --file "${T_FILE}")
    foreach(re IN LISTS T_FILE_EXPECT)
      list(APPEND opts --file-expect "${re}")
    endforeach()
  endif()
  add_test(NAME ${T_NAME} COMMAND bash ${APICV_RUN_CHECKED} ${opts} -- ${T_COMMAND})
  set_tests_properties(${T_NAME} PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT ${T_TIMEOUT})
  if(T_RUN_SERIAL)
    set_tests_properties(${T_NAME} PROPERTIES RUN_SERIAL TRUE)
  endif()
endfunction()

# apicv_add_guest_test(NAME name GUEST guest [IRQCHIP apicv|kvm] [ACCEL kvm] [EXPECT ere...]
#                      [ARGS apicv-run-options...])
# Boots a built-in guest with `apicv run` and passes only when the guest printed a line "PASS", no
# "FAIL:" line, and apicv exited 1 (isa-debug-exit status (0 << 1) | 1, the guest's pass status):
# a VMM error (125), a timeout (124) or a sanitizer report after the guest's PASS fails.
# `apicv run` exits 77 without an accelerator: skipped. Guest runs are RUN_SERIAL: they measure
# interrupt timing inside the guest, and a parallel test must not starve their vCPU threads on a
# 2-core machine.
# ACCEL names the accelerator, passed as `-accel ${ACCEL}`: kvm (/dev/kvm; exits 77 where it is
# absent), emu (apicv's software CPU, deterministic: runs everywhere) or emu,thread=multi (the
# software CPU with a host thread per vCPU, real time). Without ACCEL, apicv run
# picks kvm when /dev/kvm opens, else emu; tests should name theirs.
function(apicv_add_guest_test)
  cmake_parse_arguments(G "" "NAME;GUEST;IRQCHIP;ACCEL" "EXPECT;ARGS" ${ARGN})
  if(NOT G_NAME OR NOT G_GUEST OR G_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "apicv_add_guest_test: NAME and GUEST are required "
                        "(unparsed: '${G_UNPARSED_ARGUMENTS}')")
  endif()
  set(run run --guest ${G_GUEST})
  if(G_IRQCHIP)
    list(APPEND run --irqchip ${G_IRQCHIP})
  endif()
  if(G_ACCEL)
    if(NOT G_ACCEL MATCHES "^(kvm|emu|emu,thread=multi)$")
      message(FATAL_ERROR
              "apicv_add_guest_test(${G_NAME}): ACCEL must be kvm, emu or emu,thread=multi")
    endif()
    list(APPEND run -accel ${G_ACCEL})
  endif()
  list(APPEND run ${G_ARGS} --timeout 300)
  apicv_add_checked_test(NAME ${G_NAME} RC 1 RUN_SERIAL TIMEOUT 400
                         EXPECT "^PASS$" ${G_EXPECT}
                         REJECT "^FAIL:"
                         COMMAND $<TARGET_FILE:apicv> ${run})
endfunction()
