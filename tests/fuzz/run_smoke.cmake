# The ctest fuzz.smoke (cmake -P): builds the libFuzzer targets with clang++
# (libfuzzer/CMakeLists.txt, incrementally after the first run) and fuzzes
# each for SECONDS, starting from a copy of its seed corpus and saved
# reproducers. Any crash, leak, sanitizer report, timeout or out-of-memory
# fails the test; the input that caused it is kept in WORK_DIR/<target>/ and
# named in the output.
#
#   -DSOURCE_DIR=<tests/fuzz> -DBUILD_DIR=<dir> -DWORK_DIR=<dir>
#   -DCLANGXX=<clang++> -DGENERATOR=<cmake generator> -DSECONDS=<n>
#   [-DTARGETS=<a;b>]  (default: every target of targets.cmake)
cmake_minimum_required(VERSION 3.21)

foreach(var SOURCE_DIR BUILD_DIR WORK_DIR CLANGXX GENERATOR SECONDS)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "run_smoke.cmake: -D${var}=... is required")
  endif()
endforeach()
if(NOT DEFINED TARGETS)
  include(${SOURCE_DIR}/targets.cmake)
  set(TARGETS ${NATSGW_FUZZ_TARGETS})
endif()

string(TIMESTAMP started "%s")

# Build. Configure once; the build tree then tracks its own inputs.
if(NOT EXISTS ${BUILD_DIR}/CMakeCache.txt)
  get_filename_component(clang_dir ${CLANGXX} DIRECTORY)
  get_filename_component(clang_name ${CLANGXX} NAME)
  string(REPLACE "clang++" "clang" c_name "${clang_name}")
  execute_process(
    COMMAND ${CMAKE_COMMAND} -S ${SOURCE_DIR}/libfuzzer -B ${BUILD_DIR}
            -G ${GENERATOR} -DCMAKE_CXX_COMPILER=${CLANGXX}
            -DCMAKE_C_COMPILER=${clang_dir}/${c_name}
    RESULT_VARIABLE result)
  if(NOT result EQUAL 0)
    file(REMOVE ${BUILD_DIR}/CMakeCache.txt)
    message(FATAL_ERROR "configuring the libFuzzer build failed")
  endif()
endif()
execute_process(COMMAND ${CMAKE_COMMAND} --build ${BUILD_DIR} --parallel 2
                RESULT_VARIABLE result)
if(NOT result EQUAL 0)
  message(FATAL_ERROR "building the libFuzzer targets failed")
endif()
string(TIMESTAMP built "%s")
math(EXPR build_seconds "${built} - ${started}")
message(STATUS "libFuzzer build: ${build_seconds} s")

set(failed "")
foreach(name IN LISTS TARGETS)
  set(work ${WORK_DIR}/${name})
  file(REMOVE_RECURSE ${work})
  file(MAKE_DIRECTORY ${work}/corpus ${work}/artifacts)
  foreach(dir corpus regressions)
    if(IS_DIRECTORY ${SOURCE_DIR}/${dir}/${name})
      file(GLOB inputs ${SOURCE_DIR}/${dir}/${name}/*)
      if(inputs)
        file(COPY ${inputs} DESTINATION ${work}/corpus)
      endif()
    endif()
  endforeach()
  set(dict "")
  if(EXISTS ${SOURCE_DIR}/dicts/${name}.dict)
    set(dict -dict=${SOURCE_DIR}/dicts/${name}.dict)
  endif()
  # -timeout: an input taking 10 s is a hang; -rss_limit_mb: bounded memory;
  # -max_len: large enough for every layout, small enough to stay fast.
  math(EXPR wall "${SECONDS} + 120")
  execute_process(
    COMMAND ${CMAKE_COMMAND} -E env
            ASAN_OPTIONS=detect_leaks=1:abort_on_error=0
            UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
            ${BUILD_DIR}/${name}_fuzz
            -max_total_time=${SECONDS} -timeout=10 -rss_limit_mb=2048
            -max_len=8192 -print_final_stats=1
            -artifact_prefix=${work}/artifacts/ ${dict}
            ${work}/corpus
    RESULT_VARIABLE result
    OUTPUT_VARIABLE out ERROR_VARIABLE out
    TIMEOUT ${wall})
  string(REGEX MATCH "stat::number_of_executed_units: *([0-9]+)" _ "${out}")
  set(runs "${CMAKE_MATCH_1}")
  file(GLOB corpus_files ${work}/corpus/*)
  list(LENGTH corpus_files corpus_size)
  if(result EQUAL 0)
    message(STATUS "${name}: ok, ${runs} inputs run in ${SECONDS} s, corpus ${corpus_size}")
  else()
    file(GLOB artifacts ${work}/artifacts/*)
    # The report is at the end of libFuzzer's output.
    string(LENGTH "${out}" length)
    if(length GREATER 6000)
      math(EXPR from "${length} - 6000")
      string(SUBSTRING "${out}" ${from} -1 out)
    endif()
    message("${out}")
    message(STATUS "${name}: FAILED (${result}); reproducer: ${artifacts}")
    list(APPEND failed ${name})
  endif()
endforeach()

string(TIMESTAMP finished "%s")
math(EXPR total "${finished} - ${started}")
message(STATUS "fuzz smoke: ${total} s in all")
if(failed)
  message(FATAL_ERROR "fuzz smoke failed for: ${failed} (replay an input "
                      "with <build>/bin/fuzz_<name>_replay <file>)")
endif()
