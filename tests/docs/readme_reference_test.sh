#!/usr/bin/env bash
# README.md against what it documents, so the reference sections cannot fall
# behind the code:
#   - "Configuration reference" names every flag of the programs (from their
#     own --help), every environment variable the code and scripts read, and
#     every NATSGW_ CMake option;
#   - "Operations runbook" names every alert of monitoring/;
#   - "Deploy on Kubernetes" names every object each k8s/ overlay renders.
#
#   readme_reference_test.sh --source-dir DIR --bin-dir DIR [--tools]
#
# --tools: the build has the natsgw CLI and natsgw-edge (NATSGW_BUILD_TOOLS),
# whose flags are checked too.
#
# Exit status 0 when everything is documented, 1 listing what is missing.
set -euo pipefail

source_dir="" bin_dir="" tools=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --source-dir) source_dir="$2"; shift ;;
    --bin-dir) bin_dir="$2"; shift ;;
    --tools) tools=1 ;;
    *) echo "usage: $0 --source-dir DIR --bin-dir DIR [--tools]" >&2; exit 2 ;;
  esac
  shift
done
[[ -n "${source_dir}" && -n "${bin_dir}" ]] || {
  echo "usage: $0 --source-dir DIR --bin-dir DIR" >&2
  exit 2
}
readme="${source_dir}/README.md"
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# section <title>: the text of "## <title>" up to the next "## " heading.
section() {
  awk -v title="## $1" '
    $0 == title { on = 1; next }
    on && /^## / { exit }
    on { print }' "${readme}"
}

for title in "Use natsgw in your project" "Deploy on Kubernetes" \
             "Configuration reference" "Operations runbook"; do
  if [[ -z "$(section "${title}")" ]]; then
    fail "README.md has no section \"## ${title}\""
  fi
done
config="$(section "Configuration reference")"
runbook="$(section "Operations runbook")"
deploy="$(section "Deploy on Kubernetes")"

# documented <section text> <name> <what>: the name must appear as a code
# span of its own (`name`), or at the start of one followed by "=", a space
# or a comma (`--count=3`, `--nats_user`, ...): `nats` is not documented by
# `nats-headless`, nor --foo by --foo_bar.
documented() {
  local text="$1" name="$2" what="$3"
  local escaped
  escaped="$(sed 's/[].[\*^$+?(){}|]/\\&/g' <<<"${name}")"
  if ! grep -qE -- "\`${escaped}(\`|=|,|[[:space:]])" <<<"${text}"; then
    fail "${what} ${name} is not in README.md's section"
  fi
}

# Flags: what each program's --helpfull lists from the project's own files
# (Abseil's "Flags from <file>:" headings), natsgw-gen's from its --help.
programs="user-service email-service register-users natsgw-bench"
if [[ "${tools}" -eq 1 ]]; then
  programs+=" natsgw natsgw-edge"
fi
for program in ${programs}; do
  exe="${bin_dir}/${program}"
  if [[ ! -x "${exe}" ]]; then
    fail "${exe} is not built"
    continue
  fi
  # --helpfull exits with status 1 (Abseil's convention for help output).
  help="$("${exe}" --helpfull 2>&1 || true)"
  flags="$(awk '
    /^  Flags from / { ours = ($0 ~ /sdk\/examples\/|sdk\/tools\/|tests\/bench\//); next }
    ours && match($0, /^    --[a-z0-9_]+/) { print substr($0, 5, RLENGTH - 4) }' <<<"${help}")"
  if [[ -z "${flags}" ]]; then
    fail "${program} --helpfull lists no flag of its own"
  fi
  for flag in ${flags}; do
    documented "${config}" "${flag}" "flag of ${program}:"
  done
done
if [[ -x "${bin_dir}/natsgw-gen" ]]; then
  gen_help="$("${bin_dir}/natsgw-gen" --help 2>&1 || true)"
  # Its options are the lines starting "  -" (the prose names flatc's too).
  for flag in $(grep -E '^  +-' <<<"${gen_help}" | grep -oE -- '--[a-z][a-z-]+' | sort -u); do
    documented "${config}" "${flag}" "flag of natsgw-gen:"
  done
else
  fail "${bin_dir}/natsgw-gen is not built"
fi

# Environment variables: read by the C++ code (getenv, or FlagOrEnv for the
# examples' flag defaults) and by the scripts (${VAR:-default}). Variables
# the scripts set themselves are internal.
internal_vars=" NATSGW_ROOT PORTS_FILE "
vars="$(
  grep -rhoE 'getenv\("[A-Z_]+"\)|FlagOrEnv\([^,]+, *"[A-Z_]+"\)' \
      "${source_dir}/gateway" "${source_dir}/sdk" "${source_dir}/tests/harness" |
    grep -oE '"[A-Z_]+"' | tr -d '"'
  grep -rhoE '\$\{[A-Z_]+:-' "${source_dir}/scripts" | sed 's/^\${//; s/:-$//'
  # CMake scripts run by the tests ($ENV{VAR}).
  grep -rhoE '\$ENV\{[A-Z_]+\}' --include='*.cmake' --include=CMakeLists.txt \
      "${source_dir}/cmake" "${source_dir}/tests" |
    sed 's/^\$ENV{//; s/}$//'
)"
for var in $(sort -u <<<"${vars}"); do
  [[ "${internal_vars}" == *" ${var} "* ]] && continue
  documented "${config}" "${var}" "environment variable"
done

# CMake options.
for option in $(grep -rhoE '(option|set)\((NATSGW_[A-Z_]+)[^)]*(CACHE|"|\$\{)' \
                  --include=CMakeLists.txt --include='*.cmake' \
                  "${source_dir}/CMakeLists.txt" "${source_dir}/cmake" \
                  "${source_dir}/tests/bench" 2>/dev/null |
                grep -oE 'NATSGW_[A-Z_]+' | sort -u); do
  # Only real cache options: declared with option() or set(... CACHE ...).
  if grep -rqE "option\(${option}[[:space:]]|set\(${option}[[:space:]].*CACHE" \
       "${source_dir}/CMakeLists.txt" "${source_dir}/cmake" "${source_dir}/tests/bench"; then
    documented "${config}" "${option}" "CMake option"
  fi
done

# Alerts.
for alert in $(grep -hoE 'alert: [A-Za-z0-9]+' \
                 "${source_dir}"/monitoring/prometheus/rules/*.yml | cut -d' ' -f2); do
  documented "${runbook}" "${alert}" "alert"
done

# Kubernetes objects of every overlay (generated names without kustomize's
# hash suffix).
if command -v kubectl >/dev/null 2>&1; then
  for overlay in "${source_dir}"/k8s/overlays/*/; do
    rendered="$(kubectl kustomize "${overlay}")" || {
      fail "kubectl kustomize ${overlay} fails"
      continue
    }
    names="$(awk '
      /^kind: / { kind = $2 }
      /^metadata:/ { meta = 1; next }
      meta && /^  name: / { print kind "/" $2; meta = 0 }
      /^[a-z]/ && !/^metadata:/ { meta = 0 }' <<<"${rendered}" |
      sed -E 's/-[a-z0-9]{10}$//' | sort -u)"
    for object in ${names}; do
      documented "${deploy}" "${object#*/}" "$(basename "${overlay}") overlay's ${object%%/*}"
      if ! grep -q "${object%%/*}" <<<"${deploy}"; then
        fail "$(basename "${overlay}") overlay renders a ${object%%/*}, a kind README.md's section never names"
      fi
    done
  done
else
  fail "kubectl not found: cannot render k8s/overlays (Kubernetes' kubectl package)"
fi

if [[ "${failures}" -gt 0 ]]; then
  echo "${failures} item(s) missing from README.md"
  exit 1
fi
echo "README.md documents every flag, environment variable, CMake option, alert and Kubernetes object"
