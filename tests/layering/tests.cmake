# Issue 11 step 3: the layers point one way. The check runs over the real tree, and over a fixture
# with one known violation to prove it detects them.
add_test(NAME layering_lower_layers_include_no_virt_or_backend
         COMMAND ${CMAKE_COMMAND} -DROOT=${CMAKE_CURRENT_SOURCE_DIR}
                 -P ${CMAKE_CURRENT_SOURCE_DIR}/cmake/check_layering.cmake)
add_test(NAME layering_check_detects_a_violation
         COMMAND ${CMAKE_COMMAND} -DROOT=${CMAKE_CURRENT_SOURCE_DIR}/tests/layering/violation
                 -DEXPECT=src/trace/uses_virt.h
                 -P ${CMAKE_CURRENT_SOURCE_DIR}/cmake/check_layering.cmake)
