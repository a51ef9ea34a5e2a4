# ctest driver for `apicv trace` (tests/cli/tests.cmake, tests/guests/tests.cmake).
# cmake -DAPICV=<binary> -DMODE=<mode> [-D...] -P trace_ctest.cmake
#
# Regex lists (EXPECT, VERDICT, DIFF_EXPECT) are separated by "&&" (';' would split the ctest
# command line, '|' belongs to regexes).
# MODE=rc       run `apicv ARGS` (| separated); require exit status RC and stdout matching every
#               regex in EXPECT.
# MODE=stdin    run `apicv trace summary -` with TRACE on stdin; require exit 0 and EXPECT.
# MODE=json     run `apicv trace summary TRACE --json OUT`; require OUT to match every regex in
#               EXPECT.
# MODE=run_diff boot the seed-000 configuration (pit-extint guest, svm, AVIC on,
#               kernel-irqchip=on, kvm-pit.lost_tick_policy=delay) with --irqwin IRQWIN and
#               --trace OUT, then `apicv trace summary OUT` (VERDICT regex) and
#               `apicv trace diff --align HOST OUT` (exit DIFF_RC). When `apicv run` exits 77
#               (no /dev/kvm) the first and only output is "-- SKIP: ...": the test's
#               SKIP_REGULAR_EXPRESSION is anchored at the start of the output, so nothing a
#               guest prints and no failed run can match it (CMake 3.25 cannot exit 77).
# MODE=repro_diff run `apicv repro seed-000 --ticks 100 --trace-dir OUTDIR`, then
#               `apicv trace diff --align HOST` against its first file (legacy: the same
#               transitions, exit 1: not a MATCH without workload lines in HOST)
#               and its second (counted: exit 1). "-- SKIP: ..." on exit 77, as run_diff.

function(run_apicv rc_var out_var)
  execute_process(COMMAND "${APICV}" ${ARGN}
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 600)
  string(REPLACE ";" " " what "${ARGN}")
  if(rc STREQUAL "77" AND SKIP_ON_77)
    # The only output of a skipped test (see MODE=run_diff above).
    message(STATUS "SKIP: apicv run needs /dev/kvm (${what}: ${err})")
    return()
  endif()
  message(STATUS "apicv ${what}: exit ${rc}\n${out}${err}")
  set(${rc_var} "${rc}" PARENT_SCOPE)
  set(${out_var} "${out}" PARENT_SCOPE)
endfunction()

function(require_all text regexes what)
  string(REPLACE "&&" ";" regexes "${regexes}")
  foreach(re IN LISTS regexes)
    if(NOT text MATCHES "${re}")
      message(FATAL_ERROR "${what}: no match for '${re}' in:\n${text}")
    endif()
  endforeach()
endfunction()

if(MODE STREQUAL "rc")
  string(REPLACE "|" ";" args "${ARGS}")
  run_apicv(rc out ${args})
  if(NOT rc STREQUAL "${RC}")
    message(FATAL_ERROR "apicv ${ARGS}: exit status '${rc}', expected ${RC}")
  endif()
  require_all("${out}" "${EXPECT}" "apicv ${ARGS}")
elseif(MODE STREQUAL "stdin")
  execute_process(COMMAND "${APICV}" trace summary - INPUT_FILE "${TRACE}"
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 60)
  message(STATUS "apicv trace summary - < ${TRACE}: exit ${rc}\n${out}${err}")
  if(NOT rc STREQUAL "0")
    message(FATAL_ERROR "trace summary -: exit status '${rc}'")
  endif()
  require_all("${out}" "${EXPECT}" "trace summary -")
elseif(MODE STREQUAL "json")
  file(REMOVE "${OUT}")
  run_apicv(rc out trace summary "${TRACE}" --json "${OUT}")
  if(NOT rc STREQUAL "0")
    message(FATAL_ERROR "trace summary --json: exit status '${rc}'")
  endif()
  file(READ "${OUT}" json)
  require_all("${json}" "${EXPECT}" "${OUT}")
elseif(MODE STREQUAL "run_diff")
  file(REMOVE "${OUT}")
  set(SKIP_ON_77 ON)
  run_apicv(rc out run --guest pit-extint --vendor svm --avic on -machine kernel-irqchip=on
            -global kvm-pit.lost_tick_policy=delay --irqwin ${IRQWIN} -append ticks=200
            --trace "${OUT}" --timeout 300)
  if(rc STREQUAL "77")
    return()
  endif()
  set(SKIP_ON_77 OFF)
  # A passing guest leaves through isa-debug-exit with status 1 (QEMU's (0 << 1) | 1);
  # it prints PASS, or FAIL: on a failed check.
  if(NOT rc STREQUAL "1" OR NOT out MATCHES "(^|\n)PASS\n" OR out MATCHES "(^|\n)FAIL:")
    message(FATAL_ERROR "apicv run (--irqwin ${IRQWIN}): exit status '${rc}', guest did not pass")
  endif()
  run_apicv(rc out trace summary "${OUT}")
  if(NOT rc STREQUAL "0")
    message(FATAL_ERROR "trace summary ${OUT}: exit status '${rc}'")
  endif()
  require_all("${out}" "${VERDICT}" "trace summary ${OUT}")
  run_apicv(rc out trace diff --align "${HOST}" "${OUT}")
  if(NOT rc STREQUAL "${DIFF_RC}")
    message(FATAL_ERROR "trace diff --align ${HOST} ${OUT}: exit status '${rc}', expected "
                        "${DIFF_RC}")
  endif()
  require_all("${out}" "${DIFF_EXPECT}" "trace diff")
elseif(MODE STREQUAL "repro_diff")
  file(REMOVE_RECURSE "${OUTDIR}")
  file(MAKE_DIRECTORY "${OUTDIR}")
  set(SKIP_ON_77 ON)
  run_apicv(rc out repro seed-000 --ticks 100 --trace-dir "${OUTDIR}")
  if(rc STREQUAL "77")
    return()
  endif()
  set(SKIP_ON_77 OFF)
  if(NOT rc STREQUAL "0" OR NOT out MATCHES "wrote [0-9]+ trace files to")
    message(FATAL_ERROR "apicv repro seed-000 --trace-dir: exit status '${rc}'")
  endif()
  file(GLOB legacy "${OUTDIR}/01-*.txt")
  file(GLOB counted "${OUTDIR}/02-*.txt")
  if(NOT legacy MATCHES "legacy" OR NOT counted MATCHES "counted")
    message(FATAL_ERROR "unexpected trace files: '${legacy}' '${counted}'")
  endif()
  # The same sequence; not a MATCH against the excerpt, which has no workload lines (item 8).
  run_apicv(rc out trace diff --align "${HOST}" "${legacy}")
  if(NOT rc STREQUAL "1")
    message(FATAL_ERROR "trace diff --align ${HOST} ${legacy}: exit status '${rc}', expected 1")
  endif()
  require_all("${out}" "  transitions: agree: 17 equal&&result: (DIFFER|NOT EVALUATED)"
              "trace diff legacy")
  run_apicv(rc out trace diff --align "${HOST}" "${counted}")
  if(NOT rc STREQUAL "1")
    message(FATAL_ERROR "trace diff --align ${HOST} ${counted}: exit status '${rc}', expected 1")
  endif()
else()
  message(FATAL_ERROR "unknown MODE '${MODE}'")
endif()
