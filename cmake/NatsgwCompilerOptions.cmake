# Compiler flags shared by every natsgw target.
#
# natsgw_target_defaults(<target>) applies them to one target; they are not
# set globally so that projects embedding natsgw keep their own flags.

set(NATSGW_COMPILE_FLAGS
    -Wall -Wextra -Wno-unused-parameter
    # Source paths relative to the checkout in __FILE__ (diagnostics, --help
    # output): the build machine's directory layout does not leak into
    # binaries, and builds are reproducible.
    -ffile-prefix-map=${PROJECT_SOURCE_DIR}/=
    # The same for a build tree outside the checkout (generated sources,
    # debug info of the installed libraries). GCC applies the last matching
    # map, so a build tree inside the checkout becomes "." too.
    -ffile-prefix-map=${PROJECT_BINARY_DIR}=.)
if(NATSGW_WERROR)
  list(APPEND NATSGW_COMPILE_FLAGS -Werror)
endif()

set(NATSGW_SANITIZER_FLAGS "")
if(NATSGW_SANITIZE STREQUAL "address")
  set(NATSGW_SANITIZER_FLAGS -fsanitize=address,undefined -fno-omit-frame-pointer
                             -fno-sanitize-recover=undefined)
elseif(NATSGW_SANITIZE STREQUAL "undefined")
  set(NATSGW_SANITIZER_FLAGS -fsanitize=undefined -fno-sanitize-recover=undefined
                             -fno-omit-frame-pointer)
elseif(NATSGW_SANITIZE STREQUAL "thread")
  set(NATSGW_SANITIZER_FLAGS -fsanitize=thread -fno-omit-frame-pointer)
elseif(NOT NATSGW_SANITIZE STREQUAL "")
  message(FATAL_ERROR "NATSGW_SANITIZE must be empty, address, undefined or thread")
endif()

function(natsgw_target_defaults target)
  target_compile_options(${target} PRIVATE ${NATSGW_COMPILE_FLAGS} ${NATSGW_SANITIZER_FLAGS})
  if(NATSGW_SANITIZER_FLAGS)
    target_link_options(${target} PRIVATE ${NATSGW_SANITIZER_FLAGS})
  endif()
endfunction()
