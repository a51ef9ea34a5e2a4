# A skip is a decision someone wrote down (issue 10 item 9): fails when a test skipped that
# tests/allowed-skips.txt does not list, or when the list names a test that does not exist.
#   cmake -DJUNIT=<ctest --output-junit file> -DALLOWED=tests/allowed-skips.txt \
#         -P scripts/check-skips.cmake
# ctest reports a test that exited with its SKIP_RETURN_CODE (77: "cannot run here", e.g. no
# /dev/kvm) or matched SKIP_REGULAR_EXPRESSION as status="notrun" with a <skipped> element.
cmake_minimum_required(VERSION 3.25)
foreach(v JUNIT ALLOWED)
  if(NOT EXISTS "${${v}}")
    message(FATAL_ERROR "check-skips: ${v} '${${v}}' does not exist")
  endif()
endforeach()

file(STRINGS "${ALLOWED}" lines)
set(allowed)
foreach(line IN LISTS lines)
  string(REGEX REPLACE "#.*" "" line "${line}")
  string(STRIP "${line}" line)
  if(NOT line STREQUAL "")
    list(APPEND allowed "${line}")
  endif()
endforeach()

file(READ "${JUNIT}" xml)
# ';' separates CMake list items; in this file it only ends XML entities ("&lt;" in a
# value-parameterized gtest name), so it becomes ':' (names are compared as they appear in the XML).
string(REPLACE ";" ":" xml "${xml}")
string(REGEX MATCHALL "<testcase [^>]*>" cases "${xml}")
set(all)
set(skipped)
foreach(c IN LISTS cases)
  if(NOT c MATCHES "name=\"([^\"]*)\"")
    message(FATAL_ERROR "check-skips: testcase without a name in ${JUNIT}: ${c}")
  endif()
  set(name "${CMAKE_MATCH_1}")
  list(APPEND all "${name}")
  if(c MATCHES "status=\"notrun\"")
    list(APPEND skipped "${name}")
  endif()
endforeach()
list(LENGTH all n_all)
if(n_all EQUAL 0)
  message(FATAL_ERROR "check-skips: no testcase in ${JUNIT}")
endif()

set(errors "")
foreach(name IN LISTS skipped)
  if(NOT name IN_LIST allowed)
    string(APPEND errors "  ${name} skipped but is not listed in ${ALLOWED}\n")
  endif()
endforeach()
foreach(name IN LISTS allowed)
  if(NOT name IN_LIST all)
    string(APPEND errors "  ${name} is listed in ${ALLOWED} but no such test ran\n")
  endif()
endforeach()
list(LENGTH skipped n_skipped)
list(LENGTH allowed n_allowed)
if(NOT errors STREQUAL "")
  message(FATAL_ERROR "check-skips: FAIL (${n_all} tests, ${n_skipped} skipped, "
                      "${n_allowed} allowed to skip)\n${errors}")
endif()
message(STATUS "check-skips: ${n_all} tests, ${n_skipped} skipped, all listed in ${ALLOWED} "
               "(${n_allowed} allowed)")
