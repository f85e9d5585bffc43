#!/usr/bin/env bash
# The installed SDK, used the way a third-party project uses it: installs a
# natsgw build tree into a temporary prefix, moves the prefix elsewhere (an
# install must not depend on where it was made), builds tests/packaging/consumer
# against it with find_package(natsgw) + natsgw_generate(), builds a second
# program with `pkg-config --cflags --libs natsgw` alone, and runs both against
# a private nats-server on an ephemeral loopback port. With the tools
# (TOOLS), runs the installed natsgw and natsgw-edge from the moved prefix
# against the same server, with the installed schemas.
#
# Also checks: the installed file list, that no installed file names the
# source or build directory, that the config version file rejects 0.0, 0.2
# and 1.0, and (with EXAMPLES=1) that the `examples` component holds exactly the
# example services and natsgw-gen.
#
# Environment (set by tests/packaging/CMakeLists.txt):
#   NATSGW_SOURCE_DIR NATSGW_BUILD_DIR NATSGW_VERSION  the tree under test
#   CMAKE_COMMAND CMAKE_GENERATOR CMAKE_MAKE_PROGRAM CXX BUILD_TYPE
#                                                       how to build the consumer
#   PKG_CONFIG                                          pkg-config executable
#   SANITIZER_FLAGS                                     natsgw's -fsanitize flags, if any
#   EXAMPLES                                            1 if the examples were built
#   TOOLS                                               the tools built and installed
#                                                       (natsgw natsgw-edge), space-separated
#   NATS_SERVER_EXE                                     optional, else nats-server on PATH
set -euo pipefail

: "${NATSGW_SOURCE_DIR:?}" "${NATSGW_BUILD_DIR:?}" "${NATSGW_VERSION:?}"
: "${CMAKE_COMMAND:?}" "${CMAKE_GENERATOR:?}" "${CXX:?}" "${PKG_CONFIG:?}"
BUILD_TYPE="${BUILD_TYPE:-}"
SANITIZER_FLAGS="${SANITIZER_FLAGS:-}"
EXAMPLES="${EXAMPLES:-0}"
read -ra tools <<<"${TOOLS:-}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

work="$(mktemp -d -t natsgw-packaging.XXXXXX)"
server_pid=""
edge_pid=""
cleanup() {
  if [[ -n "$edge_pid" ]]; then
    kill -TERM "$edge_pid" 2>/dev/null || true
    wait "$edge_pid" 2>/dev/null || true
  fi
  if [[ -n "$server_pid" ]]; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
# A signal (ctest's timeout, Ctrl-C) still runs the EXIT trap.
trap 'exit 143' TERM
trap 'exit 130' INT

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

# Runs a step with its output in a log that is shown only if it fails, so a
# passing run stays readable.
step() {
  local name="$1"
  shift
  local log="$work/logs/$name.log"
  mkdir -p "$work/logs"
  if ! "$@" >"$log" 2>&1; then
    cat "$log" >&2
    fail "$name: $*"
  fi
}

config_args=()
if [[ -n "$BUILD_TYPE" ]]; then
  config_args=(--config "$BUILD_TYPE")
fi

# --- install -----------------------------------------------------------------
step install "$CMAKE_COMMAND" --install "$NATSGW_BUILD_DIR" --prefix "$work/install" \
  "${config_args[@]}"

echo "installed files:"
(cd "$work/install" && find . -type f -o -type l | sed 's|^\./||' | LC_ALL=C sort) |
  tee "$work/manifest" | sed 's/^/  /'

expect_file() {
  grep -Eq "^$1\$" "$work/manifest" || fail "not installed: $1"
}
expect_file 'include/natsgw/connection\.h'
expect_file 'include/natsgw/trace_context\.h'
expect_file 'include/natsgw/rpc_client\.h'
expect_file 'include/natsgw/typed_service\.h'
expect_file 'include/natsgw/version\.h'
expect_file 'lib[^/]*(/[^/]+)?/libnatsgw_gateway\.a'
expect_file 'lib[^/]*(/[^/]+)?/libnatsgw_sdk\.a'
expect_file 'bin/natsgw-gen'
for f in natsgwConfig natsgwConfigVersion natsgwTargets NatsgwGenerate; do
  expect_file "lib[^/]*(/[^/]+)?/cmake/natsgw/$f\\.cmake"
done
expect_file 'lib[^/]*(/[^/]+)?/pkgconfig/natsgw\.pc'
expect_file 'share/natsgw/schemas/users\.fbs'
# Only public headers, and no example programs outside their component.
if grep -Eq '(\.in|\.cc)$|^include/natsgw/.*/' "$work/manifest"; then
  fail "unexpected files installed: $(grep -E '(\.in|\.cc)$|^include/natsgw/.*/' "$work/manifest")"
fi
for tool in "${tools[@]}"; do
  expect_file "bin/$tool"
done
bin_files="$(grep '^bin/' "$work/manifest" | tr '\n' ' ')"
want_bin="$(printf 'bin/%s\n' natsgw-gen "${tools[@]}" | LC_ALL=C sort | tr '\n' ' ')"
[[ "$bin_files" == "$want_bin" ]] || fail "bin/ holds: $bin_files (want: $want_bin)"

# --- relocatable -------------------------------------------------------------
# Paths of the machine that built the tree must not be baked into anything
# installed: not in the CMake or pkg-config files, not in debug information.
# A sanitizer build (never one to ship) is checked for its text files only:
# GCC 12 records the source files' absolute paths in its ASan and UBSan
# instrumentation whatever -ffile-prefix-map says.
scan=("$work/install")
scope="installed file"
if [[ -n "$SANITIZER_FLAGS" ]]; then
  mapfile -t scan < <(find "$work/install" -type f \( -name '*.cmake' -o -name '*.pc' -o -name '*.h' \))
  scope="installed text file (a sanitizer build: binaries not checked)"
fi
for dir in "$NATSGW_SOURCE_DIR" "$NATSGW_BUILD_DIR" \
  "$(realpath "$NATSGW_SOURCE_DIR")" "$(realpath "$NATSGW_BUILD_DIR")"; do
  if hits="$(grep -rlF -- "$dir" "${scan[@]}")"; then
    for hit in $hits; do
      echo "$hit:" >&2
      strings "$hit" | grep -F -- "$dir" | LC_ALL=C sort -u | head -5 | sed 's/^/    /' >&2
    done
    fail "installed files name $dir"
  fi
done
echo "ok: no ${scope} names the source or build directory"

# Used from elsewhere than where it was installed.
mv "$work/install" "$work/prefix"
prefix="$work/prefix"

# --- version compatibility ---------------------------------------------------
# 0.0: before 1.0 a minor release may break the API, so 0.1.x must not
# satisfy a request for 0.0 (SameMinorVersion); 0.2 and 1.0 are newer.
for request in 0.0 0.2 1.0; do
  step "version_probe_$request" "$CMAKE_COMMAND" -S "$here/version_probe" \
    -B "$work/version_probe_$request" -G "$CMAKE_GENERATOR" \
    ${CMAKE_MAKE_PROGRAM:+-DCMAKE_MAKE_PROGRAM="$CMAKE_MAKE_PROGRAM"} \
    -DCMAKE_PREFIX_PATH="$prefix" -DNATSGW_REQUEST="$request"
  grep -Fq "natsgw $request: not found (considered: $NATSGW_VERSION)" \
    "$work/logs/version_probe_$request.log" ||
    { cat "$work/logs/version_probe_$request.log" >&2; fail "find_package(natsgw $request) was not rejected by version $NATSGW_VERSION"; }
done
echo "ok: find_package(natsgw 0.0), (natsgw 0.2) and (natsgw 1.0) reject $NATSGW_VERSION"

# --- the CMake consumer ------------------------------------------------------
consumer_args=(-S "$here/consumer" -B "$work/consumer-build" -G "$CMAKE_GENERATOR"
  -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_CXX_COMPILER="$CXX"
  ${CMAKE_MAKE_PROGRAM:+-DCMAKE_MAKE_PROGRAM="$CMAKE_MAKE_PROGRAM"}
  -DCMAKE_CXX_FLAGS="$SANITIZER_FLAGS" -DCMAKE_EXE_LINKER_FLAGS="$SANITIZER_FLAGS")
if [[ -n "$BUILD_TYPE" ]]; then
  consumer_args+=(-DCMAKE_BUILD_TYPE="$BUILD_TYPE")
fi
step consumer_configure "$CMAKE_COMMAND" "${consumer_args[@]}"
# The package found must be the one just installed, not another on the system.
natsgw_dir="$(sed -n 's/^natsgw_DIR:PATH=//p' "$work/consumer-build/CMakeCache.txt")"
[[ "$natsgw_dir" == "$prefix"/* ]] || fail "find_package(natsgw) used $natsgw_dir, not $prefix"
step consumer_build "$CMAKE_COMMAND" --build "$work/consumer-build" --parallel 2 \
  "${config_args[@]}"
grep -Fq "$prefix/bin/natsgw-gen" "$work/logs/consumer_build.log" ||
  grep -rFq "$prefix/bin/natsgw-gen" "$work/consumer-build" ||
  fail "the consumer's stubs were not generated by the installed natsgw-gen"
consumer="$(find "$work/consumer-build" -type f -name consumer -perm -u+x | head -1)"
[[ -n "$consumer" ]] || fail "the consumer build produced no executable"
echo "ok: consumer configured with find_package(natsgw $NATSGW_VERSION) and built"

# --- the pkg-config consumer -------------------------------------------------
pc_dir="$(dirname "$(find "$prefix" -name natsgw.pc | head -1)")"
export PKG_CONFIG_PATH="$pc_dir${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
pc_version="$("$PKG_CONFIG" --modversion natsgw)"
[[ "$pc_version" == "$NATSGW_VERSION" ]] || fail "natsgw.pc says version $pc_version"
# shellcheck disable=SC2207  # pkg-config output is meant to be word-split
pc_flags=($("$PKG_CONFIG" --cflags --libs natsgw))
# shellcheck disable=SC2206
sanitizer_flags=($SANITIZER_FLAGS)
step pkgconfig_build "$CXX" -std=c++20 "${sanitizer_flags[@]}" \
  -o "$work/pkgconfig_consumer" "$here/consumer/pkgconfig_consumer.cc" "${pc_flags[@]}"
echo "ok: pkgconfig_consumer built with: ${pc_flags[*]}"

# --- run both against a real nats-server -------------------------------------
nats_server="${NATS_SERVER_EXE:-$(command -v nats-server || echo /usr/sbin/nats-server)}"
[[ -x "$nats_server" ]] || fail "nats-server not found (set NATS_SERVER_EXE)"
mkdir -p "$work/nats"
# Port -1: the kernel picks a free one; the ports file reports it once the
# listener is up, which also says the server is ready. `timeout` bounds the
# server's life even if this script is killed before its trap runs; it
# passes our TERM on to the server.
timeout 300 "$nats_server" -a 127.0.0.1 -p -1 --ports_file_dir "$work/nats" \
  -l "$work/nats/nats-server.log" </dev/null >/dev/null 2>&1 &
server_pid=$!
url=""
for _ in $(seq 1 200); do
  kill -0 "$server_pid" 2>/dev/null || { cat "$work/nats/nats-server.log" >&2; fail "nats-server exited"; }
  if ports_file="$(compgen -G "$work/nats/*.ports")"; then
    url="$(grep -o 'nats://127\.0\.0\.1:[0-9]*' "$ports_file" | head -1 || true)"
    [[ -n "$url" ]] && break
  fi
  sleep 0.1
done
[[ -n "$url" ]] || fail "nats-server did not report its port within 20 s"

run_against_server() {
  local name="$1" want="$2" out
  shift 2
  if ! out="$(timeout 60 "$@" "$url" 2>&1)"; then
    echo "$out" >&2
    fail "$name exited non-zero"
  fi
  echo "$name: $out"
  [[ "$out" =~ $want ]] || fail "$name printed '$out', want /$want/"
}
run_against_server consumer \
  "^natsgw ${NATSGW_VERSION//./\\.}: pong: installed sdk \(13\) trace [0-9a-f]{32}\$" \
  "$consumer"
run_against_server pkgconfig_consumer \
  "^natsgw ${NATSGW_VERSION//./\\.} via pkg-config: echo on trace [0-9a-f]{32}\$" \
  "$work/pkgconfig_consumer"

# --- the tools, from the moved prefix -----------------------------------------
# Relocatable means they run from where the prefix went and find the
# installed schemas there (through --schema or NATSGW_SCHEMA_PATH; nothing is
# compiled in). No service answers on this server, so a call that gets as far
# as NATS fails with "no responders": exit status 1 for natsgw (3 would be "no
# schema", 2 JSON the schema rejects), HTTP 503 for natsgw-edge.
schemas="$prefix/share/natsgw/schemas"
for tool in "${tools[@]}"; do
  case "$tool" in
    natsgw)
      out="$("$prefix/bin/natsgw" --version 2>&1)" || fail "natsgw --version exited non-zero: $out"
      [[ "$out" == "natsgw $NATSGW_VERSION" ]] || fail "natsgw --version printed '$out'"
      status=0
      out="$(NATSGW_SCHEMA_PATH="$schemas" timeout 60 "$prefix/bin/natsgw" call users.RegisterUser \
        '{"email": "ada@example.com", "no_such_field": 1}' --nats_url="$url" 2>&1)" || status=$?
      [[ $status -eq 2 && "$out" == *no_such_field* ]] ||
        fail "natsgw call with an unknown field: exit $status (want 2, naming the field): $out"
      status=0
      out="$(NATSGW_SCHEMA_PATH="$schemas" timeout 60 "$prefix/bin/natsgw" call users.RegisterUser \
        '{"email": "ada@example.com"}' --nats_url="$url" --timeout=2s 2>&1)" || status=$?
      [[ $status -eq 1 ]] || fail "natsgw call with no service: exit $status (want 1, no responders): $out"
      echo "ok: natsgw $NATSGW_VERSION runs from the moved prefix with its schemas"
      ;;
    natsgw-edge)
      timeout 120 "$prefix/bin/natsgw-edge" --nats_url="$url" --listen_address=127.0.0.1 \
        --port=0 --metrics_port=-1 --schema="$schemas" --allow_call=users.RegisterUser \
        --allow_unauthenticated </dev/null >"$work/edge.log" 2>&1 &
      edge_pid=$!
      api=""
      for _ in $(seq 1 200); do
        kill -0 "$edge_pid" 2>/dev/null || { cat "$work/edge.log" >&2; fail "natsgw-edge exited"; }
        api="$(grep -o 'ready: HTTP/JSON API on http://127\.0\.0\.1:[0-9]*' "$work/edge.log" | grep -o 'http://.*' || true)"
        [[ -n "$api" ]] && break
        sleep 0.1
      done
      [[ -n "$api" ]] || { cat "$work/edge.log" >&2; fail "natsgw-edge was not ready within 20 s"; }
      code="$(curl -s -o "$work/edge-healthz" -w '%{http_code}' --max-time 10 "$api/healthz")"
      [[ "$code" == 200 ]] || fail "natsgw-edge /healthz: HTTP $code: $(cat "$work/edge-healthz")"
      code="$(curl -s -o "$work/edge-call" -w '%{http_code}' --max-time 30 \
        -H 'Content-Type: application/json' -d '{"email": "ada@example.com"}' \
        "$api/v1/call/users.RegisterUser?timeout_ms=2000")"
      [[ "$code" == 503 ]] ||
        fail "natsgw-edge call with no service: HTTP $code (want 503, no responders): $(cat "$work/edge-call")"
      kill -TERM "$edge_pid"
      status=0
      wait "$edge_pid" || status=$?
      edge_pid=""
      [[ $status -eq 0 ]] || { cat "$work/edge.log" >&2; fail "natsgw-edge exited $status after SIGTERM"; }
      echo "ok: natsgw-edge runs from the moved prefix with its schemas ($api)"
      ;;
    *) fail "unknown tool $tool" ;;
  esac
done

# --- the examples component --------------------------------------------------
if [[ "$EXAMPLES" == 1 ]]; then
  step install_examples "$CMAKE_COMMAND" --install "$NATSGW_BUILD_DIR" \
    --prefix "$work/examples" --component examples "${config_args[@]}"
  got="$(cd "$work/examples" && find . -type f -o -type l | sed 's|^\./||' | LC_ALL=C sort | tr '\n' ' ')"
  want="bin/email-service bin/natsgw-gen bin/register-users bin/user-service "
  [[ "$got" == "$want" ]] || fail "component examples installs: $got (want: $want)"
  echo "ok: component examples installs $want"
fi

echo "packaging test passed"
