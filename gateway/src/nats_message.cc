#include "nats_message.h"

#include <cstdlib>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "nats_status.h"
#include "natsgw/status_macros.h"
#include "natsgw/trace_sampling.h"
#include "natsgw/wire_headers.h"

namespace natsgw::internal {
namespace {

constexpr absl::string_view kHeaderPreamble = "NATS/1.0\r\n";

size_t FieldBytes(absl::string_view key, absl::string_view value) {
  return key.size() + 2 + value.size() + 2;  // "key: value\r\n"
}

// Stamp headers as (key, value) pairs, in the order they are written.
struct StampFields {
  std::string traceparent;
  std::string sent_at;
  std::string timeout;
};

StampFields FormatStamp(const Stamp& stamp) {
  StampFields f;
  f.traceparent = stamp.trace.ToTraceParent();
  f.sent_at = absl::StrCat(absl::ToUnixNanos(stamp.sent_at));
  if (stamp.timeout) {
    int64_t us = absl::ToInt64Microseconds(*stamp.timeout);
    f.timeout = absl::StrCat(us < 0 ? 0 : us);
  }
  return f;
}

size_t StampBytes(const Stamp& stamp, const StampFields& f) {
  size_t n = FieldBytes(kTraceParentHeader, f.traceparent) +
             FieldBytes(kMessageIdHeader, stamp.message_id) +
             FieldBytes(kSentAtHeader, f.sent_at);
  if (!stamp.trace.trace_state().empty()) {
    n += FieldBytes(kTraceStateHeader, stamp.trace.trace_state());
  }
  if (stamp.timeout) n += FieldBytes(kTimeoutHeader, f.timeout);
  return n;
}

size_t HeadersBytes(const Headers* headers) {
  size_t n = 0;
  if (headers == nullptr) return n;
  for (const HeaderField& field : *headers) {
    n += FieldBytes(field.key, field.value);
  }
  return n;
}

// Header fields are std::strings, so their c_str() is the NUL-terminated
// form nats.c wants without a copy.
natsStatus AddHeader(natsMsg* msg, const HeaderField& field) {
  return natsMsgHeader_Add(msg, field.key.c_str(), field.value.c_str());
}

// The header block: preamble, stamp fields, application and extra fields,
// and the blank line that ends it.
size_t BlockBytes(const Stamp& stamp, const StampFields& fields,
                  const Headers& app_headers, const Headers* extra_headers) {
  return kHeaderPreamble.size() + StampBytes(stamp, fields) +
         HeadersBytes(&app_headers) + HeadersBytes(extra_headers) + 2;
}

// Retired messages waiting to be destroyed as one batch.
class RetiredMsgs {
 public:
  static constexpr size_t kMaxCount = 32;
  static constexpr size_t kMaxBytes = 256 * 1024;

  void Add(natsMsg* msg) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      pending_.push_back(msg);
      bytes_ += static_cast<size_t>(natsMsg_GetDataLength(msg));
      if (pending_.size() < kMaxCount && bytes_ < kMaxBytes) return;
    }
    Flush();
  }

  void Flush() {
    std::vector<natsMsg*> batch;
    batch.reserve(kMaxCount);  // becomes pending_: no growth while filling
    {
      std::lock_guard<std::mutex> lock(mu_);
      batch.swap(pending_);
      bytes_ = 0;
    }
    // Outside the lock: the collector's own lock is taken per message.
    for (natsMsg* msg : batch) natsMsg_Destroy(msg);
  }

 private:
  std::mutex mu_;
  std::vector<natsMsg*> pending_;
  size_t bytes_ = 0;
};

// Never destroyed: messages may be retired from threads still running while
// static destructors do.
RetiredMsgs& Retired() {
  static RetiredMsgs* const retired = new RetiredMsgs;
  return *retired;
}

}  // namespace

void RetireNatsMsg(natsMsg* msg) {
  if (msg != nullptr) Retired().Add(msg);
}

void FlushRetiredNatsMsgs() { Retired().Flush(); }

size_t HeaderBlockBytes(const Headers& app_headers,
                        const Headers* extra_headers, const Stamp& stamp) {
  return BlockBytes(stamp, FormatStamp(stamp), app_headers, extra_headers);
}

absl::StatusOr<NatsMsgPtr> BuildNatsMsg(absl::string_view subject,
                                        absl::string_view data,
                                        const Headers& app_headers,
                                        const Headers* extra_headers,
                                        const Stamp& stamp,
                                        int64_t max_payload) {
  NATSGW_RETURN_IF_ERROR(EnsureNatsLibrary());
  const StampFields fields = FormatStamp(stamp);
  const size_t header_bytes =
      BlockBytes(stamp, fields, app_headers, extra_headers);
  if (max_payload > 0 &&
      static_cast<int64_t>(data.size() + header_bytes) > max_payload) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "message of %d bytes (payload %d + headers %d) exceeds the server's "
        "max_payload of %d bytes",
        data.size() + header_bytes, data.size(), header_bytes, max_payload));
  }

  natsMsg* raw = nullptr;
  const std::string subject_str(subject);
  natsStatus s =
      natsMsg_Create(&raw, subject_str.c_str(),
                     stamp.reply.empty() ? nullptr : stamp.reply.c_str(),
                     data.data(), static_cast<int>(data.size()));
  if (s != NATS_OK) return NatsError(s, "creating message");
  NatsMsgPtr msg(raw);

  s = natsMsgHeader_Set(msg.get(), kTraceParentHeader.data(),
                        fields.traceparent.c_str());
  if (s == NATS_OK && !stamp.trace.trace_state().empty()) {
    s = natsMsgHeader_Set(msg.get(), kTraceStateHeader.data(),
                          stamp.trace.trace_state().c_str());
  }
  if (s == NATS_OK) {
    s = natsMsgHeader_Set(msg.get(), kMessageIdHeader.data(),
                          stamp.message_id.c_str());
  }
  if (s == NATS_OK) {
    s = natsMsgHeader_Set(msg.get(), kSentAtHeader.data(),
                          fields.sent_at.c_str());
  }
  if (s == NATS_OK && stamp.timeout) {
    s = natsMsgHeader_Set(msg.get(), kTimeoutHeader.data(),
                          fields.timeout.c_str());
  }
  for (const HeaderField& field : app_headers) {
    if (s != NATS_OK) break;
    s = AddHeader(msg.get(), field);
  }
  if (extra_headers != nullptr) {
    for (const HeaderField& field : *extra_headers) {
      if (s != NATS_OK) break;
      s = AddHeader(msg.get(), field);
    }
  }
  if (s != NATS_OK) return NatsError(s, "setting message headers");
  return msg;
}

Message ReadNatsMsg(natsMsg* msg, absl::Time received_at,
                    double root_sample_ratio, TraceOrigin* origin) {
  Message m;
  m.received_at = received_at;
  m.subject = natsMsg_GetSubject(msg);
  const char* data = natsMsg_GetData(msg);
  const int len = natsMsg_GetDataLength(msg);
  if (data != nullptr && len > 0) m.data.assign(data, static_cast<size_t>(len));

  // natsgw's own headers are picked out in the same pass that copies them
  // (indexes into m.headers), instead of a case-insensitive scan per name.
  constexpr size_t kNone = static_cast<size_t>(-1);
  size_t traceparent = kNone, tracestate = kNone, message_id = kNone,
         sent_at = kNone, timeout = kNone;
  const char** keys = nullptr;
  int key_count = 0;
  if (natsMsgHeader_Keys(msg, &keys, &key_count) == NATS_OK) {
    m.headers.reserve(static_cast<size_t>(key_count));
    for (int i = 0; i < key_count; ++i) {
      const char** values = nullptr;
      int value_count = 0;
      if (natsMsgHeader_Values(msg, keys[i], &values, &value_count) !=
          NATS_OK) {
        continue;
      }
      const absl::string_view key(keys[i]);
      size_t* slot = nullptr;
      if (absl::EqualsIgnoreCase(key, kTraceParentHeader)) {
        slot = &traceparent;
      } else if (absl::EqualsIgnoreCase(key, kTraceStateHeader)) {
        slot = &tracestate;
      } else if (absl::EqualsIgnoreCase(key, kMessageIdHeader)) {
        slot = &message_id;
      } else if (absl::EqualsIgnoreCase(key, kSentAtHeader)) {
        slot = &sent_at;
      } else if (absl::EqualsIgnoreCase(key, kTimeoutHeader)) {
        slot = &timeout;
      }
      // First value wins, as with Headers::Get.
      if (slot != nullptr && *slot == kNone && value_count > 0) {
        *slot = m.headers.size();
      }
      for (int j = 0; j < value_count; ++j) {
        m.headers.Add(key, values[j] != nullptr ? values[j] : "");
      }
      std::free(values);
    }
    std::free(keys);
  }
  auto value_at = [&m](size_t index) -> std::optional<absl::string_view> {
    if (index == kNone) return std::nullopt;
    return absl::string_view((m.headers.begin() + index)->value);
  };

  // Trace: the sender's, if well-formed; otherwise a new root (and the raw
  // value is never forwarded).
  TraceOrigin trace_origin = TraceOrigin::kMissing;
  if (std::optional<absl::string_view> tp = value_at(traceparent)) {
    absl::string_view state = value_at(tracestate).value_or("");
    absl::StatusOr<TraceContext> parsed = TraceContext::Parse(*tp, state);
    if (parsed.ok()) {
      m.trace = *std::move(parsed);
      trace_origin = TraceOrigin::kReceived;
    } else {
      trace_origin = TraceOrigin::kInvalid;
    }
  }
  if (trace_origin != TraceOrigin::kReceived) {
    m.trace = NewRootTrace(root_sample_ratio);
    m.trace_replaced = true;
  }
  if (origin != nullptr) *origin = trace_origin;

  if (std::optional<absl::string_view> id = value_at(message_id)) {
    m.message_id = std::string(*id);
  }
  int64_t number = 0;
  if (std::optional<absl::string_view> sent = value_at(sent_at);
      sent && absl::SimpleAtoi(*sent, &number) && number > 0) {
    m.sent_at = absl::FromUnixNanos(number);
  }
  if (std::optional<absl::string_view> budget = value_at(timeout);
      budget && absl::SimpleAtoi(*budget, &number)) {
    m.deadline = received_at + absl::Microseconds(number < 0 ? 0 : number);
  }
  return m;
}

}  // namespace natsgw::internal
