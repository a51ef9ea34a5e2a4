# Runs a command twice and requires the lines matching LINES (a regex) to be present and identical
# in both outputs: the deterministic part of an -accel emu benchmark (guest instructions, virtual
# time), whatever the wall time does.
# cmake -DCMD=<arguments separated by |> -DLINES=<regex> -DMIN=<lines required> -P same_twice.cmake
string(REPLACE "|" ";" cmd "${CMD}")
foreach(i 1 2)
  execute_process(COMMAND ${cmd} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc STREQUAL "0")
    message(FATAL_ERROR "run ${i}: exit status ${rc}\n${out}\n${err}")
  endif()
  string(REGEX MATCHALL "${LINES}" found${i} "${out}")
  list(LENGTH found${i} n${i})
  message(STATUS "run ${i}:\n${out}")
endforeach()
if(n1 LESS MIN)
  message(FATAL_ERROR "expected at least ${MIN} lines matching '${LINES}', got ${n1}")
endif()
if(NOT found1 STREQUAL found2)
  message(FATAL_ERROR "the two runs differ:\n${found1}\n---\n${found2}")
endif()
message(STATUS "identical in both runs: ${found1}")
