# shellcheck shell=bash
# Shared set-up for scripts/demo and scripts/test (sourced, not executed).
#
#   natsgw_install_packages   install missing Debian packages (idempotent)
#   natsgw_install_runtime_packages
#                             only what the built binaries load at run time
#                             (the container image's runtime stage)
#   natsgw_install_npm        Node.js, npm and the npm packages of the Node.js
#                             tests (tests/interop, tests/k8s; idempotent)
#   natsgw_check_kubectl      says so when kubectl (k8s/ tests) is missing
#   natsgw_build [target...]  configure and build into $BUILD_DIR
#
# Environment:
#   BUILD_DIR              build tree (default: <repo>/build)
#   NATSGW_SKIP_INSTALL=1  do not touch packages, Debian or npm (e.g. without
#                          root, or offline)
#   NATSGW_SKIP_BUILD=1    use $BUILD_DIR as it is (ctest runs the demo so)
#   CMAKE_BUILD_TYPE       default RelWithDebInfo
#   NATSGW_CMAKE_ARGS      extra arguments for the CMake configure step

set -euo pipefail

NATSGW_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD_DIR="${BUILD_DIR:-${NATSGW_ROOT}/build}"

# Everything the build, the tests and the demo need, all from Debian bookworm.
NATSGW_PACKAGES=(
  g++ cmake ninja-build pkg-config make
  libnats-dev nats-server
  libflatbuffers-dev flatbuffers-compiler
  libabsl-dev prometheus-cpp-dev nlohmann-json3-dev libcivetweb-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  prometheus
  curl ca-certificates openssl
)

# What the built example services and natsgw-gen load at run time, and
# nothing more: the container image's runtime stage (Dockerfile) installs
# exactly these. They are the packages owning every shared library `ldd`
# resolves for the binaries (libssl3 and libprotobuf-c1 through libnats),
# less libc6, libgcc-s1 and libstdc++6, which every Debian image has (apt
# depends on them). The test packaging.dockerfile (tests/packaging/docker)
# keeps the list exact.
NATSGW_RUNTIME_PACKAGES=(
  libnats3.4 libssl3 libprotobuf-c1
  libabsl20220623 libprometheus-cpp-core1.0 libcivetweb1
)

natsgw_log() { printf '==> %s\n' "$*" >&2; }

# natsgw_install_missing <what> <package...>: installs those of the packages
# that are not installed yet (idempotent), naming <what> they are for.
natsgw_install_missing() {
  local what="$1"
  shift
  if [[ "${NATSGW_SKIP_INSTALL:-0}" == "1" ]]; then
    return 0
  fi
  if ! command -v dpkg-query >/dev/null 2>&1; then
    natsgw_log "not a Debian system: for ${what} install the equivalents of: $*"
    return 0
  fi
  local pkg missing=()
  for pkg in "$@"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
      missing+=("$pkg")
    fi
  done
  if [[ ${#missing[@]} -eq 0 ]]; then
    return 0
  fi
  natsgw_apt_install "${missing[@]}"
}

natsgw_install_packages() {
  natsgw_install_missing "the build, the tests and the demo" "${NATSGW_PACKAGES[@]}"
}

# natsgw-bench's gRPC C++ comparison scenarios (scripts/bench) need gRPC and
# protobuf; nothing else does, so they are not in NATSGW_PACKAGES.
natsgw_install_bench_packages() {
  natsgw_install_missing "the gRPC benchmarks" \
    libgrpc++-dev protobuf-compiler-grpc protobuf-compiler libprotobuf-dev
}

# The fuzz smoke of the test run (tests/fuzz: libFuzzer with ASan and UBSan)
# needs clang and its libFuzzer runtime; the build, the demo and the image do
# not, so scripts/test installs them and nothing else does.
NATSGW_TEST_PACKAGES=(clang libclang-rt-14-dev)

natsgw_install_test_packages() {
  natsgw_install_missing "the fuzz smoke test" "${NATSGW_TEST_PACKAGES[@]}"
}

# The runtime half of NATSGW_PACKAGES, for a machine or image that only runs
# the built binaries (the Dockerfile's runtime stage).
natsgw_install_runtime_packages() {
  natsgw_install_missing "running the binaries" "${NATSGW_RUNTIME_PACKAGES[@]}"
}

# natsgw_apt_install <package...>: apt-get install, non-interactively, as
# root or through sudo.
natsgw_apt_install() {
  local missing=("$@")
  local sudo=()
  if [[ "$(id -u)" != "0" ]]; then
    if command -v sudo >/dev/null 2>&1; then
      sudo=(sudo)
    else
      natsgw_log "missing packages and not root: apt-get install ${missing[*]}"
      return 1
    fi
  fi
  natsgw_log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  local apt=("${sudo[@]}" apt-get -y -q -o Dpkg::Use-Pty=0)
  # Packages such as prometheus ship a daemon that Debian starts on install;
  # the tests start their own instances on free ports, so a system one would
  # only hold port 9090. A temporary policy-rc.d (the convention Debian
  # container images use) keeps invoke-rc.d from starting anything.
  local policy=/usr/sbin/policy-rc.d own_policy=0
  if [[ ! -e "${policy}" ]]; then
    printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "${policy}" >/dev/null
    "${sudo[@]}" chmod 755 "${policy}"
    own_policy=1
  fi
  local rc=0
  # A fresh machine may have no package lists yet: update once and retry.
  if ! "${apt[@]}" install --no-install-recommends "${missing[@]}" >/dev/null; then
    natsgw_log "apt-get install failed; refreshing package lists and retrying"
    "${apt[@]}" update >/dev/null &&
      "${apt[@]}" install --no-install-recommends "${missing[@]}" >/dev/null ||
      rc=$?
  fi
  if [[ "${own_policy}" == "1" ]]; then "${sudo[@]}" rm -f "${policy}"; fi
  return "${rc}"
}

# The Node.js tests need node, and npm to install the packages each
# package-lock.json pins: tests/interop (nats.js peers) and tests/k8s (the
# offline manifest validator). Node is looked up on PATH rather than in dpkg:
# a node installed some other way (NodeSource, nvm, a container image) is
# used as it is, and Debian's nodejs/npm, which would conflict with it, are
# installed only when there is no node at all. `npm ci` runs here, at set-up
# time, so that building and testing never download anything; a stamp in
# node_modules makes it run again only when the lock file changes.
natsgw_install_npm() {
  if [[ "${NATSGW_SKIP_INSTALL:-0}" == "1" ]]; then
    return 0
  fi
  if ! command -v node >/dev/null 2>&1; then
    if ! command -v dpkg-query >/dev/null 2>&1; then
      natsgw_log "not a Debian system: install Node.js (>= 20) and npm for the Node.js tests"
      return 0
    fi
    local packages=(nodejs)
    command -v npm >/dev/null 2>&1 || packages+=(npm)
    natsgw_log "installing Node.js for the Node.js tests: ${packages[*]}"
    natsgw_apt_install "${packages[@]}"
  fi
  # Debian bookworm's own nodejs is 18; the k8s/ validator's packages need
  # 20 or newer (the interop tests run on 18).
  local major
  major="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)"
  if [[ "${major}" -lt 20 ]]; then
    natsgw_log "Node.js $(node --version 2>/dev/null) is older than 20: the k8s/ tests (ctest -L k8s) need Node.js 20 or newer"
  fi
  local name
  for name in interop k8s; do
    local dir="${NATSGW_ROOT}/tests/${name}"
    local stamp="${dir}/node_modules/.natsgw-npm-ci.stamp"
    if [[ -f "${stamp}" && "${stamp}" -nt "${dir}/package-lock.json" &&
          "${stamp}" -nt "${dir}/package.json" ]]; then
      continue
    fi
    if ! command -v npm >/dev/null 2>&1; then
      natsgw_log "node is installed ($(command -v node)) but npm is not: install the npm that goes with it, then rerun"
      return 1
    fi
    natsgw_log "installing the npm packages of tests/${name} (npm ci)"
    # A failed or interrupted install leaves no stamp, so the next run
    # retries.
    (cd "${dir}" && npm ci --no-audit --no-fund --loglevel=error) >&2
    touch "${stamp}"
  done
}

# The k8s/ tests render the manifests with `kubectl kustomize`. Debian
# bookworm has no kubectl package, so it is not installed here; without it
# those tests fail and say so.
natsgw_check_kubectl() {
  if ! command -v kubectl >/dev/null 2>&1; then
    natsgw_log "kubectl not found: the k8s manifest tests (ctest -L k8s) need it (Kubernetes' kubectl package, client only)"
  fi
}

natsgw_build() {
  if [[ "${NATSGW_SKIP_BUILD:-0}" == "1" ]]; then
    return 0
  fi
  local generator=()
  if command -v ninja >/dev/null 2>&1; then
    generator=(-G Ninja)
  fi
  # Reconfigure only when needed: a tree configured with another generator
  # is reused as it is.
  if [[ ! -f "${BUILD_DIR}/CMakeCache.txt" ]]; then
    natsgw_log "configuring ${BUILD_DIR}"
    # shellcheck disable=SC2086
    cmake -S "${NATSGW_ROOT}" -B "${BUILD_DIR}" "${generator[@]}" \
      -DCMAKE_BUILD_TYPE="${CMAKE_BUILD_TYPE:-RelWithDebInfo}" \
      ${NATSGW_CMAKE_ARGS:-} >/dev/null
  fi
  natsgw_log "building ${*:-everything} in ${BUILD_DIR}"
  local targets=()
  local t
  for t in "$@"; do targets+=(--target "$t"); done
  cmake --build "${BUILD_DIR}" --parallel "$(nproc)" "${targets[@]}"
}
