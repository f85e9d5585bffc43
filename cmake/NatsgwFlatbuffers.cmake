# natsgw_flatbuffers_generate: build-time C++ code generation with flatc.
#
# Debian's FlatBuffers 2.0.8 package installs no CMake helper for flatc, so
# this is ours. Generated headers live in the build tree only; they are never
# committed.
#
#   natsgw_flatbuffers_generate(<target>
#     SCHEMAS <file.fbs>...            # schemas to compile (absolute or relative
#                                      # to the current source dir)
#     [INCLUDE_DIRS <dir>...]          # extra -I dirs for `include "x.fbs";`
#     [INCLUDE_PREFIX <path>]          # headers land in <out>/<path>/x_generated.h
#     [FLATC_ARGS <arg>...])           # extra flatc flags
#
# Creates an INTERFACE library <target> whose include directory holds the
# generated `<schema>_generated.h` headers and which links FlatBuffers. Any
# target that links <target> is ordered after the generation step, and the
# headers are regenerated whenever a schema or flatc changes.
function(natsgw_flatbuffers_generate target)
  cmake_parse_arguments(ARG "" "INCLUDE_PREFIX" "SCHEMAS;INCLUDE_DIRS;FLATC_ARGS" ${ARGN})
  if(NOT ARG_SCHEMAS)
    message(FATAL_ERROR "natsgw_flatbuffers_generate(${target}): SCHEMAS is required")
  endif()
  if(NOT NATSGW_FLATC)
    find_program(NATSGW_FLATC flatc REQUIRED)
  endif()

  set(out_root ${CMAKE_CURRENT_BINARY_DIR}/${target}_generated)
  set(out_dir ${out_root})
  if(ARG_INCLUDE_PREFIX)
    set(out_dir ${out_root}/${ARG_INCLUDE_PREFIX})
  endif()

  set(include_flags "")
  foreach(dir IN LISTS ARG_INCLUDE_DIRS)
    get_filename_component(abs_dir ${dir} ABSOLUTE BASE_DIR ${CMAKE_CURRENT_SOURCE_DIR})
    list(APPEND include_flags -I ${abs_dir})
  endforeach()

  set(abs_schemas "")
  foreach(schema IN LISTS ARG_SCHEMAS)
    get_filename_component(abs ${schema} ABSOLUTE BASE_DIR ${CMAKE_CURRENT_SOURCE_DIR})
    list(APPEND abs_schemas ${abs})
  endforeach()

  set(outputs "")
  foreach(abs IN LISTS abs_schemas)
    get_filename_component(stem ${abs} NAME_WE)
    get_filename_component(schema_dir ${abs} DIRECTORY)
    set(header ${out_dir}/${stem}_generated.h)
    list(APPEND outputs ${header})
    # Every schema of the set is a dependency: `include` statements are not
    # parsed here, so a change in any of them regenerates all (cheap).
    add_custom_command(
      OUTPUT ${header}
      COMMAND ${CMAKE_COMMAND} -E make_directory ${out_dir}
      COMMAND ${NATSGW_FLATC} --cpp --cpp-std c++17 --scoped-enums --reflect-names
              ${ARG_FLATC_ARGS} -I ${schema_dir} ${include_flags} -o ${out_dir} ${abs}
      DEPENDS ${abs_schemas} ${NATSGW_FLATC}
      COMMENT "flatc: generating ${stem}_generated.h"
      VERBATIM)
  endforeach()

  add_custom_target(${target}_codegen DEPENDS ${outputs})
  add_library(${target} INTERFACE)
  add_dependencies(${target} ${target}_codegen)
  target_include_directories(${target} INTERFACE $<BUILD_INTERFACE:${out_root}>)
  target_link_libraries(${target} INTERFACE flatbuffers::flatbuffers)
  set_property(TARGET ${target} PROPERTY NATSGW_GENERATED_HEADERS ${outputs})
endfunction()
