# natsgw-bench's gRPC C++ comparison scenarios (grpc_bench.cc), built only
# when gRPC C++, protoc and grpc_cpp_plugin are installed (Debian:
# libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc).
# Included by CMakeLists.txt once the natsgw-bench target exists; without
# gRPC the benchmark builds and runs without these scenarios.
#
# gRPC is found through pkg-config rather than find_package(gRPC): Debian's
# gRPCConfig.cmake (libgrpc-dev) imports the protoc plugins of
# protobuf-compiler-grpc and stops the configure step with a fatal error
# when that package is missing, and it finds its own dependencies loudly.
#
# -DNATSGW_BENCH_GRPC=OFF (or -DCMAKE_DISABLE_FIND_PACKAGE_gRPC=ON) builds
# without them even where gRPC is installed.
option(NATSGW_BENCH_GRPC
  "Build natsgw-bench's gRPC C++ comparison scenarios if gRPC is installed" ON)

set(natsgw_grpc_missing "")
if(NOT NATSGW_BENCH_GRPC)
  set(natsgw_grpc_missing "NATSGW_BENCH_GRPC is OFF")
elseif(NATSGW_SANITIZE STREQUAL "thread")
  # Debian's gRPC and protobuf are not built with ThreadSanitizer: it sees
  # none of their own synchronization and reports hundreds of races inside
  # them, which would bury any of natsgw's.
  set(natsgw_grpc_missing "NATSGW_SANITIZE is thread (Debian's gRPC is not instrumented)")
elseif(CMAKE_DISABLE_FIND_PACKAGE_gRPC)
  set(natsgw_grpc_missing "CMAKE_DISABLE_FIND_PACKAGE_gRPC is ON")
else()
  pkg_check_modules(NATSGW_GRPC QUIET IMPORTED_TARGET grpc++ protobuf)
  find_program(NATSGW_PROTOC protoc)
  find_program(NATSGW_GRPC_CPP_PLUGIN grpc_cpp_plugin)
  if(NOT NATSGW_GRPC_FOUND)
    set(natsgw_grpc_missing "pkg-config finds no grpc++ and protobuf")
  elseif(NOT NATSGW_PROTOC OR NOT NATSGW_GRPC_CPP_PLUGIN)
    set(natsgw_grpc_missing "protoc or grpc_cpp_plugin not found")
  else()
    # Generated code only compiles against the protobuf release of the
    # protoc that generated it.
    execute_process(COMMAND ${NATSGW_PROTOC} --version
      OUTPUT_VARIABLE natsgw_protoc_version ERROR_QUIET)
    string(REGEX MATCH "^libprotoc ([0-9.]+)" natsgw_protoc_version
      "${natsgw_protoc_version}")
    set(natsgw_protoc_version "${CMAKE_MATCH_1}")
    if(NOT natsgw_protoc_version VERSION_EQUAL NATSGW_GRPC_protobuf_VERSION)
      set(natsgw_grpc_missing "${NATSGW_PROTOC} is not the protoc of \
libprotobuf ${NATSGW_GRPC_protobuf_VERSION}")
    endif()
  endif()
endif()

if(natsgw_grpc_missing)
  message(STATUS
    "natsgw-bench: gRPC scenarios skipped (${natsgw_grpc_missing})")
else()
  message(STATUS
    "natsgw-bench: gRPC scenarios with gRPC ${NATSGW_GRPC_grpc++_VERSION}")
  # Echo service stubs, generated into the build tree.
  set(natsgw_grpc_proto ${CMAKE_CURRENT_SOURCE_DIR}/grpc/bench_echo.proto)
  set(natsgw_grpc_gen ${CMAKE_CURRENT_BINARY_DIR}/grpc_gen)
  set(natsgw_grpc_sources
    ${natsgw_grpc_gen}/bench_echo.pb.cc ${natsgw_grpc_gen}/bench_echo.pb.h
    ${natsgw_grpc_gen}/bench_echo.grpc.pb.cc
    ${natsgw_grpc_gen}/bench_echo.grpc.pb.h)
  add_custom_command(
    OUTPUT ${natsgw_grpc_sources}
    COMMAND ${CMAKE_COMMAND} -E make_directory ${natsgw_grpc_gen}
    COMMAND ${NATSGW_PROTOC}
      --proto_path=${CMAKE_CURRENT_SOURCE_DIR}/grpc
      --cpp_out=${natsgw_grpc_gen} --grpc_out=${natsgw_grpc_gen}
      --plugin=protoc-gen-grpc=${NATSGW_GRPC_CPP_PLUGIN}
      ${natsgw_grpc_proto}
    DEPENDS ${natsgw_grpc_proto}
    COMMENT "Generating gRPC Echo stubs for natsgw-bench"
    VERBATIM)
  # A library of its own: generated code is compiled without natsgw's
  # warning flags, and its headers are system headers for the same reason.
  add_library(natsgw_bench_grpc_echo STATIC ${natsgw_grpc_sources})
  target_include_directories(natsgw_bench_grpc_echo SYSTEM PUBLIC
    ${natsgw_grpc_gen})
  target_compile_options(natsgw_bench_grpc_echo PRIVATE
    ${NATSGW_SANITIZER_FLAGS})
  target_link_libraries(natsgw_bench_grpc_echo PUBLIC PkgConfig::NATSGW_GRPC)

  target_sources(natsgw-bench PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/grpc_bench.cc)
  target_link_libraries(natsgw-bench PRIVATE natsgw_bench_grpc_echo)
  target_compile_definitions(natsgw-bench PRIVATE NATSGW_BENCH_HAVE_GRPC)
endif()
