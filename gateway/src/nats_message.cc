#include "nats_message.h"

#include <dlfcn.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <cstdlib>
#include <cstring>
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

// The stamp header values, formatted into buffers of their own so that a
// message costs no allocation here. Filled in place by FormatStamp (the
// views point into the object: not copyable).
struct StampFields {
  StampFields() = default;
  StampFields(const StampFields&) = delete;
  StampFields& operator=(const StampFields&) = delete;

  using IntBuffer = std::array<char, 24>;  // an int64 and its NUL

  TraceContext::TraceParentBuffer traceparent_buffer;
  IntBuffer sent_at_buffer;
  IntBuffer timeout_buffer;
  absl::string_view traceparent;
  absl::string_view sent_at;
  absl::string_view timeout;
};

// Writes `value` and a NUL into `out`; returns the digits.
absl::string_view WriteInt(int64_t value, StampFields::IntBuffer& out) {
  const std::to_chars_result r =
      std::to_chars(out.data(), out.data() + out.size() - 1, value);
  *r.ptr = '\0';
  return absl::string_view(out.data(), static_cast<size_t>(r.ptr - out.data()));
}

void FormatStamp(const Stamp& stamp, StampFields& f) {
  f.traceparent = stamp.trace.WriteTraceParent(f.traceparent_buffer);
  f.sent_at = WriteInt(absl::ToUnixNanos(stamp.sent_at), f.sent_at_buffer);
  if (stamp.timeout) {
    const int64_t us = absl::ToInt64Microseconds(*stamp.timeout);
    f.timeout = WriteInt(us < 0 ? 0 : us, f.timeout_buffer);
  }
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

// Retired messages waiting to be destroyed as one batch. Fixed-size, so
// that retiring allocates nothing.
class RetiredMsgs {
 public:
  static constexpr size_t kMaxCount = 32;
  static constexpr size_t kMaxBytes = 256 * 1024;

  void Add(natsMsg* msg) {
    Batch batch;
    {
      std::lock_guard<std::mutex> lock(mu_);
      pending_[count_++] = msg;
      bytes_ += static_cast<size_t>(natsMsg_GetDataLength(msg));
      if (count_ < kMaxCount && bytes_ < kMaxBytes) return;
      // Taken under the same lock that filled it: another thread's Add
      // must find room.
      TakeLocked(batch);
    }
    Destroy(batch);
  }

  void Flush() {
    Batch batch;
    {
      std::lock_guard<std::mutex> lock(mu_);
      TakeLocked(batch);
    }
    Destroy(batch);
  }

 private:
  struct Batch {
    std::array<natsMsg*, kMaxCount> msgs;
    size_t count = 0;
  };

  // mu_ must be held.
  void TakeLocked(Batch& batch) {
    std::copy_n(pending_.begin(), count_, batch.msgs.begin());
    batch.count = count_;
    count_ = 0;
    bytes_ = 0;
  }

  // Outside the lock: the collector's own lock is taken per message.
  static void Destroy(const Batch& batch) {
    for (size_t i = 0; i < batch.count; ++i) natsMsg_Destroy(batch.msgs[i]);
  }

  std::mutex mu_;
  std::array<natsMsg*, kMaxCount> pending_;  // Guarded by mu_.
  size_t count_ = 0;                         // Guarded by mu_.
  size_t bytes_ = 0;                         // Guarded by mu_.
};

// Never destroyed: messages may be retired from threads still running while
// static destructors do.
RetiredMsgs& Retired() {
  static RetiredMsgs* const retired = new RetiredMsgs;
  return *retired;
}

// nats.c's header API (natsMsgHeader_Set) keeps a message's headers in a
// hash table: about a dozen allocations and thousands of instructions per
// message, more than the rest of a publish. nats.c also has a constructor
// that takes the header block already encoded, as it arrived off the wire;
// a message made so is sent with that block as is (natsConn_publish writes
// the raw block of a message whose headers were not lifted). It is exported
// but not declared in nats.c's public headers, so natsgw looks it up at run
// time, only trusts it on the nats.c releases it was checked against (3.4),
// and checks once that a probe message reads back as written. Otherwise
// messages are built through the public header API.
using NatsMsgCreateFn = natsStatus (*)(natsMsg** msg, const char* subject,
                                       int subject_len, const char* reply,
                                       int reply_len, const char* buf,
                                       int buf_len, int header_len);

std::atomic<bool> g_encoded_headers_allowed{true};

NatsMsgCreateFn ProbeEncodedHeaderCreate() {
  constexpr uint32_t kCheckedMajorMinor = 0x0304;  // nats.c 3.4.x
  if ((nats_GetVersionNumber() >> 8) != kCheckedMajorMinor) return nullptr;
  auto create =
      reinterpret_cast<NatsMsgCreateFn>(dlsym(RTLD_DEFAULT, "natsMsg_create"));
  if (create == nullptr) return nullptr;
  static constexpr char kProbe[] =
      "NATS/1.0\r\nNatsgw-Probe: 1\r\nnatsgw-probe: 2\r\n\r\nxy";
  constexpr int kProbeLen = sizeof(kProbe) - 1;
  constexpr int kProbeHeaderLen = kProbeLen - 2;
  natsMsg* msg = nullptr;
  if (create(&msg, "natsgw.probe", 12, "_INBOX.probe", 12, kProbe, kProbeLen,
             kProbeHeaderLen) != NATS_OK ||
      msg == nullptr) {
    return nullptr;
  }
  const char* first = nullptr;
  const char* second = nullptr;
  const bool ok = natsMsgHeader_Get(msg, "Natsgw-Probe", &first) == NATS_OK &&
                  first != nullptr && std::strcmp(first, "1") == 0 &&
                  natsMsgHeader_Get(msg, "natsgw-probe", &second) == NATS_OK &&
                  second != nullptr && std::strcmp(second, "2") == 0 &&
                  natsMsg_GetDataLength(msg) == 2 &&
                  std::memcmp(natsMsg_GetData(msg), "xy", 2) == 0 &&
                  std::strcmp(natsMsg_GetSubject(msg), "natsgw.probe") == 0 &&
                  std::strcmp(natsMsg_GetReply(msg), "_INBOX.probe") == 0;
  natsMsg_Destroy(msg);
  return ok ? create : nullptr;
}

NatsMsgCreateFn EncodedHeaderCreate() {
  static const NatsMsgCreateFn create = ProbeEncodedHeaderCreate();
  return g_encoded_headers_allowed.load(std::memory_order_relaxed) ? create
                                                                   : nullptr;
}

void AppendField(std::string& out, absl::string_view key,
                 absl::string_view value) {
  out.append(key.data(), key.size());
  out.append(": ", 2);
  out.append(value.data(), value.size());
  out.append("\r\n", 2);
}

// The message through `create`: the header block (the same fields, in the
// order BuildNatsMsg's public path sets them) and the payload, encoded into
// a buffer each thread keeps, which nats.c copies.
absl::StatusOr<NatsMsgPtr> BuildEncoded(
    NatsMsgCreateFn create, const char* subject, size_t subject_len,
    absl::string_view data, const Headers& app_headers,
    const Headers* extra_headers, const Stamp& stamp, const StampFields& f,
    size_t header_bytes) {
  // Kept between messages so that encoding allocates nothing once it has
  // grown; given back after an unusually large message.
  constexpr size_t kKeepBytes = 256 * 1024;
  thread_local std::string buffer;
  buffer.clear();
  buffer.reserve(header_bytes + data.size());
  buffer.append(kHeaderPreamble.data(), kHeaderPreamble.size());
  AppendField(buffer, kTraceParentHeader, f.traceparent);
  if (!stamp.trace.trace_state().empty()) {
    AppendField(buffer, kTraceStateHeader, stamp.trace.trace_state());
  }
  AppendField(buffer, kMessageIdHeader, stamp.message_id);
  AppendField(buffer, kSentAtHeader, f.sent_at);
  if (stamp.timeout) AppendField(buffer, kTimeoutHeader, f.timeout);
  for (const HeaderField& field : app_headers) {
    AppendField(buffer, field.key, field.value);
  }
  if (extra_headers != nullptr) {
    for (const HeaderField& field : *extra_headers) {
      AppendField(buffer, field.key, field.value);
    }
  }
  buffer.append("\r\n", 2);
  const size_t block = buffer.size();
  buffer.append(data.data(), data.size());
  natsMsg* raw = nullptr;
  const natsStatus s =
      create(&raw, subject, static_cast<int>(subject_len),
             stamp.reply.empty() ? nullptr : stamp.reply.data(),
             static_cast<int>(stamp.reply.size()), buffer.data(),
             static_cast<int>(buffer.size()), static_cast<int>(block));
  if (buffer.capacity() > kKeepBytes) std::string().swap(buffer);
  if (s != NATS_OK) return NatsError(s, "creating message");
  return NatsMsgPtr(raw);
}

}  // namespace

void RetireNatsMsg(natsMsg* msg) {
  if (msg != nullptr) Retired().Add(msg);
}

void FlushRetiredNatsMsgs() { Retired().Flush(); }

size_t HeaderBlockBytes(const Headers& app_headers,
                        const Headers* extra_headers, const Stamp& stamp) {
  StampFields fields;
  FormatStamp(stamp, fields);
  return BlockBytes(stamp, fields, app_headers, extra_headers);
}

absl::StatusOr<NatsMsgPtr> BuildNatsMsg(absl::string_view subject,
                                        absl::string_view data,
                                        const Headers& app_headers,
                                        const Headers* extra_headers,
                                        const Stamp& stamp,
                                        int64_t max_payload) {
  NATSGW_RETURN_IF_ERROR(EnsureNatsLibrary());
  StampFields fields;
  FormatStamp(stamp, fields);
  const size_t header_bytes =
      BlockBytes(stamp, fields, app_headers, extra_headers);
  if (max_payload > 0 &&
      static_cast<int64_t>(data.size() + header_bytes) > max_payload) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "message of %d bytes (payload %d + headers %d) exceeds the server's "
        "max_payload of %d bytes",
        data.size() + header_bytes, data.size(), header_bytes, max_payload));
  }

  // nats.c wants the subject NUL-terminated: on the stack unless it is
  // unusually long.
  std::array<char, 256> subject_buffer;
  std::string long_subject;
  const char* subject_cstr;
  if (subject.size() < subject_buffer.size()) {
    std::memcpy(subject_buffer.data(), subject.data(), subject.size());
    subject_buffer[subject.size()] = '\0';
    subject_cstr = subject_buffer.data();
  } else {
    long_subject.assign(subject.data(), subject.size());
    subject_cstr = long_subject.c_str();
  }
  if (NatsMsgCreateFn create = EncodedHeaderCreate(); create != nullptr) {
    return BuildEncoded(create, subject_cstr, subject.size(), data, app_headers,
                        extra_headers, stamp, fields, header_bytes);
  }

  natsMsg* raw = nullptr;
  natsStatus s = natsMsg_Create(
      &raw, subject_cstr, stamp.reply.empty() ? nullptr : stamp.reply.data(),
      data.data(), static_cast<int>(data.size()));
  if (s != NATS_OK) return NatsError(s, "creating message");
  NatsMsgPtr msg(raw);

  // The field views end in the NULs their buffers hold.
  s = natsMsgHeader_Set(msg.get(), kTraceParentHeader.data(),
                        fields.traceparent.data());
  if (s == NATS_OK && !stamp.trace.trace_state().empty()) {
    s = natsMsgHeader_Set(msg.get(), kTraceStateHeader.data(),
                          stamp.trace.trace_state().c_str());
  }
  if (s == NATS_OK) {
    s = natsMsgHeader_Set(msg.get(), kMessageIdHeader.data(),
                          stamp.message_id.data());
  }
  if (s == NATS_OK) {
    s = natsMsgHeader_Set(msg.get(), kSentAtHeader.data(),
                          fields.sent_at.data());
  }
  if (s == NATS_OK && stamp.timeout) {
    s = natsMsgHeader_Set(msg.get(), kTimeoutHeader.data(),
                          fields.timeout.data());
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

void UseEncodedHeadersForTesting(bool use) {
  g_encoded_headers_allowed.store(use, std::memory_order_relaxed);
}

bool EncodedHeadersInUse() { return EncodedHeaderCreate() != nullptr; }

// Refills a Headers in place (see Headers' friend declaration).
struct HeadersAccess {
  static std::vector<HeaderField>& fields(Headers& headers) {
    return headers.fields_;
  }
};

Message ReadNatsMsg(natsMsg* msg, absl::Time received_at,
                    double root_sample_ratio, TraceOrigin* origin) {
  Message m;
  ReadNatsMsgInto(msg, received_at, root_sample_ratio, origin, m);
  return m;
}

void ReadNatsMsgInto(natsMsg* msg, absl::Time received_at,
                     double root_sample_ratio, TraceOrigin* origin,
                     Message& m) {
  m.received_at = received_at;
  m.subject.assign(natsMsg_GetSubject(msg));
  const char* data = natsMsg_GetData(msg);
  const int len = natsMsg_GetDataLength(msg);
  if (data != nullptr && len > 0) {
    m.data.assign(data, static_cast<size_t>(len));
  } else {
    m.data.clear();
  }

  // Fields are overwritten in order, then the surplus of a previous,
  // longer header list is dropped.
  std::vector<HeaderField>& fields = HeadersAccess::fields(m.headers);
  size_t count = 0;
  auto add = [&fields, &count](absl::string_view key, absl::string_view value) {
    if (count < fields.size()) {
      fields[count].key.assign(key.data(), key.size());
      fields[count].value.assign(value.data(), value.size());
    } else {
      fields.push_back(HeaderField{std::string(key), std::string(value)});
    }
    ++count;
  };
  // natsgw's own headers are picked out in the same pass that copies them
  // (indexes into the fields), instead of a case-insensitive scan per name.
  constexpr size_t kNone = static_cast<size_t>(-1);
  size_t traceparent = kNone, tracestate = kNone, message_id = kNone,
         sent_at = kNone, timeout = kNone;
  const char** keys = nullptr;
  int key_count = 0;
  if (natsMsgHeader_Keys(msg, &keys, &key_count) == NATS_OK) {
    fields.reserve(static_cast<size_t>(key_count));
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
        *slot = count;
      }
      for (int j = 0; j < value_count; ++j) {
        add(key, values[j] != nullptr ? values[j] : "");
      }
      std::free(values);
    }
    std::free(keys);
  }
  fields.erase(fields.begin() + static_cast<std::ptrdiff_t>(count),
               fields.end());
  auto value_at = [&fields](size_t index) -> std::optional<absl::string_view> {
    if (index == kNone) return std::nullopt;
    return absl::string_view(fields[index].value);
  };

  // Trace: the sender's, if well-formed; otherwise a new root (and the raw
  // value is never forwarded).
  TraceOrigin trace_origin = TraceOrigin::kMissing;
  m.trace_replaced = false;
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
    m.message_id.assign(id->data(), id->size());
  } else {
    m.message_id.clear();
  }
  int64_t number = 0;
  m.sent_at.reset();
  if (std::optional<absl::string_view> sent = value_at(sent_at);
      sent && absl::SimpleAtoi(*sent, &number) && number > 0) {
    m.sent_at = absl::FromUnixNanos(number);
  }
  m.deadline.reset();
  if (std::optional<absl::string_view> budget = value_at(timeout);
      budget && absl::SimpleAtoi(*budget, &number)) {
    m.deadline = received_at + absl::Microseconds(number < 0 ? 0 : number);
  }
}

}  // namespace natsgw::internal
