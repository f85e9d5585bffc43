# Runs promtool with the arguments in PROMTOOL_ARGS (separated by "|"),
# failing the test (not skipping it) when promtool is missing: it comes with
# the Debian package `prometheus`, which scripts/lib/setup.sh installs.
#
#   cmake "-DPROMTOOL_ARGS=check|rules|file.yml" -P run_promtool.cmake
find_program(PROMTOOL promtool PATHS /usr/bin /usr/local/bin)
if(NOT PROMTOOL)
  message(FATAL_ERROR
    "promtool not found: install the Debian package 'prometheus' "
    "(apt-get install prometheus, or run scripts/lib/setup.sh)")
endif()
string(REPLACE "|" ";" args "${PROMTOOL_ARGS}")
execute_process(COMMAND "${PROMTOOL}" ${args} RESULT_VARIABLE result)
if(NOT result EQUAL 0)
  string(REPLACE "|" " " command "${PROMTOOL_ARGS}")
  message(FATAL_ERROR "promtool ${command} failed (exit status ${result})")
endif()
