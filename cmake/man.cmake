# cmake/man.cmake - writes the ballast.conf(5) manual page: the output of
# `ballast config-reference --man`, generated from the library's property table.
# usage: cmake -DBALLAST=path/to/ballast -DOUTPUT=path/to/ballast.conf.5 -P man.cmake
# A sanitizer build's command must not fail the build over its exit-time
# leak report.
set(ENV{ASAN_OPTIONS} "detect_leaks=0")
execute_process(COMMAND ${BALLAST} config-reference --man
                OUTPUT_FILE ${OUTPUT}.tmp RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  file(REMOVE ${OUTPUT}.tmp)
  message(FATAL_ERROR "ballast config-reference --man failed (${rc})")
endif()
file(RENAME ${OUTPUT}.tmp ${OUTPUT})
