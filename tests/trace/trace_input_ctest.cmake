# ctest driver for `apicv trace` input formats (issue 14 items 1 and 2; tests/trace/tests.cmake).
# cmake -DAPICV=<binary> -DMODE=<mode> [-D...] -P trace_input_ctest.cmake
# Regex lists (EXPECT, IGNORE) are separated by "&&".
# MODE=same     `apicv trace summary` of A and of B must print the same report once the first line
#               ("trace: NAME") is dropped and every IGNORE regex is deleted from both; A's report
#               must match every EXPECT regex (figures counted by hand from the fixture).
# MODE=exits    the exit-reason rows of A's and B's summaries must be equal and match EXPECT.
# MODE=report   `trace-cmd report -N DAT` (trace-cmd's own reader, no plugins) must print the same
#               events (timestamp, event, body) as the ftrace text TEXT: the trace.dat fixture holds
#               the events of the text fixture, independently of apicv's reader.
# MODE=regen    GEN (tests/trace/fixtures/make_tracedat.cc) writes OUT from TEXT with KERNEL,
#               VERSION, COMPRESSION; then MODE=same between TEXT and OUT.

function(summary file out_var)
  execute_process(COMMAND "${APICV}" trace summary "${file}"
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 120)
  if(NOT rc STREQUAL "0")
    message(FATAL_ERROR "apicv trace summary ${file}: exit status '${rc}'\n${out}${err}")
  endif()
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

function(compare_same a b)
  summary("${a}" out_a)
  summary("${b}" out_b)
  message(STATUS "summary of ${a}:\n${out_a}")
  message(STATUS "summary of ${b}:\n${out_b}")
  require_all("${out_a}" "${EXPECT}" "summary of ${a}")
  foreach(v out_a out_b)
    string(REGEX REPLACE "^trace: [^\n]*\n" "" ${v} "${${v}}")
    string(REPLACE "&&" ";" ignores "${IGNORE}")
    foreach(re IN LISTS ignores)
      string(REGEX REPLACE "${re}" "" ${v} "${${v}}")
    endforeach()
  endforeach()
  if(NOT out_a STREQUAL out_b)
    file(WRITE "${CMAKE_CURRENT_BINARY_DIR}/same_a.txt" "${out_a}")
    file(WRITE "${CMAKE_CURRENT_BINARY_DIR}/same_b.txt" "${out_b}")
    message(FATAL_ERROR "the summaries of ${a} and ${b} differ (see same_a.txt, same_b.txt):\n"
                        "--- a\n${out_a}--- b\n${out_b}")
  endif()
endfunction()

if(MODE STREQUAL "same")
  compare_same("${A}" "${B}")
elseif(MODE STREQUAL "exits")
  summary("${A}" out_a)
  summary("${B}" out_b)
  message(STATUS "summary of ${A}:\n${out_a}\nsummary of ${B}:\n${out_b}")
  foreach(v out_a out_b)
    string(REGEX MATCH "exit reasons \\([^\n]*\n(  [^\n]*\n)+" ${v} "${${v}}")
    if(${v} STREQUAL "")
      message(FATAL_ERROR "no exit-reason section in a summary")
    endif()
  endforeach()
  require_all("${out_a}" "${EXPECT}" "exit reasons of ${A}")
  if(NOT out_a STREQUAL out_b)
    message(FATAL_ERROR "exit reasons differ:\n--- ${A}\n${out_a}--- ${B}\n${out_b}")
  endif()
elseif(MODE STREQUAL "report")
  find_program(TRACE_CMD trace-cmd)
  if(NOT TRACE_CMD)
    message(FATAL_ERROR "trace-cmd not found: run scripts/install-deps")
  endif()
  execute_process(COMMAND "${TRACE_CMD}" report -N "${DAT}" RESULT_VARIABLE rc
                  OUTPUT_VARIABLE rep ERROR_VARIABLE err TIMEOUT 60)
  if(NOT rc STREQUAL "0")
    message(FATAL_ERROR "trace-cmd report -N ${DAT}: exit status '${rc}'\n${err}")
  endif()
  file(READ "${TEXT}" txt)
  foreach(v rep txt)
    # "<ts>: <event>: <body>" of every kvm event line, with runs of spaces folded.
    string(REGEX MATCHALL "[0-9]+\\.[0-9]+: kvm_[a-z_]+: +[^\n]*" lines "${${v}}")
    set(norm "")
    foreach(l IN LISTS lines)
      string(REGEX REPLACE ": +" ": " l "${l}")
      string(APPEND norm "${l}\n")
    endforeach()
    set(${v} "${norm}")
  endforeach()
  string(REGEX MATCHALL "\n" n "${txt}")
  list(LENGTH n count)
  message(STATUS "${count} kvm events compared")
  if(count LESS 40 OR NOT rep STREQUAL txt)
    message(FATAL_ERROR "trace-cmd report -N ${DAT} differs from ${TEXT}:\n--- report\n${rep}"
                        "--- text\n${txt}")
  endif()
elseif(MODE STREQUAL "regen")
  file(REMOVE "${OUT}")
  execute_process(COMMAND "${GEN}" "${TEXT}" ${KERNEL} ${VERSION} ${COMPRESSION} "${OUT}"
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 60)
  if(NOT rc STREQUAL "0")
    message(FATAL_ERROR "make_tracedat: exit status '${rc}'\n${out}${err}")
  endif()
  compare_same("${TEXT}" "${OUT}")
else()
  message(FATAL_ERROR "unknown MODE '${MODE}'")
endif()
