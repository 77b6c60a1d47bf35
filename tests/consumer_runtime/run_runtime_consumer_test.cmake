# Installs kdistill into a temporary prefix and builds tests/consumer_runtime against it with
# find_package(kdistill COMPONENTS runtime) while Torch is hidden from the consumer; then checks
# that the program runs, catches the runtime's kdistill::Error, and that neither it nor anything it
# loads is LibTorch.
cmake_minimum_required(VERSION 3.18)

function(step expect_rc)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL expect_rc)
    message(FATAL_ERROR "runtime consumer test: `${ARGN}` exited ${rc}, expected ${expect_rc}:\n${out}\n${err}")
  endif()
  set(last_output "${out}" PARENT_SCOPE)
endfunction()

file(REMOVE_RECURSE "${WORK_DIR}")
step(0 ${CMAKE_COMMAND} --install "${KDISTILL_BINARY_DIR}" --prefix "${WORK_DIR}/prefix")

set(launcher)
find_program(CCACHE ccache)
if(CCACHE)
  set(launcher -DCMAKE_CXX_COMPILER_LAUNCHER=${CCACHE})
endif()
step(0 ${CMAKE_COMMAND} -S "${KDISTILL_SOURCE_DIR}/tests/consumer_runtime" -B "${WORK_DIR}/build"
     -G "${GENERATOR}" -DCMAKE_BUILD_TYPE=Release "-DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix"
     -DCMAKE_DISABLE_FIND_PACKAGE_Torch=ON ${launcher})
step(0 ${CMAKE_COMMAND} --build "${WORK_DIR}/build")

step(3 "${WORK_DIR}/build/serve" "${WORK_DIR}/no-such-student.h5")
if(NOT last_output MATCHES "kdistill::Error: .*no-such-student.h5")
  message(FATAL_ERROR "runtime consumer test: expected the runtime's error for the missing file, got:\n${last_output}")
endif()

step(0 ldd "${WORK_DIR}/build/serve")
if(last_output MATCHES "libtorch|libc10")
  message(FATAL_ERROR "runtime consumer test: the serving program loads LibTorch:\n${last_output}")
endif()
if(NOT last_output MATCHES "libkdistill_runtime")
  message(FATAL_ERROR "runtime consumer test: the serving program does not load libkdistill_runtime:\n${last_output}")
endif()
message(STATUS "runtime consumer: ${last_output}")
