// Fuzz target: the NATS header block of a received message, and the way
// back out.
//
// Receive side: nats.c's message made from a raw header block and payload,
// as from a received HMSG, read by ReadNatsMsg (ReadNatsMsgInto) into
// natsgw::Headers plus the wire-contract fields it picks out: traceparent /
// tracestate (TraceContext::Parse), Nats-Msg-Id, Natsgw-Sent-At-Ns,
// Natsgw-Timeout-Us; then the Headers lookups and StatusFromErrorHeaders.
//
// Send side: the received application headers that pass validation, and
// the payload read as "key:value" lines, are sent (BuildNatsMsg, through
// nats.c's encoded-block constructor or its header API) and read back: what
// natsgw accepts for sending must arrive unchanged.
//
// Input layout:
//   byte 0      bit 0: build with nats.c's header API instead of the
//               encoded block; bit 1: stamp a timeout (request)
//   bytes 1-2   length of the NATS header block (little-endian; capped)
//   ...         the header block, then the payload (also read as header
//               lines to send)
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "fuzz_support.h"
#include "nats_message.h"
#include "natsgw/headers.h"
#include "natsgw/message.h"
#include "natsgw/service_error.h"
#include "natsgw/trace_context.h"
#include "natsgw/validation.h"
#include "natsgw/wire_headers.h"

namespace natsgw::fuzz {
namespace {

using internal::ReadNatsMsg;
using internal::TraceOrigin;

const absl::Time kReceivedAt = absl::FromUnixSeconds(1'800'000'000);

// The header fields BuildNatsMsg writes itself (the stamp).
bool IsStampHeader(absl::string_view key) {
  for (absl::string_view stamp :
       {kTraceParentHeader, kTraceStateHeader, kMessageIdHeader, kSentAtHeader,
        kTimeoutHeader}) {
    if (absl::EqualsIgnoreCase(key, stamp)) return true;
  }
  return false;
}

// Values per exact key, in order: what the wire keeps (distinct keys may be
// reordered, values of one key may not).
std::map<std::string, std::vector<std::string>> ByKey(const Headers& headers,
                                                      bool skip_stamp) {
  std::map<std::string, std::vector<std::string>> out;
  for (const HeaderField& field : headers) {
    if (skip_stamp && IsStampHeader(field.key)) continue;
    out[field.key].push_back(field.value);
  }
  return out;
}

std::string Show(const std::map<std::string, std::vector<std::string>>& m) {
  std::string out;
  for (const auto& [key, values] : m) {
    absl::StrAppend(&out, "[", absl::CHexEscape(key), "]");
    for (const std::string& v : values) {
      absl::StrAppend(&out, " \"", absl::CHexEscape(v), "\"");
    }
    out += "; ";
  }
  return out;
}

// Lookups agree with a plain scan of the fields.
void CheckLookups(const Headers& headers) {
  for (const HeaderField& field : headers) {
    std::optional<absl::string_view> first;
    size_t count = 0;
    for (const HeaderField& other : headers) {
      if (!absl::EqualsIgnoreCase(other.key, field.key)) continue;
      if (!first) first = other.value;
      ++count;
    }
    FUZZ_CHECK(headers.Get(field.key) == first, "Get(", field.key,
               ") is not the first value");
    FUZZ_CHECK(headers.GetAll(field.key).size() == count, "GetAll(", field.key,
               ") has ", headers.GetAll(field.key).size(), " values, not ",
               count);
    Headers copy = headers;
    FUZZ_CHECK(copy.Remove(absl::AsciiStrToUpper(field.key)) == count,
               "Remove is not case-insensitive");
    FUZZ_CHECK(!copy.Contains(field.key), "Remove left ", field.key);
    copy.Set(field.key, "x");
    FUZZ_CHECK(copy.GetAll(absl::AsciiStrToLower(field.key)).size() == 1,
               "Set left more than one value");
  }
}

// What ReadNatsMsg must have made of the wire headers.
void CheckReceived(const Message& m, TraceOrigin origin,
                   absl::string_view payload) {
  FUZZ_CHECK(m.data == payload, "the payload changed");
  FUZZ_CHECK(m.received_at == kReceivedAt, "received_at not kept");
  FUZZ_CHECK(m.trace.valid(), "a message without a valid trace");
  FUZZ_CHECK(m.trace_replaced == (origin != TraceOrigin::kReceived),
             "trace_replaced disagrees with the origin");
  const std::optional<absl::string_view> traceparent =
      m.headers.Get(kTraceParentHeader);
  FUZZ_CHECK(traceparent.has_value() == (origin != TraceOrigin::kMissing),
             "traceparent presence disagrees with the origin");
  if (traceparent) {
    const absl::StatusOr<TraceContext> parsed = TraceContext::Parse(
        *traceparent, m.headers.Get(kTraceStateHeader).value_or(""));
    FUZZ_CHECK(parsed.ok() == (origin == TraceOrigin::kReceived),
               "traceparent verdict disagrees with the origin");
    if (parsed.ok()) {
      FUZZ_CHECK(*parsed == m.trace, "the trace is not the sender's");
    }
  }
  FUZZ_CHECK(m.message_id == m.headers.Get(kMessageIdHeader).value_or(""),
             "message_id is not the Nats-Msg-Id header");
  if (m.sent_at) {
    FUZZ_CHECK(*m.sent_at > absl::UnixEpoch(), "sent_at not after the epoch");
    int64_t ns = 0;
    FUZZ_CHECK(
        absl::SimpleAtoi(m.headers.Get(kSentAtHeader).value_or(""), &ns) &&
            absl::FromUnixNanos(ns) == *m.sent_at,
        "sent_at is not Natsgw-Sent-At-Ns");
  }
  if (m.deadline) {
    FUZZ_CHECK(*m.deadline >= m.received_at, "a deadline in the past");
  }
  const bool error_reply = m.headers.Contains(kServiceErrorHeader) ||
                           m.headers.Contains(kServiceErrorCodeHeader) ||
                           m.headers.Contains(kStatusCodeHeader);
  FUZZ_CHECK(StatusFromErrorHeaders(m.headers).ok() != error_reply,
             "StatusFromErrorHeaders disagrees with the headers present");
  CheckLookups(m.headers);
}

// A Message filled from another message first: ReadNatsMsgInto reuses its
// storage and must leave nothing of the previous message behind. `msg` is a
// second natsMsg made from the same bytes as `fresh` (nats.c parses a
// message's header block once, on first access, and caches what it got).
void CheckReuse(natsMsg* msg, const Message& fresh) {
  static constexpr absl::string_view kPrevious =
      "NATS/1.0\r\ntraceparent: "
      "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n"
      "tracestate: a=1\r\nNats-Msg-Id: previous\r\n"
      "Natsgw-Sent-At-Ns: 5\r\nNatsgw-Timeout-Us: 7\r\n"
      "A: 1\r\nA: 2\r\nB: 3\r\nC: 4\r\nD: 5\r\nE: 6\r\n\r\n";
  WireMsgPtr previous = WireMsg("previous", "", kPrevious, "previous data");
  FUZZ_CHECK(previous != nullptr, "nats.c refused the previous message");
  Message reused = ReadNatsMsg(previous.get(), absl::UnixEpoch(), 1.0, nullptr);
  internal::ReadNatsMsgInto(msg, kReceivedAt, 1.0, nullptr, reused);
  FUZZ_CHECK(reused.subject == fresh.subject && reused.data == fresh.data &&
                 reused.headers == fresh.headers &&
                 reused.message_id == fresh.message_id &&
                 reused.sent_at == fresh.sent_at &&
                 reused.deadline == fresh.deadline &&
                 reused.received_at == fresh.received_at &&
                 reused.trace_replaced == fresh.trace_replaced,
             "a reused Message reads differently: ",
             Show(ByKey(reused.headers, false)), " vs ",
             Show(ByKey(fresh.headers, false)));
  if (!fresh.trace_replaced) {
    FUZZ_CHECK(reused.trace == fresh.trace, "a reused Message's trace differs");
  }
}

// Sends those of `candidates` that pass validation as the application
// headers of a message with `m`'s payload and trace, and reads them back.
void CheckResend(const Message& m, const Headers& candidates, bool public_api,
                 bool with_timeout) {
  // The candidates natsgw accepts, added one by one as long as the whole
  // set stays valid.
  Headers app;
  for (const HeaderField& field : candidates) {
    if (app.size() == MessageLimits().max_header_count) break;
    Headers with = app;
    with.Add(field.key, field.value);
    if (ValidateApplicationHeaders(with).ok()) app = std::move(with);
  }

  const std::string message_id =
      ValidateMessageId(m.message_id).ok() ? m.message_id : "fuzz-message-id";
  internal::Stamp stamp;
  stamp.trace = m.trace;
  stamp.message_id = message_id;
  stamp.sent_at = absl::FromUnixNanos(1'700'000'000'123'456'789);
  if (with_timeout) stamp.timeout = absl::Milliseconds(1500);

  const std::string subject = "fuzz.headers";
  // The size check counts the header block exactly.
  const size_t total =
      m.data.size() + internal::HeaderBlockBytes(app, nullptr, stamp);
  const auto too_small = internal::BuildNatsMsg(
      subject, m.data, app, nullptr, stamp, static_cast<int64_t>(total) - 1);
  FUZZ_CHECK(!too_small.ok() && too_small.status().code() ==
                                    absl::StatusCode::kInvalidArgument,
             "a message of ", total, " bytes passed max_payload ", total - 1);

  internal::UseEncodedHeadersForTesting(!public_api);
  absl::StatusOr<internal::NatsMsgPtr> built = internal::BuildNatsMsg(
      subject, m.data, app, nullptr, stamp, static_cast<int64_t>(total));
  internal::UseEncodedHeadersForTesting(true);
  FUZZ_CHECK(built.ok(),
             "valid headers could not be sent: ", built.status().ToString(),
             "; headers ", Show(ByKey(app, false)));

  // Freed at once rather than retired (see FreeMsg).
  const WireMsgPtr sent_msg(built->release());
  TraceOrigin origin;
  const Message back = ReadNatsMsg(sent_msg.get(), kReceivedAt, 1.0, &origin);
  FUZZ_CHECK(origin == TraceOrigin::kReceived, "the stamped trace was lost");
  FUZZ_CHECK(back.trace == stamp.trace,
             "the trace changed on the wire: ", back.trace.ToTraceParent(), " ",
             back.trace.trace_state());
  FUZZ_CHECK(back.message_id == message_id, "the message ID changed");
  FUZZ_CHECK(back.sent_at == stamp.sent_at, "sent_at changed");
  FUZZ_CHECK(back.deadline == (with_timeout ? std::optional<absl::Time>(
                                                  kReceivedAt + *stamp.timeout)
                                            : std::nullopt),
             "the deadline changed");
  FUZZ_CHECK(back.data == m.data, "the payload changed on the wire");
  const auto sent = ByKey(app, false);
  const auto arrived = ByKey(back.headers, true);
  FUZZ_CHECK(sent == arrived, public_api ? "header API" : "encoded block",
             ": sent ", Show(sent), " arrived ", Show(arrived));
}

}  // namespace
}  // namespace natsgw::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace natsgw;        // NOLINT(build/namespaces)
  using namespace natsgw::fuzz;  // NOLINT(build/namespaces)
  Input in(data, size);
  const uint8_t flags = in.Byte();
  const absl::string_view header_block = in.Bytes(in.U16());
  const absl::string_view payload = in.Rest();

  WireMsgPtr msg = WireMsg("fuzz.headers", "", header_block, payload);
  if (msg == nullptr) return 0;
  TraceOrigin origin;
  const Message m = ReadNatsMsg(msg.get(), kReceivedAt, 1.0, &origin);
  FUZZ_CHECK(m.subject == "fuzz.headers", "the subject changed");
  CheckReceived(m, origin, payload);
  WireMsgPtr twin = WireMsg("fuzz.headers", "", header_block, payload);
  FUZZ_CHECK(twin != nullptr, "nats.c refused the same bytes twice");
  CheckReuse(twin.get(), m);
  // The headers as received, and the payload read as header lines.
  CheckResend(m, m.headers, (flags & 1) != 0, (flags & 2) != 0);
  CheckResend(m, HeaderLines(payload), (flags & 1) != 0, (flags & 2) != 0);
  return 0;
}
