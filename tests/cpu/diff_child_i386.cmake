# The differential test's 32-bit oracle (tests/cpu/diff_qemu_i386.h): a freestanding i386 Linux
# program, compiled with -m32 and no libc (so no 32-bit multilib is needed), run under qemu-i386
# where the host kernel cannot run 32-bit code itself. Built outside the project's compile flags
# (no sanitizer can instrument it: it has no runtime), like tests/cpu/programs.
# Included from the top-level CMakeLists.txt after the tests/ loop (the target exists by then).
set(diff_child_src ${CMAKE_CURRENT_LIST_DIR}/diff_child_i386.c)
set(diff_child_out ${CMAKE_CURRENT_BINARY_DIR}/cpu_programs/diff_child_i386)
set(diff_child_werror)
if(APICV_WERROR)
  set(diff_child_werror -Werror)
endif()
add_custom_command(
  OUTPUT ${diff_child_out}
  COMMAND ${CMAKE_C_COMPILER} -m32 -ffreestanding -nostdlib -static -fno-pic -no-pie -O2 -Wall
          -Wextra ${diff_child_werror} -fno-stack-protector -fno-asynchronous-unwind-tables
          -Wl,--build-id=none -Wl,-z,noexecstack -o ${diff_child_out} ${diff_child_src}
  DEPENDS ${diff_child_src} ${CMAKE_CURRENT_LIST_DIR}/diff_i386_wire.h
  COMMENT "differential test: i386 child"
  VERBATIM)
add_custom_target(cpu_diff_child_i386 DEPENDS ${diff_child_out})
add_dependencies(cpu_cpu_differential_test cpu_diff_child_i386)
target_compile_definitions(cpu_cpu_differential_test
                           PRIVATE APICV_DIFF_CHILD_I386="${diff_child_out}")
