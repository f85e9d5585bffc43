# The bounded soak (label `soak`, outside the default run: scripts/test
# excludes it unless asked): a few minutes of mixed RPC and JetStream load on
# a 3-node cluster with a fault every ~30 s, asserting that nothing
# acknowledged is lost or duplicated, that every call ends in time with a
# clear status, that resident memory and open descriptors stay flat, and
# that natsgw's counters agree with the test's own. Prints one
# `SOAK-RESULT {...}` JSON line with the figures.
#
#   ctest -L soak --output-on-failure            # ~4 minutes
#   NATSGW_SOAK_SECONDS=30 ctest -L soak -V      # a quick run

if(TARGET natsgw_fault_support)
  natsgw_add_test(soak_test LABELS soak
    SOURCES ${CMAKE_CURRENT_LIST_DIR}/soak_test.cc
    LIBS natsgw::gateway natsgw_fault_support natsgw_test_fixture
         prometheus-cpp::core nlohmann_json::nlohmann_json
         absl::strings absl::str_format absl::time
    TIMEOUT 420)
endif()
