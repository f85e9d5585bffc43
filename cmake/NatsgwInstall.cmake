# `cmake --install`: natsgw as an installed SDK.
#
#   <prefix>/include/natsgw/*.h                    public headers (version.h too)
#   <prefix>/<libdir>/libnatsgw_{gateway,sdk}.a    static libraries
#   <prefix>/bin/natsgw-gen                        stub generator
#   <prefix>/bin/natsgw, natsgw-edge               the command-line tool and the
#                                                  HTTP/JSON gateway (when built:
#                                                  NATSGW_BUILD_TOOLS)
#   <prefix>/<libdir>/cmake/natsgw/                find_package(natsgw): natsgw::gateway,
#                                                  natsgw::sdk, natsgw::gen, natsgw_generate()
#   <prefix>/<libdir>/pkgconfig/natsgw.pc          pkg-config --cflags --libs natsgw
#   <prefix>/share/natsgw/schemas/*.fbs            the example services' wire contract
#
# All of it is component `sdk`. The example services go to <prefix>/bin in
# component `examples`, which a plain install leaves out:
#
#   cmake --install build --component examples
#
# Every installed file names its location relative to itself (CMake package,
# pkg-config file), so an installed tree can be moved or staged with DESTDIR.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(NATSGW_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/natsgw)
set(NATSGW_INSTALL_SCHEMADIR ${CMAKE_INSTALL_DATADIR}/natsgw/schemas)

set_target_properties(natsgw-gen PROPERTIES EXPORT_NAME gen)

install(TARGETS natsgw_gateway natsgw_sdk
  EXPORT natsgwTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT sdk
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(TARGETS natsgw-gen
  EXPORT natsgwTargets
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT sdk)
# The tools are programs for people and scripts, not build dependencies:
# installed beside natsgw-gen but not exported. They are given the installed
# schemas (<prefix>/share/natsgw/schemas) with --schema or
# NATSGW_SCHEMA_PATH; the packaging test runs them from a moved prefix.
foreach(tool IN ITEMS natsgw natsgw-edge)
  if(TARGET ${tool})
    install(TARGETS ${tool}
      RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT sdk)
  endif()
endforeach()

install(DIRECTORY
    ${PROJECT_SOURCE_DIR}/gateway/include/natsgw/
    ${PROJECT_SOURCE_DIR}/sdk/include/natsgw/
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/natsgw
  COMPONENT sdk
  FILES_MATCHING PATTERN "*.h")
install(FILES ${PROJECT_BINARY_DIR}/gateway/include/natsgw/version.h
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/natsgw
  COMPONENT sdk)

file(GLOB NATSGW_SCHEMA_FILES CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/schemas/*.fbs)
install(FILES ${NATSGW_SCHEMA_FILES}
  DESTINATION ${NATSGW_INSTALL_SCHEMADIR}
  COMPONENT sdk)

# The CMake package. natsgwTargets.cmake holds the imported targets; the
# config file finds their dependencies first and brings natsgw_generate().
install(EXPORT natsgwTargets
  NAMESPACE natsgw::
  DESTINATION ${NATSGW_INSTALL_CMAKEDIR}
  COMPONENT sdk)
configure_package_config_file(
  ${PROJECT_SOURCE_DIR}/cmake/natsgwConfig.cmake.in
  ${PROJECT_BINARY_DIR}/cmake/natsgwConfig.cmake
  INSTALL_DESTINATION ${NATSGW_INSTALL_CMAKEDIR}
  PATH_VARS NATSGW_INSTALL_SCHEMADIR
  NO_SET_AND_CHECK_MACRO
  NO_CHECK_REQUIRED_COMPONENTS_MACRO)
# Before 1.0 a minor release may break the API (SemVer), so 0.1 satisfies
# only requests for 0.1.x; from 1.0 on, any 1.y satisfies a request for 1.x.
if(PROJECT_VERSION_MAJOR EQUAL 0)
  set(NATSGW_VERSION_COMPATIBILITY SameMinorVersion)
else()
  set(NATSGW_VERSION_COMPATIBILITY SameMajorVersion)
endif()
write_basic_package_version_file(
  ${PROJECT_BINARY_DIR}/cmake/natsgwConfigVersion.cmake
  VERSION ${PROJECT_VERSION}
  COMPATIBILITY ${NATSGW_VERSION_COMPATIBILITY})
install(FILES
    ${PROJECT_BINARY_DIR}/cmake/natsgwConfig.cmake
    ${PROJECT_BINARY_DIR}/cmake/natsgwConfigVersion.cmake
    ${PROJECT_SOURCE_DIR}/cmake/NatsgwGenerate.cmake
  DESTINATION ${NATSGW_INSTALL_CMAKEDIR}
  COMPONENT sdk)

# pkg-config: ${pcfiledir} (the .pc file's own directory) anchors the prefix,
# which keeps the file relocatable like the CMake package.
if(IS_ABSOLUTE "${CMAKE_INSTALL_LIBDIR}")
  set(NATSGW_PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
  set(NATSGW_PC_LIBDIR "${CMAKE_INSTALL_LIBDIR}")
else()
  # lib/pkgconfig -> ../.., lib/x86_64-linux-gnu/pkgconfig -> ../../..
  file(RELATIVE_PATH NATSGW_PC_UP
       "${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "${CMAKE_INSTALL_PREFIX}")
  string(REGEX REPLACE "/$" "" NATSGW_PC_UP "${NATSGW_PC_UP}")
  set(NATSGW_PC_PREFIX "\${pcfiledir}/${NATSGW_PC_UP}")
  set(NATSGW_PC_LIBDIR "\${prefix}/${CMAKE_INSTALL_LIBDIR}")
endif()
if(IS_ABSOLUTE "${CMAKE_INSTALL_INCLUDEDIR}")
  set(NATSGW_PC_INCLUDEDIR "${CMAKE_INSTALL_INCLUDEDIR}")
else()
  set(NATSGW_PC_INCLUDEDIR "\${prefix}/${CMAKE_INSTALL_INCLUDEDIR}")
endif()
configure_file(${PROJECT_SOURCE_DIR}/cmake/natsgw.pc.in
               ${PROJECT_BINARY_DIR}/cmake/natsgw.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/cmake/natsgw.pc
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig
  COMPONENT sdk)

# The example services (and the generator, which the examples' container
# image ships beside them), for `cmake --install <build> --component examples`.
if(NATSGW_BUILD_EXAMPLES)
  install(TARGETS user-service email-service register-users natsgw-gen
    RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
    COMPONENT examples
    EXCLUDE_FROM_ALL)
endif()
