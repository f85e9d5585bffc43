# natsgw_generate: build-time code generation for FlatBuffers schemas, typed
# RPC stubs included. Defined in natsgw's own build and by
# find_package(natsgw) for projects using the installed SDK (which need
# flatc, Debian package flatbuffers-compiler, on PATH).
#
#   natsgw_generate(TARGET <name>
#     SCHEMAS <file.fbs>...            # absolute, or relative to the current
#                                      # source directory
#     [INCLUDE_DIRS <dir>...]          # extra -I dirs for `include "x.fbs";`
#     [INCLUDE_PREFIX <path>]          # headers land in <out>/<path>/
#     [FLATC_ARGS <arg>...])           # extra flatc flags
#
# For each schema x.fbs it runs natsgw-gen, then flatc, producing
#   x_natsgw.h     rpc_service stubs: <S>Methods, <S>Client, <S>ServiceBase
#   x_generated.h  flatc's tables, builders and verifiers
# and creates the INTERFACE library <name>: link it and
# `#include "<path>/x_natsgw.h"`. It brings natsgw::sdk and FlatBuffers along.
# Targets that link <name> are built after the generation, and the headers
# are regenerated whenever a schema, natsgw-gen or flatc changes. Schema
# errors fail the build with "<file>:<line>: error: ..." from natsgw-gen.
#
# Debian's FlatBuffers 2.0.8 installs no CMake helper for flatc, hence this
# one. Generated code lives in the build tree only and is never committed.
function(natsgw_generate)
  cmake_parse_arguments(ARG "" "TARGET;INCLUDE_PREFIX" "SCHEMAS;INCLUDE_DIRS;FLATC_ARGS" ${ARGN})
  if(NOT ARG_TARGET)
    message(FATAL_ERROR "natsgw_generate: TARGET <name> is required")
  endif()
  if(NOT ARG_SCHEMAS)
    message(FATAL_ERROR "natsgw_generate(${ARG_TARGET}): SCHEMAS is required")
  endif()
  if(ARG_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "natsgw_generate(${ARG_TARGET}): unknown arguments: ${ARG_UNPARSED_ARGUMENTS}")
  endif()

  if(NOT NATSGW_FLATC)
    find_program(NATSGW_FLATC flatc REQUIRED)
  endif()
  # In natsgw's own build the generator is a target; in a project using the
  # installed SDK it is the imported natsgw::gen, or found on PATH.
  if(TARGET natsgw-gen)
    set(gen $<TARGET_FILE:natsgw-gen>)
    set(gen_dep natsgw-gen)
  elseif(TARGET natsgw::gen)
    set(gen $<TARGET_FILE:natsgw::gen>)
    set(gen_dep natsgw::gen)
  else()
    find_program(NATSGW_GEN natsgw-gen REQUIRED)
    set(gen ${NATSGW_GEN})
    set(gen_dep ${NATSGW_GEN})
  endif()

  set(out_root ${CMAKE_CURRENT_BINARY_DIR}/${ARG_TARGET}_generated)
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
    set(stubs ${out_dir}/${stem}_natsgw.h)
    set(tables ${out_dir}/${stem}_generated.h)
    list(APPEND outputs ${stubs} ${tables})
    # Every schema of the set is a dependency: `include` statements are not
    # followed here, so a change in any of them regenerates all (cheap).
    add_custom_command(
      OUTPUT ${stubs} ${tables}
      COMMAND ${CMAKE_COMMAND} -E make_directory ${out_dir}
      COMMAND ${gen} ${include_flags} --include-prefix "${ARG_INCLUDE_PREFIX}"
              -o ${out_dir} ${abs}
      COMMAND ${NATSGW_FLATC} --cpp --cpp-std c++17 --scoped-enums --reflect-names
              ${ARG_FLATC_ARGS} -I ${schema_dir} ${include_flags} -o ${out_dir} ${abs}
      DEPENDS ${abs_schemas} ${gen_dep} ${NATSGW_FLATC}
      COMMENT "natsgw-gen + flatc: ${stem}_natsgw.h, ${stem}_generated.h"
      VERBATIM)
  endforeach()

  add_custom_target(${ARG_TARGET}_codegen DEPENDS ${outputs})
  add_library(${ARG_TARGET} INTERFACE)
  add_dependencies(${ARG_TARGET} ${ARG_TARGET}_codegen)
  target_include_directories(${ARG_TARGET} INTERFACE $<BUILD_INTERFACE:${out_root}>)
  target_link_libraries(${ARG_TARGET} INTERFACE natsgw::sdk flatbuffers::flatbuffers)
  set_property(TARGET ${ARG_TARGET} PROPERTY NATSGW_GENERATED_HEADERS ${outputs})
endfunction()
