#include "natsgw/typed_subscriber.h"

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/registry.h>

#include <cstdint>
#include <exception>
#include <mutex>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "failure_count.h"
#include "natsgw/logger.h"
#include "natsgw/validation.h"

namespace natsgw::internal {
namespace {

constexpr absl::string_view kInvalidMetric = "natsgw_messages_invalid_total";

// A hostile or broken producer can send garbage as fast as the network
// allows; one report per interval keeps the log readable while the counter
// keeps the exact number.
constexpr absl::Duration kReportInterval = absl::Seconds(1);

// Counts and reports the messages of one subscription that failed
// verification. Thread-safe: Record() may run on several delivery threads
// at once.
class InvalidMessages {
 public:
  InvalidMessages(std::shared_ptr<prometheus::Registry> registry,
                  prometheus::Counter* counter, std::shared_ptr<Logger> logger,
                  std::string pattern, std::string what)
      : registry_(std::move(registry)),
        counter_(counter),
        logger_(std::move(logger)),
        pattern_(std::move(pattern)),
        what_(std::move(what)) {}

  void Record(const Message& m, const absl::Status& why) {
    counter_->Increment();
    if (logger_ == nullptr) return;
    int64_t unreported = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      const absl::Time now = absl::Now();
      if (now - last_report_ < kReportInterval) {
        ++unreported_;
        return;
      }
      last_report_ = now;
      unreported = unreported_;
      unreported_ = 0;
    }
    // Logged outside the lock: a slow logger must not hold up other
    // delivery threads of this subscription.
    logger_->Log(
        absl::LogSeverity::kWarning,
        absl::StrCat("dropped a message on '", m.subject, "' (subscription '",
                     pattern_, "', Nats-Msg-Id '", m.message_id,
                     "'): not a valid ", what_, ": ", why.message(),
                     unreported > 0
                         ? absl::StrCat("; ", unreported,
                                        " more dropped since the last report")
                         : "",
                     " [trace ", m.trace.TraceIdHex(), "]"));
  }

 private:
  // Owns the family the counter belongs to.
  const std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Counter* const counter_;
  const std::shared_ptr<Logger> logger_;
  const std::string pattern_;
  const std::string what_;

  std::mutex mu_;
  absl::Time last_report_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  int64_t unreported_ ABSL_GUARDED_BY(mu_) = 0;
};

// The series natsgw_messages_invalid_total{subject=label}, created now so
// that the first invalid message is an increase from 0 that rate() sees.
absl::StatusOr<prometheus::Counter*> InvalidCounter(
    prometheus::Registry& registry, absl::string_view label) {
  // prometheus-cpp reports conflicts by throwing; no exception leaves natsgw.
  try {
    prometheus::Family<prometheus::Counter>& family =
        prometheus::BuildCounter()
            .Name(std::string(kInvalidMetric))
            .Help(
                "Messages of typed subscriptions dropped before their "
                "handler because the payload failed FlatBuffers "
                "verification, by subscription pattern (or "
                "metric_subject)")
            .Register(registry);
    return &family.Add({{"subject", std::string(label)}});
  } catch (const std::exception& e) {
    return absl::AlreadyExistsError(absl::StrCat(
        "cannot register metric ", kInvalidMetric, ": ", e.what()));
  }
}

}  // namespace

absl::Status EmptyEventHandler(const Connection& connection) {
  return CountFailure(
      connection, "subscribe",
      absl::InvalidArgumentError("SubscribeTyped: the handler is empty"));
}

absl::StatusOr<std::unique_ptr<Subscription>> SubscribeVerified(
    Connection& connection, absl::string_view subject,
    absl::string_view file_identifier, absl::string_view type_name,
    absl::string_view queue_group, const SubscriberOptions& options,
    VerifyAndDeliver deliver) {
  const MessageLimits& limits = connection.options().limits;
  // Refused here, before the Connection sees them: counted as the
  // Connection counts the subscriptions it refuses.
  if (absl::Status s = ValidateEventTopic(subject, file_identifier, limits);
      !s.ok()) {
    return CountFailure(connection, "subscribe", std::move(s));
  }
  if (absl::Status s = ValidateQueueGroup(queue_group, limits); !s.ok()) {
    return CountFailure(connection, "subscribe", std::move(s));
  }
  if (absl::Status s = ValidateVerifyLimits(options.verify); !s.ok()) {
    return CountFailure(connection, "subscribe",
                        absl::InvalidArgumentError(absl::StrCat(
                            "SubscriberOptions.verify: ", s.message())));
  }
  std::shared_ptr<prometheus::Registry> registry = connection.registry();
  if (registry == nullptr) {
    return absl::FailedPreconditionError("the connection has no registry");
  }
  // The label of every other metric of this subscription.
  const absl::string_view label = options.subscribe.metric_subject.empty()
                                      ? subject
                                      : options.subscribe.metric_subject;
  absl::StatusOr<prometheus::Counter*> counter =
      InvalidCounter(*registry, label);
  if (!counter.ok()) return counter.status();
  std::string what = type_name.empty()
                         ? absl::StrCat("payload for '", subject, "'")
                         : std::string(type_name);
  auto invalid = std::make_shared<InvalidMessages>(
      std::move(registry), *counter, connection.options().logger,
      std::string(subject), std::move(what));
  return connection.Subscribe(
      subject, queue_group,
      [invalid = std::move(invalid),
       deliver = std::move(deliver)](const Message& m) mutable {
        // With subscribe.workers > 0 this runs concurrently: `deliver` only
        // reads its captures, and Record() is thread-safe.
        absl::Status verified = deliver(m);
        if (!verified.ok()) invalid->Record(m, verified);
      },
      options.subscribe);
}

}  // namespace natsgw::internal
