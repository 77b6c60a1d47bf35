# The link checker must fail on what it exists to catch: a copy of README.md and docs/ with a
# missing file, a wrong anchor and an over-long README each planted in turn.
cmake_minimum_required(VERSION 3.18)

function(expect_broken case expect)
  execute_process(COMMAND "${PYTHON}" "${SOURCE_DIR}/scripts/check_links.py" "${WORK_DIR}"
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(rc EQUAL 0 OR NOT "${out}${err}" MATCHES "${expect}")
    message(FATAL_ERROR "check_links.py missed ${case}: exit ${rc}, output:\n${out}${err}")
  endif()
endfunction()

function(fresh_copy)
  file(REMOVE_RECURSE "${WORK_DIR}")
  file(COPY "${SOURCE_DIR}/README.md" "${SOURCE_DIR}/docs" DESTINATION "${WORK_DIR}")
  file(GLOB _items "${SOURCE_DIR}/*")
  foreach(_item IN LISTS _items)  # link targets outside docs/ (scripts, bench results, ...)
    get_filename_component(_name "${_item}" NAME)
    if(NOT _name MATCHES "^(README.md|docs|build|\\.git)$")
      file(COPY "${_item}" DESTINATION "${WORK_DIR}")
    endif()
  endforeach()
endfunction()

fresh_copy()
execute_process(COMMAND "${PYTHON}" "${SOURCE_DIR}/scripts/check_links.py" "${WORK_DIR}" RESULT_VARIABLE rc
                OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "check_links.py fails on an untouched copy:\n${out}${err}")
endif()

file(APPEND "${WORK_DIR}/docs/results.md" "\nSee [the missing page](no-such-page.md).\n")
expect_broken("a missing file" "docs/results.md:[0-9]+: broken link no-such-page.md")

fresh_copy()
file(APPEND "${WORK_DIR}/docs/cli.md" "\nSee [reports](#no-such-heading).\n")
expect_broken("a wrong anchor" "docs/cli.md:[0-9]+: broken link #no-such-heading")

fresh_copy()
file(READ "${WORK_DIR}/README.md" readme)
string(REPEAT "padding\n" 200 pad)
file(WRITE "${WORK_DIR}/README.md" "${readme}${pad}")
expect_broken("an over-long README" "README.md")
file(REMOVE_RECURSE "${WORK_DIR}")
