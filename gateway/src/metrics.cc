#include "metrics.h"

#include <exception>
#include <vector>

#include "absl/strings/str_cat.h"
#include "natsgw/version.h"

namespace natsgw::internal {
namespace {

constexpr absl::string_view kOverflowLabel = "_other";

uint64_t NextInstanceId() {
  static std::atomic<uint64_t> next{1};
  return next.fetch_add(1, std::memory_order_relaxed);
}

// The last label each thread looked up: a publisher usually sends to the
// same subject repeatedly, and this spares the shared mutex and hash lookup.
struct LookupCache {
  uint64_t instance_id = 0;
  std::string label;
  SubjectMetrics* metrics = nullptr;
};
thread_local LookupCache t_lookup_cache;

}  // namespace

const prometheus::Histogram::BucketBoundaries& LatencyBuckets() {
  static const auto* const kBuckets =
      new prometheus::Histogram::BucketBoundaries{
          1e-5, 2.5e-5, 5e-5,   1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3,
          5e-3, 1e-2,   2.5e-2, 5e-2, 0.1,    0.5,  2.5};
  return *kBuckets;
}

int CodeIndex(absl::StatusCode code) {
  const int index = static_cast<int>(code);
  if (index < 0 || index >= kCodeCount) {
    return static_cast<int>(absl::StatusCode::kUnknown);
  }
  return index;
}

const std::string& CodeLabel(absl::StatusCode code) {
  static const auto* const kLabels = [] {
    auto* labels = new std::vector<std::string>;
    for (int i = 0; i < kCodeCount; ++i) {
      labels->push_back(
          absl::StatusCodeToString(static_cast<absl::StatusCode>(i)));
    }
    return labels;
  }();
  return (*kLabels)[CodeIndex(code)];
}

absl::string_view OperationLabel(Operation op) {
  switch (op) {
    case Operation::kConnect:
      return "connect";
    case Operation::kPublish:
      return "publish";
    case Operation::kSubscribe:
      return "subscribe";
    case Operation::kRequest:
      return "request";
    case Operation::kServe:
      return "serve";
    case Operation::kReply:
      return "reply";
    case Operation::kFlush:
      return "flush";
  }
  return "unknown";
}

HistogramsByCode::HistogramsByCode(
    prometheus::Family<prometheus::Histogram>* family,
    const std::string& subject) {
  for (int i = 0; i < kCodeCount; ++i) {
    by_code_[i].Init(family,
                     {{"subject", subject},
                      {"code", CodeLabel(static_cast<absl::StatusCode>(i))}});
  }
}

SubjectMetrics::SubjectMetrics(GatewayMetrics& metrics,
                               const std::string& subject_label)
    : label(subject_label),
      published(metrics.published_, {{"subject", subject_label}}),
      received(metrics.received_, {{"subject", subject_label}}),
      publish_duration(metrics.publish_duration_, {{"subject", subject_label}}),
      handler_duration(metrics.handler_duration_, {{"subject", subject_label}}),
      delivery_latency(metrics.delivery_latency_, {{"subject", subject_label}}),
      retries(metrics.retries_, {{"subject", subject_label}}),
      hedges(metrics.hedges_, {{"subject", subject_label}}),
      shed(metrics.shed_, {{"subject", subject_label}}),
      expired(metrics.expired_, {{"subject", subject_label}}),
      in_flight(metrics.in_flight_, {{"subject", subject_label}}),
      client_request(metrics.client_request_duration_, subject_label),
      server_queue_wait(metrics.server_queue_wait_,
                        {{"subject", subject_label}}),
      server_request(metrics.server_request_duration_, subject_label),
      server_handler(metrics.server_handler_duration_, subject_label) {}

GatewayMetrics::GatewayMetrics(std::shared_ptr<prometheus::Registry> registry,
                               size_t max_subjects)
    : registry_(std::move(registry)),
      max_subjects_(max_subjects),
      instance_id_(NextInstanceId()) {}

absl::StatusOr<std::unique_ptr<GatewayMetrics>> GatewayMetrics::Create(
    std::shared_ptr<prometheus::Registry> registry, size_t max_subjects) {
  if (registry == nullptr) {
    return absl::InvalidArgumentError("metrics registry is null");
  }
  std::unique_ptr<GatewayMetrics> m(
      new GatewayMetrics(std::move(registry), max_subjects));
  prometheus::Registry& r = *m->registry_;
  // prometheus-cpp reports conflicts by throwing; no exception leaves natsgw.
  try {
    m->client_request_duration_ =
        &prometheus::BuildHistogram()
             .Name("natsgw_client_request_duration_seconds")
             .Help(
                 "Time from sending a request to receiving its reply or "
                 "error, by subject and status code.")
             .Register(r);
    m->server_request_duration_ =
        &prometheus::BuildHistogram()
             .Name("natsgw_server_request_duration_seconds")
             .Help(
                 "Time a served endpoint spent on a request, from receipt "
                 "to its reply being ready to send (queueing and handling), "
                 "by subject pattern and status code.")
             .Register(r);
    m->server_queue_wait_ =
        &prometheus::BuildHistogram()
             .Name("natsgw_server_queue_wait_seconds")
             .Help(
                 "Time a served request waited between its receipt and its "
                 "handler's start (client-library and task-queue queues), by "
                 "subject pattern.")
             .Register(r);
    m->server_handler_duration_ =
        &prometheus::BuildHistogram()
             .Name("natsgw_server_handler_duration_seconds")
             .Help(
                 "Time a served endpoint's handler ran for one request, by "
                 "subject pattern and status code.")
             .Register(r);
    m->handler_duration_ =
        &prometheus::BuildHistogram()
             .Name("natsgw_subscription_handler_duration_seconds")
             .Help(
                 "Time a subscription handler spent on one message, by "
                 "subject pattern.")
             .Register(r);
    m->delivery_latency_ =
        &prometheus::BuildHistogram()
             .Name("natsgw_delivery_latency_seconds")
             .Help(
                 "Time from a message's send timestamp (sender's clock) to "
                 "its subscription handler starting (receiver's clock), by "
                 "subject pattern: transit, client-library queueing and "
                 "handler queueing. Clock skew between hosts adds to it; "
                 "negative values are recorded as 0.")
             .Register(r);
    m->publish_duration_ =
        &prometheus::BuildHistogram()
             .Name("natsgw_publish_duration_seconds")
             .Help(
                 "Time a Publish call took to validate, stamp and hand a "
                 "message to the connection, by subject.")
             .Register(r);
    m->published_ = &prometheus::BuildCounter()
                         .Name("natsgw_messages_published_total")
                         .Help(
                             "Messages published (requests and replies "
                             "excluded), by subject.")
                         .Register(r);
    m->received_ = &prometheus::BuildCounter()
                        .Name("natsgw_messages_received_total")
                        .Help(
                            "Messages delivered to subscription and "
                            "endpoint handlers, by subject pattern.")
                        .Register(r);
    m->retries_ = &prometheus::BuildCounter()
                       .Name("natsgw_client_retries_total")
                       .Help(
                           "Request attempts sent again after a retryable "
                           "failure (retry policy), by subject.")
                       .Register(r);
    m->hedges_ = &prometheus::BuildCounter()
                      .Name("natsgw_client_hedges_total")
                      .Help(
                          "Extra copies of slow requests sent (hedging "
                          "policy), by subject.")
                      .Register(r);
    m->shed_ = &prometheus::BuildCounter()
                    .Name("natsgw_server_shed_total")
                    .Help(
                        "Requests an endpoint answered RESOURCE_EXHAUSTED "
                        "because it was at its in-flight limit, by subject "
                        "pattern.")
                    .Register(r);
    m->expired_ = &prometheus::BuildCounter()
                       .Name("natsgw_server_expired_total")
                       .Help(
                           "Requests an endpoint answered DEADLINE_EXCEEDED "
                           "without running the handler because the caller's "
                           "budget had run out, by subject pattern.")
                       .Register(r);
    m->in_flight_ =
        &prometheus::BuildGauge()
             .Name("natsgw_client_in_flight")
             .Help("Requests sent and not yet answered or failed, by subject.")
             .Register(r);
    m->connections_ =
        &prometheus::BuildGauge()
             .Name("natsgw_nats_connections")
             .Help(
                 "NATS connections currently up, by lane (rpc: requests, "
                 "replies and JetStream; publish: batched publishes and "
                 "subscriptions).")
             .Register(r);
    m->disconnects_ = &prometheus::BuildCounter()
                           .Name("natsgw_nats_disconnects_total")
                           .Help(
                               "Unplanned losses of a NATS connection, by "
                               "lane.")
                           .Register(r);
    m->reconnects_ = &prometheus::BuildCounter()
                          .Name("natsgw_nats_reconnects_total")
                          .Help(
                              "NATS connections re-established after a "
                              "loss, by lane.")
                          .Register(r);
    m->slow_consumers_ =
        &prometheus::BuildCounter()
             .Name("natsgw_slow_consumer_events_total")
             .Help(
                 "Times the client library reported a slow consumer (a "
                 "subscription's pending limit reached, messages dropped), by "
                 "lane.")
             .Register(r);
    prometheus::BuildGauge()
        .Name("natsgw_build_info")
        .Help("Always 1; the natsgw release in the version label.")
        .Register(r)
        .Add({{"version", NATSGW_VERSION_STRING}})
        .Set(1);
    auto& errors = prometheus::BuildCounter()
                       .Name("natsgw_errors_total")
                       .Help("Failed operations by operation and status code.")
                       .Register(r);
    for (int op = 0; op < kOperationCount; ++op) {
      for (int code = 0; code < kCodeCount; ++code) {
        m->errors_[op][code].Init(
            &errors,
            {{"operation",
              std::string(OperationLabel(static_cast<Operation>(op)))},
             {"code", CodeLabel(static_cast<absl::StatusCode>(code))}});
      }
    }
    auto& replaced = prometheus::BuildCounter()
                         .Name("natsgw_trace_context_replaced_total")
                         .Help(
                             "Received messages whose traceparent was missing "
                             "or invalid and was replaced by a new trace.")
                         .Register(r);
    m->trace_missing_ = &replaced.Add({{"reason", "missing"}});
    m->trace_invalid_ = &replaced.Add({{"reason", "invalid"}});
    m->subjects_overflow_ =
        &prometheus::BuildCounter()
             .Name("natsgw_metric_subjects_overflow_total")
             .Help(
                 "Sends recorded under subject=\"_other\" because "
                 "max_metric_subjects distinct subjects were already in use.")
             .Register(r)
             .Add({});
  } catch (const std::exception& e) {
    return absl::AlreadyExistsError(absl::StrCat(
        "cannot register natsgw metrics in the given registry: ", e.what()));
  }
  return m;
}

SubjectMetrics& GatewayMetrics::ForPattern(absl::string_view pattern) {
  return Lookup(pattern, /*literal=*/false);
}

SubjectMetrics& GatewayMetrics::ForLiteral(absl::string_view subject) {
  return Lookup(subject, /*literal=*/true);
}

SubjectMetrics& GatewayMetrics::Lookup(absl::string_view label, bool literal) {
  LookupCache& cache = t_lookup_cache;
  if (cache.instance_id == instance_id_ && cache.label == label) {
    return *cache.metrics;
  }
  SubjectMetrics& found = LookupLocked(label, literal);
  // Overflowed subjects are not cached, so each one keeps being counted.
  if (found.label == label) {
    cache.instance_id = instance_id_;
    cache.label.assign(label.data(), label.size());
    cache.metrics = &found;
  }
  return found;
}

SubjectMetrics& GatewayMetrics::LookupLocked(absl::string_view label,
                                             bool literal) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = by_label_.find(label);
  if (it != by_label_.end()) return *it->second;
  if (literal) {
    if (literal_count_ >= max_subjects_) {
      subjects_overflow_->Increment();
      auto other = by_label_.find(kOverflowLabel);
      if (other != by_label_.end()) return *other->second;
      label = kOverflowLabel;
    } else {
      ++literal_count_;
    }
  }
  auto entry = std::make_unique<SubjectMetrics>(*this, std::string(label));
  SubjectMetrics& ref = *entry;
  by_label_.emplace(std::string(label), std::move(entry));
  return ref;
}

void GatewayMetrics::RecordError(Operation op, absl::StatusCode code,
                                 int64_t count) {
  errors_[static_cast<int>(op)][CodeIndex(code)].Get().Increment(
      static_cast<double>(count));
}

void GatewayMetrics::ObserveDelivery(SubjectMetrics& subject,
                                     const Message& message,
                                     absl::Time handler_start) {
  if (!message.sent_at.has_value()) return;
  const absl::Duration latency = handler_start - *message.sent_at;
  subject.delivery_latency.Get().Observe(
      latency < absl::ZeroDuration() ? 0.0 : Seconds(latency));
}

void GatewayMetrics::ConnectionUp(absl::string_view lane) {
  connections_->Add({{"lane", std::string(lane)}}).Increment();
}

void GatewayMetrics::ConnectionDown(absl::string_view lane) {
  connections_->Add({{"lane", std::string(lane)}}).Decrement();
}

void GatewayMetrics::RecordDisconnect(absl::string_view lane) {
  disconnects_->Add({{"lane", std::string(lane)}}).Increment();
}

void GatewayMetrics::RecordReconnect(absl::string_view lane) {
  reconnects_->Add({{"lane", std::string(lane)}}).Increment();
}

void GatewayMetrics::RecordSlowConsumer(absl::string_view lane) {
  slow_consumers_->Add({{"lane", std::string(lane)}}).Increment();
}

void GatewayMetrics::RecordTraceReplaced(bool missing) {
  (missing ? trace_missing_ : trace_invalid_)->Increment();
}

}  // namespace natsgw::internal
