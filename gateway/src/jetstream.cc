#include "natsgw/jetstream.h"

#include <algorithm>
#include <exception>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "jetstream_impl.h"
#include "metrics.h"
#include "nats_status.h"
#include "natsgw/status_macros.h"
#include "natsgw/validation.h"

namespace natsgw {
namespace {

int64_t Nanos(absl::Duration d) { return absl::ToInt64Nanoseconds(d); }

absl::string_view StorageName(StorageType t) {
  return t == StorageType::kMemory ? "memory" : "file";
}
absl::string_view RetentionName(RetentionPolicy r) {
  switch (r) {
    case RetentionPolicy::kLimits:
      return "limits";
    case RetentionPolicy::kInterest:
      return "interest";
    case RetentionPolicy::kWorkQueue:
      return "workqueue";
  }
  return "?";
}
absl::string_view DeliverName(DeliverPolicy d) {
  switch (d) {
    case DeliverPolicy::kAll:
      return "all";
    case DeliverPolicy::kNew:
      return "new";
    case DeliverPolicy::kLast:
      return "last";
  }
  return "?";
}

// Unlimited is -1 for counts and sizes; the server reports it so.
int64_t Limit(int64_t v) { return v <= 0 ? -1 : v; }

struct StreamInfoDeleter {
  void operator()(jsStreamInfo* si) const { jsStreamInfo_Destroy(si); }
};
using StreamInfoPtr = std::unique_ptr<jsStreamInfo, StreamInfoDeleter>;
struct ConsumerInfoDeleter {
  void operator()(jsConsumerInfo* ci) const { jsConsumerInfo_Destroy(ci); }
};
using ConsumerInfoPtr = std::unique_ptr<jsConsumerInfo, ConsumerInfoDeleter>;

StreamState ToStreamState(const jsStreamInfo& si, bool created) {
  StreamState state;
  const jsStreamConfig& c = *si.Config;
  state.config.name = c.Name ? c.Name : "";
  state.config.description = c.Description ? c.Description : "";
  for (int i = 0; i < c.SubjectsLen; ++i)
    state.config.subjects.push_back(c.Subjects[i]);
  state.config.storage =
      c.Storage == js_MemoryStorage ? StorageType::kMemory : StorageType::kFile;
  state.config.retention =
      c.Retention == js_InterestPolicy    ? RetentionPolicy::kInterest
      : c.Retention == js_WorkQueuePolicy ? RetentionPolicy::kWorkQueue
                                          : RetentionPolicy::kLimits;
  state.config.replicas = static_cast<int>(c.Replicas);
  state.config.max_age = absl::Nanoseconds(c.MaxAge);
  state.config.max_msgs = c.MaxMsgs;
  state.config.max_bytes = c.MaxBytes;
  state.config.max_msg_size = c.MaxMsgSize;
  state.config.duplicate_window = absl::Nanoseconds(c.Duplicates);
  state.messages = si.State.Msgs;
  state.bytes = si.State.Bytes;
  state.first_sequence = si.State.FirstSeq;
  state.last_sequence = si.State.LastSeq;
  if (si.Cluster != nullptr && si.Cluster->Leader != nullptr) {
    state.leader = si.Cluster->Leader;
  }
  state.created = created;
  return state;
}

ConsumerState ToConsumerState(const jsConsumerInfo& ci, bool created) {
  ConsumerState state;
  const jsConsumerConfig& c = *ci.Config;
  state.config.stream = ci.Stream ? ci.Stream : "";
  state.config.durable = c.Durable ? c.Durable : "";
  state.config.description = c.Description ? c.Description : "";
  state.config.filter_subject = c.FilterSubject ? c.FilterSubject : "";
  state.config.deliver = c.DeliverPolicy == js_DeliverNew ? DeliverPolicy::kNew
                         : c.DeliverPolicy == js_DeliverLast
                             ? DeliverPolicy::kLast
                             : DeliverPolicy::kAll;
  state.config.ack_wait = absl::Nanoseconds(c.AckWait);
  state.config.max_deliver = c.MaxDeliver;
  state.config.max_ack_pending = c.MaxAckPending;
  state.ack_pending = static_cast<uint64_t>(ci.NumAckPending);
  state.pending = ci.NumPending;
  state.redelivered = static_cast<uint64_t>(ci.NumRedelivered);
  state.created = created;
  return state;
}

// Collects "field: declared X, found Y" differences.
class Diff {
 public:
  template <class T>
  void Check(absl::string_view field, const T& declared, const T& found) {
    if (!(declared == found)) {
      diffs_.push_back(absl::StrCat(field, " declared ", Show(declared),
                                    ", found ", Show(found)));
    }
  }
  absl::Status Result(absl::string_view what) const {
    if (diffs_.empty()) return absl::OkStatus();
    return absl::FailedPreconditionError(absl::StrCat(
        what, " exists with a different configuration (",
        absl::StrJoin(diffs_, "; "),
        "); natsgw does not change it on its own: update or delete it, or "
        "change the declaration"));
  }

 private:
  static std::string Show(const std::string& s) {
    return absl::StrCat("\"", s, "\"");
  }
  static std::string Show(absl::string_view s) { return std::string(s); }
  static std::string Show(int64_t v) { return absl::StrCat(v); }
  static std::string Show(int v) { return absl::StrCat(v); }
  static std::string Show(absl::Duration d) { return absl::FormatDuration(d); }
  static std::string Show(const std::vector<std::string>& v) {
    return absl::StrCat("[", absl::StrJoin(v, ", "), "]");
  }
  std::vector<std::string> diffs_;
};

absl::Status CompareStream(const StreamConfig& want, const StreamConfig& got) {
  Diff d;
  std::vector<std::string> a = want.subjects, b = got.subjects;
  std::sort(a.begin(), a.end());
  std::sort(b.begin(), b.end());
  d.Check("subjects", a, b);
  d.Check("storage", StorageName(want.storage), StorageName(got.storage));
  d.Check("retention", RetentionName(want.retention),
          RetentionName(got.retention));
  d.Check("replicas", want.replicas, got.replicas);
  d.Check("max_age", want.max_age, got.max_age);
  d.Check("max_msgs", Limit(want.max_msgs), Limit(got.max_msgs));
  d.Check("max_bytes", Limit(want.max_bytes), Limit(got.max_bytes));
  d.Check("max_msg_size", Limit(want.max_msg_size), Limit(got.max_msg_size));
  d.Check("duplicate_window", want.duplicate_window, got.duplicate_window);
  return d.Result(absl::StrCat("stream \"", want.name, "\""));
}

absl::Status CompareConsumer(const ConsumerConfig& want,
                             const ConsumerConfig& got) {
  Diff d;
  d.Check("filter_subject", want.filter_subject, got.filter_subject);
  d.Check("deliver", DeliverName(want.deliver), DeliverName(got.deliver));
  d.Check("ack_wait", want.ack_wait, got.ack_wait);
  d.Check("max_deliver", Limit(want.max_deliver), Limit(got.max_deliver));
  d.Check("max_ack_pending", Limit(want.max_ack_pending),
          Limit(got.max_ack_pending));
  return d.Result(absl::StrCat("consumer \"", want.durable, "\" on stream \"",
                               want.stream, "\""));
}

}  // namespace

absl::Status ValidateJetStreamName(absl::string_view name,
                                   absl::string_view what) {
  if (name.empty() || name.size() > 255) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " must be 1 to 255 characters long"));
  }
  for (char c : name) {
    if (c <= ' ' || c == 0x7f || c == '.' || c == '*' || c == '>' || c == '/' ||
        c == '\\') {
      // Escaped: the name may hold the very control characters the rule
      // forbids, and this message ends up in logs.
      return absl::InvalidArgumentError(absl::StrCat(
          what, " \"", absl::CHexEscape(name.substr(0, 80)),
          name.size() > 80 ? "..." : "",
          "\" may not contain whitespace, control characters, '.', '*', "
          "'>', '/' or '\\'"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateStreamConfig(const StreamConfig& c) {
  NATSGW_RETURN_IF_ERROR(ValidateJetStreamName(c.name, "stream name"));
  if (c.subjects.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("stream \"", c.name, "\" declares no subjects"));
  }
  for (const std::string& s : c.subjects) {
    if (absl::Status v = ValidateSubscribeSubject(s); !v.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("stream \"", c.name, "\" subject: ", v.message()));
    }
  }
  if (c.replicas < 1 || c.replicas > 5) {
    return absl::InvalidArgumentError(absl::StrCat(
        "stream \"", c.name, "\": replicas must be 1..5, got ", c.replicas));
  }
  if (c.max_age < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("stream max_age must not be negative");
  }
  if (c.duplicate_window <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("stream \"", c.name,
                     "\": duplicate_window must be positive (it is what "
                     "makes Nats-Msg-Id de-duplication and producer retries "
                     "safe)"));
  }
  if (c.max_age > absl::ZeroDuration() && c.duplicate_window > c.max_age) {
    return absl::InvalidArgumentError(absl::StrCat(
        "stream \"", c.name, "\": duplicate_window (",
        absl::FormatDuration(c.duplicate_window), ") exceeds max_age (",
        absl::FormatDuration(c.max_age), ")"));
  }
  return absl::OkStatus();
}

absl::Status ValidateConsumerConfig(const ConsumerConfig& c) {
  NATSGW_RETURN_IF_ERROR(ValidateJetStreamName(c.stream, "stream name"));
  NATSGW_RETURN_IF_ERROR(ValidateJetStreamName(c.durable, "durable name"));
  if (!c.filter_subject.empty()) {
    if (absl::Status v = ValidateSubscribeSubject(c.filter_subject); !v.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("consumer filter_subject: ", v.message()));
    }
  }
  if (c.ack_wait < absl::Milliseconds(1)) {
    return absl::InvalidArgumentError("consumer ack_wait must be at least 1ms");
  }
  if (c.max_deliver == 0 || c.max_deliver < -1) {
    return absl::InvalidArgumentError(
        "consumer max_deliver must be positive or -1 (unlimited)");
  }
  if (c.max_ack_pending == 0 || c.max_ack_pending < -1) {
    return absl::InvalidArgumentError(
        "consumer max_ack_pending must be positive or -1 (unlimited)");
  }
  return absl::OkStatus();
}

namespace internal {

std::optional<absl::StatusCode> StatusCodeForJetStreamError(int err_code) {
  switch (err_code) {
    case JSStreamNotFoundErr:
    case JSConsumerNotFoundErr:
      return absl::StatusCode::kNotFound;
    case JSNotEnabledErr:
    case JSNotEnabledForAccountErr:
    case JSClusterNoPeersErr:
    case JSInsufficientResourcesErr:
      return absl::StatusCode::kUnavailable;
    case JSStreamSubjectOverlapErr:
    case JSStreamNameExistErr:
    case JSConsumerNameExistErr:
    case JSStreamNotMatchErr:
    case JSStreamWrongLastMsgIDErr:
    case JSStreamWrongLastSequenceErr:
      return absl::StatusCode::kFailedPrecondition;
    case JSStreamMessageExceedsMaximumErr:
      return absl::StatusCode::kInvalidArgument;
    default:
      return std::nullopt;
  }
}

absl::Status JetStreamError(natsStatus s, jsErrCode err,
                            absl::string_view context) {
  const std::string detail = nats_GetLastError(nullptr) != nullptr
                                 ? nats_GetLastError(nullptr)
                                 : natsStatus_GetText(s);
  const std::string message = absl::StrCat(context, ": ", detail);
  if (std::optional<absl::StatusCode> code =
          StatusCodeForJetStreamError(static_cast<int>(err))) {
    return absl::Status(*code, message);
  }
  if (s == NATS_NO_RESPONDERS) {
    return absl::UnavailableError(absl::StrCat(
        context,
        ": JetStream did not answer (not enabled on the server, or "
        "no stream leader right now)"));
  }
  if (s == NATS_NOT_FOUND) return absl::NotFoundError(message);
  if (s == NATS_ERR && err != 0) return absl::UnknownError(message);
  return absl::Status(StatusCodeFromNats(s), message);
}

absl::StatusOr<std::shared_ptr<JetStreamMetrics>> JetStreamMetrics::Create(
    prometheus::Registry& registry) {
  auto m = std::make_shared<JetStreamMetrics>();
  try {
    m->published =
        &prometheus::BuildCounter()
             .Name("natsgw_js_published_total")
             .Help(
                 "JetStream publishes by outcome: stored, duplicate (the "
                 "stream had the Nats-Msg-Id already) or failed")
             .Register(registry);
    m->publish_retries =
        &prometheus::BuildCounter()
             .Name("natsgw_js_publish_retries_total")
             .Help("JetStream publish attempts after the first")
             .Register(registry);
    m->publish_duration =
        &prometheus::BuildHistogram()
             .Name("natsgw_js_publish_duration_seconds")
             .Help(
                 "JetStream publish, from the first send to the stream's "
                 "acknowledgement, retries included")
             .Register(registry);
    m->publish_pending =
        &prometheus::BuildGauge()
             .Name("natsgw_js_publish_pending")
             .Help("Asynchronous JetStream publishes awaiting their ack")
             .Register(registry);
    m->deliveries = &prometheus::BuildCounter()
                         .Name("natsgw_js_deliveries_total")
                         .Help(
                             "JetStream deliveries by outcome: ack, nak, term, "
                             "dead_letter, skipped_duplicate")
                         .Register(registry);
    m->redeliveries =
        &prometheus::BuildCounter()
             .Name("natsgw_js_redeliveries_total")
             .Help("JetStream deliveries of a message delivered before")
             .Register(registry);
    m->dead_lettered = &prometheus::BuildCounter()
                            .Name("natsgw_js_dead_lettered_total")
                            .Help("Messages moved to the dead-letter subject")
                            .Register(registry);
    m->in_progress =
        &prometheus::BuildCounter()
             .Name("natsgw_js_in_progress_total")
             .Help("In-progress heartbeats sent for long-running handlers")
             .Register(registry);
    m->handler_duration = &prometheus::BuildHistogram()
                               .Name("natsgw_js_handler_duration_seconds")
                               .Help("JetStream consumer handler run time")
                               .Register(registry);
    m->delivery_latency =
        &prometheus::BuildHistogram()
             .Name("natsgw_js_delivery_latency_seconds")
             .Help(
                 "From the message's store time on the server to its "
                 "handler's start")
             .Register(registry);
  } catch (const std::exception& e) {
    return absl::InternalError(
        absl::StrCat("registering JetStream metrics: ", e.what()));
  }
  return m;
}

}  // namespace internal

absl::StatusOr<std::unique_ptr<JetStream::Impl>> JetStream::Impl::Create(
    Connection& conn, JetStreamOptions options) {
  if (options.api_timeout < absl::Milliseconds(1)) {
    return absl::InvalidArgumentError(
        "JetStreamOptions::api_timeout must be at least 1ms");
  }
  NATSGW_RETURN_IF_ERROR(conn.impl().CheckOpen());
  std::unique_ptr<Impl> impl(new Impl(conn, std::move(options)));
  jsOptions o = impl->ApiOptions();
  natsStatus s =
      natsConnection_JetStream(&impl->js_, conn.impl().rpc_connection(), &o);
  if (s != NATS_OK) {
    impl->js_ = nullptr;
    return internal::NatsError(s, "creating the JetStream context");
  }
  return impl;
}

JetStream::Impl::~Impl() {
  if (js_ != nullptr) jsCtx_Destroy(js_);
}

jsOptions JetStream::Impl::ApiOptions() const {
  jsOptions o;
  jsOptions_Init(&o);
  o.Wait = absl::ToInt64Milliseconds(options_.api_timeout);
  return o;
}

absl::StatusOr<std::unique_ptr<JetStream>> JetStream::Create(
    Connection& conn, JetStreamOptions options) {
  NATSGW_ASSIGN_OR_RETURN(std::unique_ptr<Impl> impl,
                          Impl::Create(conn, std::move(options)));
  return std::unique_ptr<JetStream>(new JetStream(std::move(impl)));
}

JetStream::JetStream(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
JetStream::~JetStream() = default;

Connection& JetStream::connection() const { return impl_->conn(); }
const JetStreamOptions& JetStream::options() const { return impl_->options(); }

absl::StatusOr<StreamState> JetStream::GetStream(absl::string_view name) {
  NATSGW_RETURN_IF_ERROR(ValidateJetStreamName(name, "stream name"));
  NATSGW_RETURN_IF_ERROR(impl_->conn_impl().CheckOpen());
  const std::string n(name);
  jsOptions o = impl_->ApiOptions();
  jsStreamInfo* raw = nullptr;
  jsErrCode err = static_cast<jsErrCode>(0);
  natsStatus s = js_GetStreamInfo(&raw, impl_->js(), n.c_str(), &o, &err);
  StreamInfoPtr si(raw);
  if (s != NATS_OK) {
    return internal::JetStreamError(
        s, err, absl::StrCat("looking up stream \"", n, "\""));
  }
  return ToStreamState(*si, /*created=*/false);
}

absl::StatusOr<StreamState> JetStream::EnsureStream(const StreamConfig& want) {
  NATSGW_RETURN_IF_ERROR(ValidateStreamConfig(want));
  absl::StatusOr<StreamState> existing = GetStream(want.name);
  if (existing.ok()) {
    NATSGW_RETURN_IF_ERROR(CompareStream(want, existing->config));
    return existing;
  }
  if (!absl::IsNotFound(existing.status())) return existing.status();

  jsStreamConfig c;
  jsStreamConfig_Init(&c);
  c.Name = want.name.c_str();
  if (!want.description.empty()) c.Description = want.description.c_str();
  std::vector<const char*> subjects;
  for (const std::string& s : want.subjects) subjects.push_back(s.c_str());
  c.Subjects = subjects.data();
  c.SubjectsLen = static_cast<int>(subjects.size());
  c.Storage =
      want.storage == StorageType::kMemory ? js_MemoryStorage : js_FileStorage;
  c.Retention = want.retention == RetentionPolicy::kInterest ? js_InterestPolicy
                : want.retention == RetentionPolicy::kWorkQueue
                    ? js_WorkQueuePolicy
                    : js_LimitsPolicy;
  c.Replicas = want.replicas;
  c.MaxAge = Nanos(want.max_age);
  c.MaxMsgs = Limit(want.max_msgs);
  c.MaxBytes = Limit(want.max_bytes);
  c.MaxMsgSize = static_cast<int32_t>(Limit(want.max_msg_size));
  c.Duplicates = Nanos(want.duplicate_window);
  jsOptions o = impl_->ApiOptions();
  jsStreamInfo* raw = nullptr;
  jsErrCode err = static_cast<jsErrCode>(0);
  natsStatus s = js_AddStream(&raw, impl_->js(), &c, &o, &err);
  StreamInfoPtr si(raw);
  if (s != NATS_OK) {
    // Another instance may have created it just now: verify that one.
    if (err == JSStreamNameExistErr) return EnsureStream(want);
    return internal::JetStreamError(
        s, err, absl::StrCat("creating stream \"", want.name, "\""));
  }
  return ToStreamState(*si, /*created=*/true);
}

absl::Status JetStream::DeleteStream(absl::string_view name) {
  NATSGW_RETURN_IF_ERROR(ValidateJetStreamName(name, "stream name"));
  NATSGW_RETURN_IF_ERROR(impl_->conn_impl().CheckOpen());
  const std::string n(name);
  jsOptions o = impl_->ApiOptions();
  jsErrCode err = static_cast<jsErrCode>(0);
  natsStatus s = js_DeleteStream(impl_->js(), n.c_str(), &o, &err);
  if (s != NATS_OK) {
    return internal::JetStreamError(
        s, err, absl::StrCat("deleting stream \"", n, "\""));
  }
  return absl::OkStatus();
}

absl::StatusOr<ConsumerState> JetStream::GetConsumer(
    absl::string_view stream, absl::string_view durable) {
  NATSGW_RETURN_IF_ERROR(ValidateJetStreamName(stream, "stream name"));
  NATSGW_RETURN_IF_ERROR(ValidateJetStreamName(durable, "durable name"));
  NATSGW_RETURN_IF_ERROR(impl_->conn_impl().CheckOpen());
  const std::string st(stream), d(durable);
  jsOptions o = impl_->ApiOptions();
  jsConsumerInfo* raw = nullptr;
  jsErrCode err = static_cast<jsErrCode>(0);
  natsStatus s =
      js_GetConsumerInfo(&raw, impl_->js(), st.c_str(), d.c_str(), &o, &err);
  ConsumerInfoPtr ci(raw);
  if (s != NATS_OK) {
    return internal::JetStreamError(
        s, err,
        absl::StrCat("looking up consumer \"", d, "\" on stream \"", st, "\""));
  }
  return ToConsumerState(*ci, /*created=*/false);
}

absl::Status JetStream::DeleteConsumer(absl::string_view stream,
                                       absl::string_view durable) {
  NATSGW_RETURN_IF_ERROR(ValidateJetStreamName(stream, "stream name"));
  NATSGW_RETURN_IF_ERROR(ValidateJetStreamName(durable, "durable name"));
  NATSGW_RETURN_IF_ERROR(impl_->conn_impl().CheckOpen());
  const std::string st(stream), d(durable);
  jsOptions o = impl_->ApiOptions();
  jsErrCode err = static_cast<jsErrCode>(0);
  natsStatus s =
      js_DeleteConsumer(impl_->js(), st.c_str(), d.c_str(), &o, &err);
  if (s != NATS_OK) {
    return internal::JetStreamError(
        s, err,
        absl::StrCat("deleting consumer \"", d, "\" on stream \"", st, "\""));
  }
  return absl::OkStatus();
}

absl::StatusOr<ConsumerState> JetStream::EnsureConsumer(
    const ConsumerConfig& want) {
  NATSGW_RETURN_IF_ERROR(ValidateConsumerConfig(want));
  absl::StatusOr<ConsumerState> existing =
      GetConsumer(want.stream, want.durable);
  if (existing.ok()) {
    NATSGW_RETURN_IF_ERROR(CompareConsumer(want, existing->config));
    return existing;
  }
  if (!absl::IsNotFound(existing.status())) return existing.status();

  jsConsumerConfig c;
  jsConsumerConfig_Init(&c);
  c.Durable = want.durable.c_str();
  if (!want.description.empty()) c.Description = want.description.c_str();
  if (!want.filter_subject.empty())
    c.FilterSubject = want.filter_subject.c_str();
  c.DeliverPolicy = want.deliver == DeliverPolicy::kNew    ? js_DeliverNew
                    : want.deliver == DeliverPolicy::kLast ? js_DeliverLast
                                                           : js_DeliverAll;
  c.AckPolicy = js_AckExplicit;
  c.AckWait = Nanos(want.ack_wait);
  c.MaxDeliver = Limit(want.max_deliver);
  c.MaxAckPending = Limit(want.max_ack_pending);
  jsOptions o = impl_->ApiOptions();
  jsConsumerInfo* raw = nullptr;
  jsErrCode err = static_cast<jsErrCode>(0);
  natsStatus s =
      js_AddConsumer(&raw, impl_->js(), want.stream.c_str(), &c, &o, &err);
  ConsumerInfoPtr ci(raw);
  if (s != NATS_OK) {
    if (err == JSConsumerNameExistErr) return EnsureConsumer(want);
    return internal::JetStreamError(
        s, err,
        absl::StrCat("creating consumer \"", want.durable, "\" on stream \"",
                     want.stream, "\""));
  }
  return ToConsumerState(*ci, /*created=*/true);
}

}  // namespace natsgw
