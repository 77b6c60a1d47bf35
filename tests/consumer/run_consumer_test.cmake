# Installs kdistill into a temporary prefix, extracts the C++ example from README.md, builds it
# as an outside project with find_package(kdistill) and runs it. Fails on any step.
cmake_minimum_required(VERSION 3.18)

function(step)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "consumer test: `${ARGN}` failed (${rc}):\n${out}\n${err}")
  endif()
  set(last_output "${out}" PARENT_SCOPE)
endfunction()

file(REMOVE_RECURSE "${WORK_DIR}")
step(${CMAKE_COMMAND} --install "${KDISTILL_BINARY_DIR}" --prefix "${WORK_DIR}/prefix")

# The installed command: a small executable that finds its command module (lib/) through its
# RUNPATH (when the build installs the command at all).
if(EXISTS "${WORK_DIR}/prefix/bin/kdistill")
  step("${WORK_DIR}/prefix/bin/kdistill" --version)
  if(NOT last_output MATCHES "^kdistill [0-9]")
    message(FATAL_ERROR "consumer test: the installed kdistill --version printed:\n${last_output}")
  endif()
endif()

file(READ "${KDISTILL_SOURCE_DIR}/README.md" readme)
set(begin_marker "<!-- readme-example:begin -->")
set(end_marker "<!-- readme-example:end -->")
string(FIND "${readme}" "${begin_marker}" b)
string(FIND "${readme}" "${end_marker}" e)
if(b EQUAL -1 OR e EQUAL -1)
  message(FATAL_ERROR "consumer test: README.md lacks the readme-example markers")
endif()
string(SUBSTRING "${readme}" ${b} -1 tail)
math(EXPR len "${e} - ${b}")
string(SUBSTRING "${readme}" ${b} ${len} block)
string(FIND "${block}" "```cpp\n" code_begin)
string(FIND "${block}" "\n```" code_end REVERSE)
math(EXPR code_begin "${code_begin} + 7")
math(EXPR code_len "${code_end} - ${code_begin} + 1")
string(SUBSTRING "${block}" ${code_begin} ${code_len} code)

file(MAKE_DIRECTORY "${WORK_DIR}/src")
file(WRITE "${WORK_DIR}/src/main.cpp" "${code}")
configure_file("${KDISTILL_SOURCE_DIR}/tests/consumer/CMakeLists.txt" "${WORK_DIR}/src/CMakeLists.txt" COPYONLY)

set(launcher)
find_program(CCACHE ccache)
if(CCACHE)
  set(launcher -DCMAKE_CXX_COMPILER_LAUNCHER=${CCACHE})
endif()
step(${CMAKE_COMMAND} -S "${WORK_DIR}/src" -B "${WORK_DIR}/build" -G "${GENERATOR}" -DCMAKE_BUILD_TYPE=Release
     "-DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix" ${launcher})
step(${CMAKE_COMMAND} --build "${WORK_DIR}/build" -j 2)
step("${WORK_DIR}/build/readme_example")
message(STATUS "README example output:\n${last_output}")
if(NOT last_output MATCHES "kd_loss")
  message(FATAL_ERROR "consumer test: the README example did not print its kd_loss line")
endif()
