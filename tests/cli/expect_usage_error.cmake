# Runs the apicv binary with bad options and requires what issue 4 asks of bad input: exit
# status 2, nothing on stdout, and exactly one line on stderr, "apicv: ..." matching EXPECT.
# cmake -DAPICV=<binary> -DARGS=<arguments separated by |> -DEXPECT=<regex> -P expect_usage_error.cmake
# The timeout catches a command that starts a guest instead of rejecting its options.
string(REPLACE "|" ";" args "${ARGS}")
execute_process(COMMAND "${APICV}" ${args}
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 60)
string(REPLACE "|" " " what "apicv ${ARGS}")
if(NOT rc STREQUAL "2")
  message(FATAL_ERROR "${what}: exit status '${rc}', expected 2\nstdout: ${out}\nstderr: ${err}")
endif()
if(NOT out STREQUAL "")
  message(FATAL_ERROR "${what}: expected no stdout, got:\n${out}")
endif()
string(REGEX MATCHALL "\n" newlines "${err}")
list(LENGTH newlines lines)
if(NOT lines EQUAL 1 OR NOT err MATCHES "\n$")
  message(FATAL_ERROR "${what}: expected exactly one line on stderr, got ${lines}:\n${err}")
endif()
if(NOT err MATCHES "^apicv: [^\n]*${EXPECT}")
  message(FATAL_ERROR "${what}: stderr does not match 'apicv: ...${EXPECT}':\n${err}")
endif()
message(STATUS "${what}: ${err}")
