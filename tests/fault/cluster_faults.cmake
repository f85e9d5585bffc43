# JetStream cluster faults: a 3-node cluster with an R3 stream whose nodes are
# killed, paused, restarted and stepped down while natsgw publishes and
# consumes, and the loss checker that judges the outcome.
#
#   natsgw_fault_support  the LossChecker and UnavailabilityMeter
#                         (#include "fault/loss_checker.h"), shared with the
#                         other fault suites and the soak
#   loss_checker_test     the checker itself (label unit: no server)
#   cluster_fault_test    F1-F3, F5, F6, F8 (label fault; each case starts its
#                         own cluster, about 30-50 s each)
#
#   ctest -L fault -R ClusterFaultTest

add_library(natsgw_fault_support STATIC
  ${CMAKE_CURRENT_LIST_DIR}/loss_checker.cc
)
# The include root is tests/, as for the harness ("harness/...").
target_include_directories(natsgw_fault_support PUBLIC
  ${CMAKE_CURRENT_LIST_DIR}/..
)
target_link_libraries(natsgw_fault_support
  PUBLIC
    natsgw::gateway
    absl::status
    absl::strings
    absl::time
    absl::core_headers
)
natsgw_target_defaults(natsgw_fault_support)

natsgw_add_test(loss_checker_test LABELS unit
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/loss_checker_test.cc
  LIBS natsgw_fault_support)

natsgw_add_test(cluster_fault_test LABELS fault
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/cluster_fault_test.cc
  LIBS natsgw::gateway natsgw_fault_support natsgw_test_fixture
       PkgConfig::NATSC nlohmann_json::nlohmann_json
  TIMEOUT 240)
