# Single-server, RPC, process-crash and slow-consumer faults: real
# nats-server processes killed, paused and restarted under RPC and JetStream
# load, natsgw processes killed mid-work and replaying, and consumers too slow
# for what they are sent.
#
#   rpc_fault_test        a single server killed under RPC load; the server an
#                         RPC client is on paused in a 3-node cluster; a
#                         JetStream server killed while publishing
#   slow_consumer_test    slow consumers: client side (nats.c pending
#                         limits), server side (a client that never reads),
#                         JetStream (bounded ack pending)
#   crash_fault_test      a producer killed before recording its acks, then
#                         replaying; a consumer killed between committing a
#                         message and acknowledging it; a real service
#                         stopped (SIGTERM) while busy
#   natsgw_fault_child    the natsgw program crash_fault_test kills
#
#   ctest -L fault -R 'RpcFault|SingleServerFault|SlowConsumerFault|CrashFault'

natsgw_add_test(rpc_fault_test LABELS fault
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/rpc_fault_test.cc
  LIBS natsgw::schemas natsgw_fault_support natsgw_test_fixture
       PkgConfig::NATSC prometheus-cpp::core
  TIMEOUT 120)

natsgw_add_test(slow_consumer_test LABELS fault
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/slow_consumer_test.cc
  LIBS natsgw::gateway natsgw_fault_support natsgw_test_fixture
       prometheus-cpp::core nlohmann_json::nlohmann_json
  TIMEOUT 120)

add_executable(natsgw_fault_child ${CMAKE_CURRENT_LIST_DIR}/fault_child.cc)
natsgw_target_defaults(natsgw_fault_child)
target_link_libraries(natsgw_fault_child PRIVATE natsgw::gateway
  natsgw_fault_support absl::strings absl::time)

natsgw_add_test(crash_fault_test LABELS fault
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/crash_fault_test.cc
  LIBS natsgw::gateway natsgw_fault_support natsgw_test_fixture
       PkgConfig::NATSC prometheus-cpp::core
  TIMEOUT 120)
target_compile_definitions(crash_fault_test PRIVATE
  NATSGW_FAULT_CHILD_BINARY="$<TARGET_FILE:natsgw_fault_child>")
add_dependencies(crash_fault_test natsgw_fault_child)
# The graceful-shutdown case runs the example e-mail service.
if(NATSGW_BUILD_EXAMPLES)
  target_link_libraries(crash_fault_test PRIVATE natsgw::schemas)
  target_compile_definitions(crash_fault_test PRIVATE
    NATSGW_EMAIL_SERVICE_BINARY="$<TARGET_FILE:email-service>")
  add_dependencies(crash_fault_test email-service)
endif()
