#!/usr/bin/env bash
# packaging.dockerfile: keeps the Dockerfile and scripts/lib/setup.sh from
# drifting apart. The image itself is not built by the test suite (that needs
# a container engine); this checks what can be checked without one.
#
#   dockerfile_test.sh --source-dir DIR --bin-dir DIR --version X.Y.Z
#                      [--dockerfile FILE] [--setup FILE]
#
# --dockerfile and --setup default to DIR/Dockerfile and
# DIR/scripts/lib/setup.sh; pointing them at edited copies shows the checks
# failing. --bin-dir is the build tree's bin/ (the binaries the image copies).
#
# (a) The Dockerfile: the build stage is debian:bookworm and, in the RUN
#     steps that call them, sources scripts/lib/setup.sh before calling
#     natsgw_install_packages and natsgw_build (so it installs the scripts'
#     package list and builds as scripts/test does); the runtime stage is
#     debian:bookworm(-slim) and installs through natsgw_install_runtime_packages
#     (NATSGW_RUNTIME_PACKAGES); no apt install with a literal package name
#     anywhere; -DNATSGW_* options it passes exist; numeric non-root USER;
#     exec-form CMD/ENTRYPOINT naming a copied binary; the version label is the
#     project's; the image's binaries are copied to /usr/local/bin, are built
#     in the image, and exist in --bin-dir; the mail spool is a VOLUME;
#     the metrics port and natsgw-edge's API port are exposed; every
#     schemas/*.fbs is copied from the build context to the schema directory
#     and NATSGW_SCHEMA_PATH names it (k8s/ passes that directory to
#     natsgw-edge's --schema).
# (b) Every shared library `ldd` resolves for those binaries is owned (dpkg -S)
#     by a package that is either in NATSGW_RUNTIME_PACKAGES or in every
#     Debian image (BASE_PACKAGES below), and every NATSGW_RUNTIME_PACKAGES
#     entry is such an owner: the list is exact. With local apt lists, every
#     entry must also have an install candidate.
# (c) The build half: every library a binary links directly (ELF NEEDED) comes
#     from a source package that NATSGW_PACKAGES also installs a package of
#     (its -dev package), so the scripts' build and the image's runtime agree.
#
# (b) and (c) need a Debian bookworm host (dpkg, ldd, readelf): package names
# differ between releases. Elsewhere they are skipped with a message; (a)
# always runs.
set -euo pipefail

usage() {
  echo "usage: $0 --source-dir DIR --bin-dir DIR --version X.Y.Z [--dockerfile FILE] [--setup FILE]" >&2
  exit 2
}

source_dir="" bin_dir="" version="" dockerfile="" setup=""
while [[ $# -gt 0 ]]; do
  [[ $# -ge 2 ]] || usage
  case "$1" in
    --source-dir) source_dir="$2" ;;
    --bin-dir) bin_dir="$2" ;;
    --version) version="$2" ;;
    --dockerfile) dockerfile="$2" ;;
    --setup) setup="$2" ;;
    *) usage ;;
  esac
  shift 2
done
[[ -n "${source_dir}" && -n "${bin_dir}" && -n "${version}" ]] || usage
dockerfile="${dockerfile:-${source_dir}/Dockerfile}"
setup="${setup:-${source_dir}/scripts/lib/setup.sh}"

# What the image holds (the Kubernetes manifests run these).
IMAGE_BINARIES=(user-service email-service register-users natsgw-gen natsgw natsgw-edge)
IMAGE_BIN_DIR=/usr/local/bin
# The wire contract, where natsgw and natsgw-edge load it from (the same
# place as `cmake --install`'s <prefix>/share/natsgw/schemas, for /usr).
IMAGE_SCHEMA_DIR=/usr/share/natsgw/schemas
MAIL_SPOOL=/var/spool/natsgw-mail
METRICS_PORT=9090
EDGE_PORT=8080
# In every Debian image, debian:bookworm-slim included: apt, which no image
# lacks, depends on all three (checked below against the local apt's
# Depends), so NATSGW_RUNTIME_PACKAGES does not name them.
BASE_PACKAGES=(libc6 libgcc-s1 libstdc++6)

failures=0
fail() {
  printf 'FAIL: %s\n' "$*"
  failures=$((failures + 1))
}
pass() { printf 'ok: %s\n' "$*"; }
skip() { printf 'SKIPPED: %s\n' "$*"; }

in_list() {  # in_list <word> <list...>
  local word="$1" w
  shift
  for w in "$@"; do [[ "${w}" == "${word}" ]] && return 0; done
  return 1
}

abbrev() {  # abbrev <space-separated words>: the first two, and how many more
  local -a words
  read -ra words <<<"$1"
  local text="${words[*]:0:2}"
  if [[ ${#words[@]} -gt 2 ]]; then text+=" and $((${#words[@]} - 2)) more"; fi
  printf '%s' "${text}"
}

for f in "${dockerfile}" "${setup}"; do
  if [[ ! -f "${f}" ]]; then
    echo "FAIL: ${f} does not exist"
    exit 1
  fi
done

# ---------------------------------------------------------------------------
# setup.sh, sourced in a child shell (it only defines variables and
# functions).
setup_array() {  # setup_array <name>: one element a line
  bash -c 'source "$1" >/dev/null
           declare -p "$2" >/dev/null 2>&1 || exit 3
           declare -n array="$2"
           printf "%s\n" "${array[@]}"' _ "${setup}" "$1"
}
setup_function() {  # setup_function <name>: its body, or nothing
  bash -c 'source "$1" >/dev/null; declare -f "$2" || true' _ "${setup}" "$1"
}

runtime_packages=()
if out="$(setup_array NATSGW_RUNTIME_PACKAGES)"; then
  mapfile -t runtime_packages < <(printf '%s\n' "${out}" | sed '/^$/d')
fi
build_packages=()
if out="$(setup_array NATSGW_PACKAGES)"; then
  mapfile -t build_packages < <(printf '%s\n' "${out}" | sed '/^$/d')
fi
if [[ ${#runtime_packages[@]} -eq 0 ]]; then
  fail "${setup} defines no (or an empty) NATSGW_RUNTIME_PACKAGES"
fi
if [[ ${#build_packages[@]} -eq 0 ]]; then
  fail "${setup} defines no (or an empty) NATSGW_PACKAGES"
fi
# Captured first: with pipefail, `grep -q` exiting at the first match could
# fail the pipeline through the writer's SIGPIPE.
runtime_function="$(setup_function natsgw_install_runtime_packages)"
if grep -q 'NATSGW_RUNTIME_PACKAGES' <<<"${runtime_function}"; then
  pass "setup.sh: natsgw_install_runtime_packages installs NATSGW_RUNTIME_PACKAGES"
else
  fail "setup.sh: no natsgw_install_runtime_packages installing NATSGW_RUNTIME_PACKAGES"
fi

# ---------------------------------------------------------------------------
# (a) The Dockerfile, as instructions: comment lines dropped (also inside a
# continued instruction, as Docker does), continuation lines joined.
mapfile -t instructions < <(awk '
  { sub(/\r$/, "") }
  /^[[:space:]]*#/ { next }
  cont != "" && /^[[:space:]]*$/ { next }
  { line = cont $0 }
  line ~ /\\[[:space:]]*$/ { sub(/\\[[:space:]]*$/, " ", line); cont = line; next }
  { cont = ""; sub(/^[[:space:]]+/, "", line); if (line != "") print line }
  END { if (cont != "") print cont }
' "${dockerfile}")

stage_images=() stage_names=()
rec_stage=() rec_kw=() rec_args=()
stage=-1
for ins in "${instructions[@]}"; do
  kw="${ins%%[[:space:]]*}"
  kw="${kw^^}"
  args=""
  [[ "${ins}" =~ ^[^[:space:]]+[[:space:]]+(.*)$ ]] && args="${BASH_REMATCH[1]}"
  if [[ "${kw}" == FROM ]]; then
    stage=$((stage + 1))
    read -ra words <<<"${args}"
    i=0
    while [[ "${words[i]:-}" == --* ]]; do i=$((i + 1)); done
    stage_images[stage]="${words[i]:-}"
    stage_names[stage]=""
    if [[ "${words[i + 1]:-}" =~ ^[Aa][Ss]$ ]]; then
      stage_names[stage]="${words[i + 2]:-}"
    fi
    continue
  fi
  if [[ "${kw}" == *'<<'* || "${args}" == *'<<'[A-Za-z\"\'-]* ]]; then
    fail "Dockerfile: a heredoc (${ins:0:60}...) cannot be checked; use plain RUN lines"
  fi
  rec_stage+=("${stage}")
  rec_kw+=("${kw}")
  rec_args+=("${args}")
done

num_stages=${#stage_images[@]}
if [[ ${num_stages} -lt 2 ]]; then
  fail "Dockerfile: expected a build stage and a runtime stage, found ${num_stages} stage(s)"
fi
build_stage=-1
for ((s = 0; s < num_stages; s++)); do
  if [[ "${stage_names[s],,}" == build ]]; then build_stage=${s}; fi
done
last_stage=$((num_stages - 1))
digest='(@sha256:[0-9a-f]{64})?'
if [[ ${build_stage} -lt 0 ]]; then
  fail "Dockerfile: no stage named 'build'"
elif [[ "${stage_images[build_stage]}" =~ ^debian:bookworm${digest}$ ]]; then
  pass "build stage: FROM ${stage_images[build_stage]}"
else
  fail "build stage: FROM ${stage_images[build_stage]}, expected debian:bookworm (the scripts' release)"
fi
if [[ ${last_stage} -le ${build_stage} ]]; then
  fail "Dockerfile: the build stage is the last stage; the image must be a separate runtime stage"
elif [[ "${stage_images[last_stage]}" =~ ^debian:bookworm(-slim)?${digest}$ ]]; then
  pass "runtime stage: FROM ${stage_images[last_stage]}"
else
  fail "runtime stage: FROM ${stage_images[last_stage]}, expected debian:bookworm-slim"
fi

# run_command <args>: a RUN's shell command without its --flags.
run_command() {
  local cmd="$1"
  while [[ "${cmd}" =~ ^--[^[:space:]]+[[:space:]]+(.*)$ ]]; do cmd="${BASH_REMATCH[1]}"; done
  printf '%s' "${cmd}"
}
run_flags() {
  local cmd="$1" flags=""
  while [[ "${cmd}" =~ ^(--[^[:space:]]+)[[:space:]]+(.*)$ ]]; do
    flags+="${BASH_REMATCH[1]} "
    cmd="${BASH_REMATCH[2]}"
  done
  printf '%s' "${flags}"
}
sep='[[:space:];&|()]'
calls() {  # calls <command> <function>
  [[ "$1" =~ (^|${sep})$2(${sep}|$) ]]
}
# sources_setup_first <command> <function>: the command sources
# .../scripts/lib/setup.sh before its first call of <function> (functions do
# not outlive a RUN step, so it must be the same step).
sources_setup_first() {
  local before="${1%%"$2"*}"
  [[ "${before}" =~ (^|${sep})(source|\.)[[:space:]]+[\"\']?[^[:space:]\;\&\|]*scripts/lib/setup\.sh[\"\']?(${sep}|$) ]]
}
# literal_apt_packages <command>: the literal package names of the apt-get /
# apt / aptitude install commands in it, one a line.
literal_apt_packages() {
  local simple words w i tool
  local IFS=$'\n'
  for simple in $(printf '%s\n' "$1" | sed -E 's/(&&|\|\||;|\|)/\n/g'); do
    IFS=$' \t' read -ra words <<<"${simple}"
    tool="" i=0
    while [[ $i -lt ${#words[@]} ]]; do
      w="${words[i]}"
      if [[ -z "${tool}" ]]; then
        case "${w##*/}" in
          apt-get | apt | aptitude) tool="${w}" ;;
        esac
        i=$((i + 1))
        continue
      fi
      if [[ "${tool}" != install ]]; then
        case "${w}" in
          -o | -c | -t | --option | --config-file | --target-release) i=$((i + 2)); continue ;;
          -*) ;;
          install | reinstall) tool=install ;;
          *) break ;;  # another subcommand (update, clean, ...)
        esac
        i=$((i + 1))
        continue
      fi
      case "${w}" in
        -o | -c | -t | --option | --config-file | --target-release) i=$((i + 1)) ;;
        -* | \$* | \"\$* | '') ;;
        *) printf '%s\n' "${w}" ;;
      esac
      i=$((i + 1))
    done
  done
}

found_install=0 found_build=0 found_runtime_install=0 runtime_setup_mounted=0
build_targets=() build_args_seen=""
for ((r = 0; r < ${#rec_kw[@]}; r++)); do
  s="${rec_stage[r]}"
  kw="${rec_kw[r]}"
  args="${rec_args[r]}"
  if [[ "${kw}" == RUN ]]; then
    cmd="$(run_command "${args}")"
    mapfile -t literal < <(literal_apt_packages "${cmd}")
    if [[ ${#literal[@]} -gt 0 ]]; then
      fail "Dockerfile stage ${s}: apt install with literal package names (${literal[*]}); install through setup.sh's functions"
    fi
    if [[ ${s} -eq ${build_stage} ]]; then
      if calls "${cmd}" natsgw_install_packages; then
        if sources_setup_first "${cmd}" natsgw_install_packages; then
          found_install=1
        else
          fail "build stage: natsgw_install_packages is called without sourcing scripts/lib/setup.sh first in the same RUN"
        fi
      fi
      if calls "${cmd}" natsgw_build; then
        if sources_setup_first "${cmd}" natsgw_build; then
          found_build=1
          tail="${cmd#*natsgw_build}"
          tail="${tail%%[;&|]*}"
          read -ra build_targets <<<"${tail}"
        else
          fail "build stage: natsgw_build is called without sourcing scripts/lib/setup.sh first in the same RUN"
        fi
      fi
    fi
    if [[ ${s} -eq ${last_stage} ]]; then
      for fn in natsgw_install_packages natsgw_build; do
        if calls "${cmd}" "${fn}"; then
          fail "runtime stage calls ${fn}: the image would carry the build toolchain"
        fi
      done
      if calls "${cmd}" natsgw_install_runtime_packages; then
        if sources_setup_first "${cmd}" natsgw_install_runtime_packages; then
          found_runtime_install=1
        else
          fail "runtime stage: natsgw_install_runtime_packages is called without sourcing scripts/lib/setup.sh first in the same RUN"
        fi
        if [[ "$(run_flags "${args}")" =~ --mount=[^[:space:]]*source=(\./)?scripts/lib(/setup\.sh)?(,|[[:space:]]|$) ]]; then
          runtime_setup_mounted=1
        fi
      fi
    fi
  fi
  if [[ ${s} -eq ${last_stage} && "${kw}" == COPY && ! "${args}" =~ --from= ]]; then
    if [[ "${args}" =~ (^|[[:space:]])(\./)?scripts/lib(/setup\.sh)?/?([[:space:]]) ]]; then
      runtime_setup_mounted=1
    fi
  fi
done
build_args_seen="$(grep -oE -- '-DNATSGW_[A-Z0-9_]+=' "${dockerfile}" | sort -u | sed -E 's/^-D(.*)=$/\1/' || true)"

if [[ ${found_install} -eq 1 ]]; then
  pass "build stage: sources scripts/lib/setup.sh and calls natsgw_install_packages"
else
  fail "build stage: no RUN sourcing scripts/lib/setup.sh and calling natsgw_install_packages"
fi
if [[ ${found_build} -eq 1 ]]; then
  pass "build stage: sources scripts/lib/setup.sh and calls natsgw_build ${build_targets[*]:-}"
else
  fail "build stage: no RUN sourcing scripts/lib/setup.sh and calling natsgw_build"
fi
if [[ ${found_runtime_install} -eq 1 ]]; then
  pass "runtime stage: sources scripts/lib/setup.sh and calls natsgw_install_runtime_packages"
else
  fail "runtime stage: no RUN sourcing scripts/lib/setup.sh and calling natsgw_install_runtime_packages"
fi
if [[ ${found_runtime_install} -eq 1 ]]; then
  if [[ ${runtime_setup_mounted} -eq 1 ]]; then
    pass "runtime stage: setup.sh comes from the build context (scripts/lib)"
  else
    fail "runtime stage: setup.sh is sourced but neither bind-mounted nor copied from scripts/lib"
  fi
fi
for opt in ${build_args_seen}; do
  if grep -qE "(option|set)\(${opt}[[:space:]]" "${source_dir}/CMakeLists.txt" "${source_dir}"/cmake/*.cmake 2>/dev/null; then
    pass "CMake option ${opt} exists"
  else
    fail "the Dockerfile sets -D${opt}, which the project's CMakeLists.txt does not define"
  fi
done

# The runtime stage's USER, COPY --from=build, CMD/ENTRYPOINT, LABEL, EXPOSE
# and VOLUME.
user="" cmd_json="" entry_json="" labels="" exposed="" volumes="" envs=""
copied=() schema_sources=()
for ((r = 0; r < ${#rec_kw[@]}; r++)); do
  [[ ${rec_stage[r]} -eq ${last_stage} ]] || continue
  args="${rec_args[r]}"
  case "${rec_kw[r]}" in
    USER) user="${args}" ;;
    CMD) cmd_json="${args}" ;;
    ENTRYPOINT) entry_json="${args}" ;;
    LABEL) labels+="${args} " ;;
    EXPOSE) exposed+="${args} " ;;
    VOLUME) volumes+="${args} " ;;
    ENV) envs+="${args} " ;;
    COPY | ADD)
      if [[ ! "${args}" =~ --from= ]]; then
        # From the build context: the schemas (scripts/lib is checked above).
        read -ra words <<<"${args}"
        paths=()
        for w in "${words[@]}"; do [[ "${w}" == --* ]] || paths+=("${w}"); done
        [[ ${#paths[@]} -ge 2 ]] || continue
        dest="${paths[-1]}"
        unset 'paths[-1]'
        if [[ "${dest%/}" == "${IMAGE_SCHEMA_DIR}" ]]; then
          schema_sources+=("${paths[@]}")
        fi
        continue
      fi
      [[ "${args}" =~ --from=([^[:space:]]+) ]] || continue
      from="${BASH_REMATCH[1]}"
      if [[ "${from}" != build && "${from}" != "${build_stage}" ]]; then
        fail "runtime stage: COPY --from=${from}: binaries must come from the build stage"
        continue
      fi
      if [[ "${args}" =~ ^(--[^[:space:]]+[[:space:]]+)*\[ ]]; then
        fail "runtime stage: COPY in JSON form cannot be checked; use the plain form"
        continue
      fi
      read -ra words <<<"${args}"
      paths=()
      for w in "${words[@]}"; do [[ "${w}" == --* ]] || paths+=("${w}"); done
      dest="${paths[-1]}"
      unset 'paths[-1]'
      if [[ "${dest%/}" != "${IMAGE_BIN_DIR}" ]]; then
        fail "runtime stage: COPY --from=build to ${dest}: the build stage gives the image its binaries, in ${IMAGE_BIN_DIR}/"
        continue
      fi
      for p in "${paths[@]}"; do copied+=("${p##*/}"); done
      ;;
  esac
done

if [[ "${user}" =~ ^([0-9]+)(:([0-9]+))?$ ]]; then
  if [[ "${BASH_REMATCH[1]}" -ne 0 && ( -z "${BASH_REMATCH[3]}" || "${BASH_REMATCH[3]}" -ne 0 ) ]]; then
    pass "runtime stage: USER ${user} (numeric, not root)"
  else
    fail "runtime stage: USER ${user} is root"
  fi
elif [[ -z "${user}" ]]; then
  fail "runtime stage: no USER; the image would run as root"
else
  fail "runtime stage: USER ${user} is not numeric uid[:gid] (runAsNonRoot cannot verify a name)"
fi

if [[ ${#copied[@]} -eq 0 ]]; then
  fail "runtime stage: copies no binary from the build stage"
fi
for b in "${IMAGE_BINARIES[@]}"; do
  in_list "${b}" "${copied[@]}" || fail "runtime stage: ${b} is not copied to ${IMAGE_BIN_DIR}"
done
present=()
for b in "${copied[@]}"; do
  if [[ ${#build_targets[@]} -gt 0 ]] && ! in_list "${b}" "${build_targets[@]}"; then
    fail "${b} is copied but the build stage's natsgw_build does not build it (targets: ${build_targets[*]})"
  fi
  if [[ -f "${bin_dir}/${b}" && -x "${bin_dir}/${b}" ]]; then
    present+=("${b}")
  else
    fail "${b} is copied but ${bin_dir}/${b} is not a built executable"
  fi
done
[[ ${#present[@]} -gt 0 ]] && pass "copied binaries exist in the build tree: ${present[*]}"

program=""
for json in "${entry_json}" "${cmd_json}"; do
  [[ -n "${json}" ]] || continue
  if [[ ! "${json}" =~ ^\[ ]]; then
    fail "runtime stage: '${json}' is in shell form; use the exec form [\"...\"] (no shell at run time)"
  elif [[ -z "${program}" && "${json}" =~ ^\[[[:space:]]*\"([^\"]+)\" ]]; then
    program="${BASH_REMATCH[1]}"
  fi
done
if [[ -z "${entry_json}${cmd_json}" ]]; then
  fail "runtime stage: neither CMD nor ENTRYPOINT"
elif [[ -n "${program}" ]]; then
  if in_list "${program#"${IMAGE_BIN_DIR}"/}" "${copied[@]}"; then
    pass "runtime stage: runs ${program} (exec form)"
  else
    fail "runtime stage: runs ${program}, which is not one of the copied binaries"
  fi
fi

for key in title version licenses; do
  if [[ "${labels}" =~ org\.opencontainers\.image\.${key}=(\"([^\"]*)\"|([^[:space:]]*)) ]]; then
    value="${BASH_REMATCH[2]}${BASH_REMATCH[3]}"
    if [[ -z "${value}" ]]; then
      fail "label org.opencontainers.image.${key} is empty"
    elif [[ "${key}" == version && "${value}" != "${version}" ]]; then
      fail "label org.opencontainers.image.version=${value}, but the project's version is ${version}"
    else
      pass "label org.opencontainers.image.${key}=${value}"
    fi
  else
    fail "runtime stage: no label org.opencontainers.image.${key}"
  fi
done
if [[ " ${exposed} " =~ [[:space:]]${METRICS_PORT}(/tcp)?[[:space:]] ]]; then
  pass "runtime stage: EXPOSE ${METRICS_PORT}"
else
  fail "runtime stage: does not EXPOSE the metrics port ${METRICS_PORT}"
fi
if [[ " ${exposed} " =~ [[:space:]]${EDGE_PORT}(/tcp)?[[:space:]] ]]; then
  pass "runtime stage: EXPOSE ${EDGE_PORT} (natsgw-edge's API)"
else
  fail "runtime stage: does not EXPOSE natsgw-edge's API port ${EDGE_PORT}"
fi

# The schemas: every schemas/*.fbs of the source tree is matched by a source
# of a COPY to IMAGE_SCHEMA_DIR (a glob like schemas/*.fbs keeps new schemas
# in), and NATSGW_SCHEMA_PATH points there.
mapfile -t schema_files < <(cd "${source_dir}" && compgen -G 'schemas/*.fbs' | LC_ALL=C sort || true)
if [[ ${#schema_files[@]} -eq 0 ]]; then
  fail "no schemas/*.fbs in ${source_dir}"
elif [[ ${#schema_sources[@]} -eq 0 ]]; then
  fail "runtime stage: no COPY of the schemas to ${IMAGE_SCHEMA_DIR}/"
else
  unshipped=()
  for f in "${schema_files[@]}"; do
    shipped=0
    for pattern in "${schema_sources[@]}"; do
      # shellcheck disable=SC2053  # the pattern is meant to glob
      [[ "${f}" == ${pattern#./} ]] && shipped=1
    done
    [[ ${shipped} -eq 1 ]] || unshipped+=("${f}")
  done
  if [[ ${#unshipped[@]} -eq 0 ]]; then
    pass "runtime stage: ${schema_files[*]} copied to ${IMAGE_SCHEMA_DIR}/"
  else
    fail "runtime stage: ${unshipped[*]} not copied to ${IMAGE_SCHEMA_DIR}/ (copied: ${schema_sources[*]})"
  fi
fi
if [[ " ${envs} " =~ [[:space:]]NATSGW_SCHEMA_PATH[=[:space:]]\"?${IMAGE_SCHEMA_DIR}/?\"?[[:space:]] ]]; then
  pass "runtime stage: ENV NATSGW_SCHEMA_PATH=${IMAGE_SCHEMA_DIR}"
else
  fail "runtime stage: ENV NATSGW_SCHEMA_PATH does not name ${IMAGE_SCHEMA_DIR} (ENV: ${envs:-none})"
fi
if [[ "${volumes}" == *"${MAIL_SPOOL}"* ]]; then
  pass "runtime stage: VOLUME ${MAIL_SPOOL} (the only place written to)"
else
  fail "runtime stage: ${MAIL_SPOOL} is not a VOLUME; with a read-only root filesystem the mail spool must be a volume"
fi

# ---------------------------------------------------------------------------
# (b) and (c): ldd, dpkg and readelf on the built binaries.
codename=""
if [[ -r /etc/os-release ]]; then
  # shellcheck disable=SC1091  # the host's, read at run time
  codename="$(. /etc/os-release && printf '%s' "${VERSION_CODENAME:-}")"
fi
missing_tools=()
for tool in ldd dpkg-query apt-cache; do
  command -v "${tool}" >/dev/null 2>&1 || missing_tools+=("${tool}")
done
if [[ ${#missing_tools[@]} -gt 0 || "${codename}" != bookworm ]]; then
  skip "the runtime package checks need a Debian bookworm host with ldd, dpkg-query and apt-cache (this is '${codename:-unknown}', missing: ${missing_tools[*]:-none})"
elif [[ ${#present[@]} -eq 0 ]]; then
  fail "no built binary to check the runtime packages against"
else
  # The base packages must be hard (non-alternative) dependencies of apt.
  mapfile -t apt_deps < <(dpkg-query -W -f='${Pre-Depends}, ${Depends}\n' apt 2>/dev/null |
    tr ',' '\n' | grep -v '|' | sed -E 's/\(.*\)//; s/:any//; s/[[:space:]]//g' | sed '/^$/d')
  for p in "${BASE_PACKAGES[@]}"; do
    if in_list "${p}" "${apt_deps[@]}"; then
      pass "${p} is in every Debian image (apt depends on it)"
    else
      fail "${p} is assumed to be in the base image, but apt does not depend on it here"
    fi
  done

  # Every library each binary loads: soname -> path, per binary.
  declare -A lib_path=()        # "binary|soname" -> resolved path
  declare -A lib_users=()       # path -> binaries
  for b in "${present[@]}"; do
    if ! ldd_out="$(ldd "${bin_dir}/${b}" 2>&1)"; then
      fail "ldd ${b}: ${ldd_out}"
      continue
    fi
    while read -r line; do
      if [[ "${line}" =~ ^([^[:space:]]+)[[:space:]]+=\>[[:space:]]+not[[:space:]]found ]]; then
        fail "${b}: ${BASH_REMATCH[1]} not found"
      elif [[ "${line}" =~ ^([^[:space:]]+)[[:space:]]+=\>[[:space:]]+(/[^[:space:]]+) ]]; then
        lib_path["${b}|${BASH_REMATCH[1]}"]="${BASH_REMATCH[2]}"
        lib_users["${BASH_REMATCH[2]}"]+="${b} "
      elif [[ "${line}" =~ ^(/[^[:space:]]+)[[:space:]]+\( ]]; then
        lib_path["${b}|${BASH_REMATCH[1]##*/}"]="${BASH_REMATCH[1]}"
        lib_users["${BASH_REMATCH[1]}"]+="${b} "
      fi
    done <<<"${ldd_out}"
  done

  # Owners, in one dpkg query. usrmerge: a file dpkg lists under /usr/lib is
  # found by the loader under /lib and the other way round, so ask for both.
  alternatives() {
    local p="$1" real
    real="$(readlink -f "${p}")"
    local c
    for c in "${p}" "${real}"; do
      printf '%s\n' "${c}"
      case "${c}" in
        /usr/*) printf '%s\n' "${c#/usr}" ;;
        *) printf '/usr%s\n' "${c}" ;;
      esac
    done
  }
  declare -A owner=()
  mapfile -t candidates < <(for p in "${!lib_users[@]}"; do alternatives "${p}"; done | sort -u)
  if [[ ${#candidates[@]} -gt 0 ]]; then
    while read -r line; do
      [[ "${line}" == *": /"* && "${line}" != diversion* ]] || continue
      pkgs="${line%%: /*}"
      path="/${line#*: /}"
      pkg="${pkgs%%,*}"
      owner["${path}"]="${pkg%%:*}"
    done < <(dpkg-query -S "${candidates[@]}" 2>/dev/null || true)
  fi
  owner_of() {
    local c
    while read -r c; do
      if [[ -n "${owner[${c}]:-}" ]]; then
        printf '%s' "${owner[${c}]}"
        return 0
      fi
    done < <(alternatives "$1")
    return 1
  }

  declare -A needed=()       # package -> sonames it provides
  declare -A needed_by=()    # package -> binaries loading them
  for p in "${!lib_users[@]}"; do
    if pkg="$(owner_of "${p}")"; then
      needed["${pkg}"]+="${p##*/} "
      for b in ${lib_users[${p}]}; do
        [[ " ${needed_by[${pkg}]:-} " == *" ${b} "* ]] || needed_by["${pkg}"]+="${b} "
      done
    else
      fail "${p} (loaded by ${lib_users[${p}]% }) belongs to no Debian package: the image would lack it"
    fi
  done
  describe() {  # describe <package>: what it provides, to whom
    printf '%s for %s' "$(abbrev "${needed[$1]}")" "${needed_by[$1]% }"
  }
  for pkg in $(printf '%s\n' "${!needed[@]}" | sort); do
    if in_list "${pkg}" "${BASE_PACKAGES[@]}"; then
      pass "${pkg}: in the base image"
    elif in_list "${pkg}" "${runtime_packages[@]}"; then
      pass "${pkg}: in NATSGW_RUNTIME_PACKAGES ($(describe "${pkg}"))"
    else
      fail "NATSGW_RUNTIME_PACKAGES lacks ${pkg}, which provides $(describe "${pkg}")"
    fi
  done
  declare -A seen=()
  for pkg in "${runtime_packages[@]}"; do
    if [[ -n "${seen[${pkg}]:-}" ]]; then
      fail "NATSGW_RUNTIME_PACKAGES names ${pkg} twice"
    fi
    seen["${pkg}"]=1
    if in_list "${pkg}" "${BASE_PACKAGES[@]}"; then
      fail "NATSGW_RUNTIME_PACKAGES names ${pkg}, which the base image already has"
    elif [[ -z "${needed[${pkg}]:-}" ]]; then
      fail "NATSGW_RUNTIME_PACKAGES names ${pkg}, which no binary of the image loads"
    fi
  done

  # Installable: a candidate in the local package lists (no network).
  if compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; then
    # One apt-cache call: it is slow to start.
    declare -A candidate=()
    while read -r first second; do
      if [[ "${first}" == *: && -z "${second}" ]]; then
        current="${first%:}"
      elif [[ "${first}" == Candidate: ]]; then
        candidate["${current}"]="${second}"
      fi
    done < <(apt-cache policy "${runtime_packages[@]}" 2>/dev/null)
    for pkg in "${runtime_packages[@]}"; do
      if [[ -n "${candidate[${pkg}]:-}" && "${candidate[${pkg}]}" != "(none)" ]]; then
        pass "${pkg}: install candidate ${candidate[${pkg}]}"
      else
        fail "${pkg}: no install candidate in the apt package lists"
      fi
    done
  else
    skip "no apt package lists in /var/lib/apt/lists (apt-get update never ran): not checking that NATSGW_RUNTIME_PACKAGES is installable"
  fi

  # (c) Libraries linked directly come from a source package NATSGW_PACKAGES
  # builds against.
  if ! command -v readelf >/dev/null 2>&1; then
    skip "no readelf (binutils): not checking the runtime packages against NATSGW_PACKAGES"
  else
    declare -A direct=()  # package -> sonames
    for b in "${present[@]}"; do
      while read -r soname; do
        p="${lib_path[${b}|${soname}]:-}"
        [[ -n "${p}" ]] || continue
        pkg="$(owner_of "${p}")" || continue
        in_list "${pkg}" "${BASE_PACKAGES[@]}" && continue
        [[ " ${direct[${pkg}]:-} " == *" ${soname} "* ]] || direct["${pkg}"]+="${soname} "
      done < <(readelf -d "${bin_dir}/${b}" | sed -nE 's/.*\(NEEDED\).*\[(.*)\]/\1/p')
    done
    # Source packages: dpkg for installed packages, the apt lists for the
    # rest (one call each: apt-cache is slow to start).
    declare -A source_of=()
    query=("${build_packages[@]}" "${!direct[@]}")
    while IFS='|' read -r pkg status src; do
      [[ "${status}" == ii* ]] && source_of["${pkg%%:*}"]="${src}"
    done < <(dpkg-query -W -f='${binary:Package}|${db:Status-Abbrev}|${source:Package}\n' "${query[@]}" 2>/dev/null || true)
    rest=()
    for pkg in "${query[@]}"; do [[ -n "${source_of[${pkg}]:-}" ]] || rest+=("${pkg}"); done
    if [[ ${#rest[@]} -gt 0 ]]; then
      while IFS='|' read -r pkg src; do
        source_of["${pkg}"]="${src}"
      done < <(apt-cache show --no-all-versions "${rest[@]}" 2>/dev/null |
        awk '/^Package:/ { p = $2; s = $2 } /^Source:/ { s = $2 } /^$/ && p != "" { print p "|" s; p = "" }
             END { if (p != "") print p "|" s }')
    fi
    declare -A build_source=()  # source package -> NATSGW_PACKAGES entries
    for pkg in "${build_packages[@]}"; do
      src="${source_of[${pkg}]:-}"
      [[ -n "${src}" ]] && build_source["${src}"]+="${pkg} "
    done
    for pkg in $(printf '%s\n' "${!direct[@]}" | sort); do
      src="${source_of[${pkg}]:-}"
      if [[ -z "${src}" ]]; then
        fail "cannot tell the source package of ${pkg}"
      elif [[ -n "${build_source[${src}]:-}" ]]; then
        pass "${pkg} (linked directly: $(abbrev "${direct[${pkg}]}")) and NATSGW_PACKAGES' ${build_source[${src}]% } come from ${src}"
      else
        fail "the binaries link $(abbrev "${direct[${pkg}]}") (${pkg}, source ${src}) directly, but NATSGW_PACKAGES installs no package of ${src} (its -dev package)"
      fi
    done
  fi
fi

if [[ ${failures} -gt 0 ]]; then
  echo "${failures} check(s) failed"
  exit 1
fi
echo "all checks passed"
