# The golden trace test reads its recordings from the source tree.
target_compile_definitions(synthetic_seed000_golden_test
                           PRIVATE APICV_SOURCE_DIR="${CMAKE_CURRENT_SOURCE_DIR}")
