#!/usr/bin/env bash
# Writes the seed corpus of the fuzz targets (tests/fuzz/corpus/<target>/):
# a few valid and a few broken inputs per target, each in the layout the
# target's file comment describes. FlatBuffers payloads are made by flatc
# from the JSON below, against the project's own schemas, so the seeds
# follow the schemas if they change:
#
#   tests/fuzz/make_corpus.sh          # rewrites tests/fuzz/corpus/
#
# The corpus is committed; rerun this after changing a schema or an input
# layout. Inputs that fuzzing finds worth keeping are merged in separately
# (README.md). Needs flatc (Debian: flatbuffers-compiler).
set -euo pipefail
# Byte semantics: string lengths below are byte counts.
export LC_ALL=C

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
schemas="${here}/../../schemas"
corpus="${here}/corpus"
tmp="$(mktemp -d)"
trap 'rm -rf "${tmp}"' EXIT

# --- byte writers (all output goes to stdout) -------------------------------
# The format string is built on purpose: printf turns \xNN into the byte.
# shellcheck disable=SC2059
byte() { printf "\\x$(printf %02x "$(($1 & 255))")"; }
u16() { byte "$1"; byte "$(($1 >> 8))"; }
u64() {
  local v="$1" i
  for i in 0 1 2 3 4 5 6 7; do byte "$(((v >> (8 * i)) & 255))"; done
}
# A string as the service_json target reads it: length byte, then bytes.
str() { byte "${#1}"; printf '%s' "$1"; }

# fb <schema> <root type> <json>: the FlatBuffer flatc builds from the JSON.
fb() {
  local schema="$1" root="$2" json="$3" name
  name="$(printf '%s' "${root}${json}" | md5sum | cut -c1-12)"
  printf '%s' "${json}" >"${tmp}/${name}.json"
  flatc -b --root-type "${root}" -o "${tmp}" "${schemas}/${schema}" \
    "${tmp}/${name}.json"
  cat "${tmp}/${name}.bin"
}

# seed <target> <name>: stdin becomes corpus/<target>/<name>.
seed() { cat >"${corpus}/$1/$2"; }

# A NATS header block from its lines.
block() {
  printf 'NATS/1.0\r\n'
  local line
  for line in "$@"; do printf '%s\r\n' "${line}"; done
  printf '\r\n'
}
# <header length u16><header block><payload> from a block file and payload file.
framed() { u16 "$(stat -c %s "$1")"; cat "$1" "$2"; }

rm -rf "${corpus}"
mkdir -p "${corpus}"/{typed_request,typed_reply,typed_event,wire_headers,trace_context,validation,service_json,schema_set}

tp='00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'

# --- FlatBuffers ------------------------------------------------------------
fb echo.fbs natsgw.echo.EchoRequest '{"payload":[1,2,3,0,255],"tag":42}' >"${tmp}/echo_req"
fb echo.fbs natsgw.echo.EchoRequest '{}' >"${tmp}/echo_req_empty"
fb echo.fbs natsgw.echo.EchoReply '{"payload":[9,8,7],"tag":43}' >"${tmp}/echo_rep"
fb users.fbs natsgw.users.RegisterUserRequest \
  '{"email":"ann@example.com","display_name":"Ann"}' >"${tmp}/reg_req"
fb users.fbs natsgw.users.RegisterUserRequest '{"email":""}' >"${tmp}/reg_req_min"
fb users.fbs natsgw.users.RegisterUserReply \
  '{"user_id":"u-0123456789ab","created_at_unix_ms":1732500000123}' >"${tmp}/reg_rep"
fb users.fbs natsgw.users.UserRegistered \
  '{"user_id":"u-0123456789ab","email":"ann@example.com","display_name":"Ann","registered_at_unix_ms":1732500000123}' \
  >"${tmp}/user_registered"
fb email.fbs natsgw.email.SendWelcomeEmailRequest \
  '{"user_id":"u-0123456789ab","email":"ann@example.com","display_name":"Ann"}' >"${tmp}/mail_req"
fb email.fbs natsgw.email.SendWelcomeEmailReply '{"email_id":"e-0123456789ab"}' >"${tmp}/mail_rep"
fb email.fbs natsgw.email.WelcomeEmailSent \
  '{"user_id":"u-0123456789ab","email":"ann@example.com","email_id":"e-0123456789ab","sent_at_unix_ms":1732500000456}' \
  >"${tmp}/welcome_sent"
head -c 20 "${tmp}/reg_req" >"${tmp}/reg_req_truncated"
: >"${tmp}/empty"

block "traceparent: ${tp}" 'tracestate: congo=t61rcWkgMzE' 'Nats-Msg-Id: 3Kc1QeGv0o8LrN2y5T4W9a' \
  'Natsgw-Sent-At-Ns: 1732500000123456789' 'Natsgw-Timeout-Us: 250000' 'Tenant: acme' >"${tmp}/stamp_block"
block 'Nats-Service-Error: a user with email ann@example.com is already registered' \
  'Nats-Service-Error-Code: 409' 'Natsgw-Status: 6' >"${tmp}/error_block"
block 'Nats-Service-Error-Code: 404' >"${tmp}/code_only_block"
printf 'NATS/1.0 503\r\n\r\n' >"${tmp}/no_responders_block"

# --- typed_request: <method><limits><header length><header block><payload> -
req() { byte "$1"; byte "$2"; framed "$3" "$4"; }
req 0 0 "${tmp}/empty" "${tmp}/echo_req" | seed typed_request echo
req 0 0 "${tmp}/empty" "${tmp}/echo_req_empty" | seed typed_request echo_empty_table
req 1 0 "${tmp}/empty" "${tmp}/reg_req" | seed typed_request register_user
req 1 0 "${tmp}/stamp_block" "${tmp}/reg_req" | seed typed_request register_user_headers
req 1 0 "${tmp}/empty" "${tmp}/reg_req_min" | seed typed_request register_user_minimal
req 2 0 "${tmp}/empty" "${tmp}/mail_req" | seed typed_request send_welcome_email
req 1 0x81 "${tmp}/empty" "${tmp}/reg_req" | seed typed_request depth_limit
req 2 0xe3 "${tmp}/empty" "${tmp}/mail_req" | seed typed_request size_limit
req 1 0 "${tmp}/empty" "${tmp}/echo_req" | seed typed_request wrong_identifier
req 1 0 "${tmp}/empty" "${tmp}/reg_req_truncated" | seed typed_request truncated
req 0 0 "${tmp}/empty" "${tmp}/empty" | seed typed_request empty

# --- typed_reply: <method><limits><header length><header block><payload> ---
req 0 0 "${tmp}/empty" "${tmp}/echo_rep" | seed typed_reply echo
req 1 0 "${tmp}/stamp_block" "${tmp}/reg_rep" | seed typed_reply register_user
req 2 0 "${tmp}/empty" "${tmp}/mail_rep" | seed typed_reply send_welcome_email
req 1 0 "${tmp}/error_block" "${tmp}/empty" | seed typed_reply error_reply
req 1 0 "${tmp}/code_only_block" "${tmp}/empty" | seed typed_reply error_code_only
req 1 0 "${tmp}/no_responders_block" "${tmp}/empty" | seed typed_reply no_responders
req 2 0 "${tmp}/empty" "${tmp}/reg_rep" | seed typed_reply wrong_identifier
req 1 0x80 "${tmp}/empty" "${tmp}/reg_rep" | seed typed_reply depth_limit
req 0 0 "${tmp}/empty" "${tmp}/reg_req_truncated" | seed typed_reply truncated

# --- typed_event: <type><misalignment><limits><payload> ---------------------
{ byte 0; byte 0; byte 0; cat "${tmp}/user_registered"; } | seed typed_event user_registered
{ byte 0; byte 3; byte 0; cat "${tmp}/user_registered"; } | seed typed_event user_registered_misaligned
{ byte 1; byte 0; byte 0; cat "${tmp}/welcome_sent"; } | seed typed_event welcome_email_sent
{ byte 1; byte 5; byte 0x9e; cat "${tmp}/welcome_sent"; } | seed typed_event table_limit
{ byte 0; byte 1; byte 0; cat "${tmp}/welcome_sent"; } | seed typed_event wrong_identifier
{ byte 0; byte 0; byte 0; cat "${tmp}/reg_req_truncated"; } | seed typed_event truncated

# --- wire_headers: <flags><header length><header block><payload> ------------
wire() { byte "$1"; framed "$2" "$3"; }
# The payload is also read as header lines to send (one valid line here).
printf 'X-Payload:1' >"${tmp}/payload"
wire 0 "${tmp}/stamp_block" "${tmp}/payload" | seed wire_headers stamped
wire 3 "${tmp}/stamp_block" "${tmp}/payload" | seed wire_headers stamped_public_api
wire 0 "${tmp}/empty" "${tmp}/payload" | seed wire_headers no_headers
wire 0 "${tmp}/error_block" "${tmp}/empty" | seed wire_headers error_reply
wire 0 "${tmp}/no_responders_block" "${tmp}/empty" | seed wire_headers no_responders
block 'Traceparent: 00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01' \
  'tenant: a' 'Tenant: b' 'TENANT: c' $'X-Tab: a\tb' 'X-Utf8: héllo' 'X-Empty: ' >"${tmp}/b"
wire 1 "${tmp}/b" "${tmp}/payload" | seed wire_headers mixed_case_and_bad_trace
block "traceparent: ${tp}" "traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00" \
  'Natsgw-Sent-At-Ns: -5' 'Natsgw-Timeout-Us: -1' 'Nats-Msg-Id: a b' >"${tmp}/b"
wire 2 "${tmp}/b" "${tmp}/payload" | seed wire_headers repeated_and_odd_values
printf 'Tenant:acme\nX-Request-Id:42\nAccept-Encoding:identity' >"${tmp}/lines"
wire 0 "${tmp}/empty" "${tmp}/lines" | seed wire_headers payload_header_lines
printf 'NATS/1.0\r\nno colon here\r\nKey:value\r\n' >"${tmp}/b"
wire 0 "${tmp}/b" "${tmp}/payload" | seed wire_headers malformed_block

# --- trace_context: <traceparent length><traceparent><tracestate> ----------
tc() { byte "${#1}"; printf '%s%s' "$1" "$2"; }
tc "${tp}" 'congo=t61rcWkgMzE,rojo=00f067aa0ba902b7' | seed trace_context valid
tc '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00' '' | seed trace_context not_sampled
tc 'cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-holds' 'a=b' |
  seed trace_context future_version
tc 'ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' '' | seed trace_context version_ff
tc '00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01' '' | seed trace_context upper_case
tc '00-00000000000000000000000000000000-00f067aa0ba902b7-01' '' | seed trace_context zero_trace_id
tc "${tp}" "$(printf 'k=%0600d' 0)" | seed trace_context long_tracestate
tc "${tp}" "$(printf 'k=v\tx')" | seed trace_context control_in_tracestate

# --- validation: <limits><text> ---------------------------------------------
val() { byte "$1"; printf '%s' "$2"; }
val 0 'users.RegisterUser' | seed validation publish_subject
val 0 'orders.*.created' | seed validation template
val 0 'users.events.>' | seed validation full_wildcard
val 0 'a..b' | seed validation empty_token
val 0 'a.>.b' | seed validation inner_full_wildcard
val 0 'a*.b' | seed validation mixed_wildcard
val 9 'users.RegisterUser' | seed validation over_limit
val 0 "$(printf 'Tenant:acme\nX-Other:1\nNatsgw-Trace:x')" | seed validation header_lines
val 0 'Nats-Msg-Id' | seed validation reserved_header
val 0 "$(printf 'value\twith tab')" | seed validation header_value_tab
val 0 'orders.*.created orders.eu.created' | seed validation matches
val 0 'a.> a' | seed validation full_wildcard_needs_a_token
val 0 'NGUS' | seed validation identifier_sized

# --- service_json: see ReadConfig in service_json_fuzz.cc -------------------
# Start times are read as seconds after 0000-01-01T00:00:00Z.
min_seconds=-62167219200
# endpoint <name> <subject> <queue flag> [queue group]: no metadata, stats.
endpoint() {
  str "$1"
  str "$2"
  byte "$3"
  if (($3 & 1)); then str "$4"; fi
  byte 1
  str 'fbs.schema'
  str 'users.fbs'
  u16 6
  byte 1
  str "$5"
  u64 $((1234567 << 14))
  byte 0
  byte 1
  u64 $((250000 << 14)) && u64 $((900000 << 14)) && u64 $((990000 << 14)) && u64 $((999000 << 14))
}
{
  byte 0
  str 'users'
  str '0.1.0'
  str 'natsgw.users.Users (users.fbs)'
  str 'q'
  byte 2
  str 'fbs.service' && str 'natsgw.users.Users'
  str 'team' && str 'identity'
  str 'rvLTkQC23iCwwZGUZHfwsJ'
  u64 $((1732500000 - min_seconds)) && u64 5000000
  byte 2
  endpoint RegisterUser users.RegisterUser 0 '' '409:a user with email ann@example.com is already registered'
  endpoint Health users.Health 1 '' ''
} | seed service_json users_service
{
  byte 3
  str 'bad name!'
  str '1.0.0-rc.01'
  printf '\x03\xff\xfe\x80'
  str ''
  byte 0
  byte 0xfe && byte 0x02
  str ''
  u64 $((1732500000 - min_seconds)) && u64 0
  byte 1
  # shellcheck disable=SC2016 # a literal $SRV subject, not an expansion
  endpoint 'E' '$SRV.PING' 1 'a*' "$(printf 'bad\001utf8\377')"
} | seed service_json invalid_everything
{
  byte 0
  str 'svc'
  str '1.2.3-alpha.1+build.7'
  str ''
  str ''
  byte 0
  str 'x'
  u64 $((253402300799 - min_seconds)) && u64 999999999
  byte 0
} | seed service_json edge_of_time

# --- schema_set: <mode> <options> <data> ------------------------------------
# Binary schemas as flatc writes them (what .bfbs files and $SRV.INFO carry).
bfbs() {
  flatc -b --schema -o "${tmp}" "${schemas}/$1.fbs"
  cat "${tmp}/$1.bfbs"
}
{ byte 0; byte 0; bfbs users; } | seed schema_set schema_users
{ byte 0; byte 0x44; bfbs email; } | seed schema_set schema_email_after_users
{ byte 0; byte 0x08; bfbs echo; } | seed schema_set schema_echo_defaults
# A schema cut short: verification must refuse it.
bfbs users >"${tmp}/users_whole.bfbs"
{ byte 0; byte 0; head -c 200 "${tmp}/users_whole.bfbs"; } |
  seed schema_set schema_truncated
{ byte 1; byte 0; printf '{"email": "ada@example.com", "display_name": "Ada \\u00e9\\ud83d\\ude00"}'; } |
  seed schema_set json_register_user
{ byte 1; byte 0x09; printf '{"user_id": "u-0123456789ab", "created_at_unix_ms": -9223372036854775808}'; } |
  seed schema_set json_reply_defaults
{ byte 1; byte 0x06; printf '{"registered_at_unix_ms": 1, "email": "a@b", "user_id": "u"}'; } |
  seed schema_set json_user_registered_compact
{ byte 1; byte 0; printf '{"display_name": "no email"}'; } |
  seed schema_set json_missing_required
{ byte 1; byte 2; printf '{user_id: "unquoted", "email": "x"}'; } |
  seed schema_set json_unquoted_field
{ byte 2; byte 0; fb users.fbs natsgw.users.RegisterUserRequest '{"email": "ada@example.com", "display_name": "Ada"}'; } |
  seed schema_set buffer_register_user
{ byte 2; byte 0x21; fb users.fbs natsgw.users.RegisterUserReply '{"user_id": "u-0123456789ab", "created_at_unix_ms": 1732500000000}'; } |
  seed schema_set buffer_reply_tight
{ byte 2; byte 0x1e; fb users.fbs natsgw.users.UserRegistered '{"user_id": "u", "email": "a@b", "registered_at_unix_ms": 7}'; } |
  seed schema_set buffer_user_registered_unchecked
{ byte 2; byte 0; fb email.fbs natsgw.email.SendWelcomeEmailRequest '{"user_id": "u", "email": "a@b"}'; } |
  seed schema_set buffer_wrong_identifier

echo "seed corpus written to ${corpus}:"
for dir in "${corpus}"/*/; do
  printf '  %-14s %s inputs\n' "$(basename "${dir}")" "$(find "${dir}" -type f | wc -l)"
done
