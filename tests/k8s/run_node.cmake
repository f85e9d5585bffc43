# Runs a Node script of tests/k8s with its arguments, failing (not skipping)
# when node or an npm package is missing.
#
#   cmake -DK8S_TEST_DIR=<tests/k8s> -DSCRIPT=validate.mjs \
#         "-DSCRIPT_ARGS=--root|<repo>" -P run_node.cmake
#
# node is $NATSGW_NODE when set, else the first node on PATH.
if(DEFINED ENV{NATSGW_NODE} AND NOT "$ENV{NATSGW_NODE}" STREQUAL "")
  set(NODE "$ENV{NATSGW_NODE}")
else()
  find_program(NODE node)
endif()
if(NOT NODE OR NOT EXISTS "${NODE}")
  message(FATAL_ERROR
    "node not found: the Kubernetes manifest checks need Node.js (>= 20). "
    "./scripts/test installs it (scripts/lib/setup.sh, natsgw_install_npm), "
    "or run `apt-get install nodejs npm`")
endif()

foreach(package kubernetes-models @kubernetes-models/prometheus-operator yaml)
  if(NOT EXISTS "${K8S_TEST_DIR}/node_modules/${package}/package.json")
    message(FATAL_ERROR
      "npm package \"${package}\" is missing from ${K8S_TEST_DIR}/node_modules: "
      "run ./scripts/test, which installs it (natsgw_install_npm in "
      "scripts/lib/setup.sh), or `npm ci --no-audit --no-fund` in ${K8S_TEST_DIR}")
  endif()
endforeach()

string(REPLACE "|" ";" args "${SCRIPT_ARGS}")
# Below the ctest TIMEOUT, so that node is stopped here rather than left
# behind; the programs node runs have their own time limits.
execute_process(
  COMMAND "${NODE}" "${K8S_TEST_DIR}/${SCRIPT}" ${args}
  WORKING_DIRECTORY "${K8S_TEST_DIR}"
  TIMEOUT 110
  RESULT_VARIABLE result)
if(NOT result EQUAL 0)
  message(FATAL_ERROR "node ${SCRIPT} failed (${result})")
endif()
