// natsgw's Prometheus instrumentation: the metric families a Connection
// records into, and cached per-label handles so the hot path does no
// registry lookups.
//
// Families (label sets are low-cardinality by construction: a subject label
// is a subscription pattern, a caller-chosen metric_subject, or a literal
// subject bounded by ConnectionOptions::max_metric_subjects, never a trace ID
// or an inbox):
//   natsgw_client_request_duration_seconds{subject,code}    histogram
//   natsgw_server_request_duration_seconds{subject,code}    histogram
//   natsgw_subscription_handler_duration_seconds{subject}   histogram
//   natsgw_delivery_latency_seconds{subject}                histogram
//   natsgw_publish_duration_seconds{subject}                histogram
//   natsgw_messages_published_total{subject}                counter
//   natsgw_messages_received_total{subject}                 counter
//   natsgw_client_retries_total{subject}                    counter
//   natsgw_client_hedges_total{subject}                     counter
//   natsgw_server_shed_total{subject}                       counter
//   natsgw_server_expired_total{subject}                    counter
//   natsgw_errors_total{operation,code}                     counter
//   natsgw_trace_context_replaced_total{reason}             counter
//   natsgw_metric_subjects_overflow_total                   counter
//   natsgw_client_in_flight{subject}                        gauge
//   natsgw_nats_connections{lane}                           gauge
//   natsgw_nats_disconnects_total{lane}                     counter
//   natsgw_nats_reconnects_total{lane}                      counter
//   natsgw_build_info{version}                              gauge (always 1)
//
// Thread-safety: thread-safe; handles returned are valid for the lifetime of
// the GatewayMetrics (the registry owns the metrics, and GatewayMetrics keeps
// the registry alive).
#ifndef NATSGW_GATEWAY_SRC_METRICS_H_
#define NATSGW_GATEWAY_SRC_METRICS_H_

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <array>
#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <type_traits>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "natsgw/message.h"

namespace natsgw::internal {

// Histogram bucket upper bounds in seconds: 10 us .. 2.5 s, dense below
// 1 ms where natsgw's request/reply latencies live.
const prometheus::Histogram::BucketBoundaries& LatencyBuckets();

// The label written for a status code ("OK", "INVALID_ARGUMENT", ...).
const std::string& CodeLabel(absl::StatusCode code);

enum class Operation {
  kConnect,
  kPublish,
  kSubscribe,
  kRequest,
  kServe,
  kReply,
  kFlush,
};
inline constexpr int kOperationCount = 7;
absl::string_view OperationLabel(Operation op);

inline constexpr int kCodeCount = 17;  // absl::StatusCode 0..16

// Index of `code` into per-code arrays; values outside 0..16 count as
// UNKNOWN.
int CodeIndex(absl::StatusCode code);

// One series of a family with fixed labels, created on first use so that a
// label set only has the series it actually records (a served endpoint has no
// publish series, a publisher no receive series, an error counter appears with
// the first error).
//
// Thread-safety: Get() is thread-safe; Init() must happen before sharing.
template <typename T>
class LazyMetric {
 public:
  LazyMetric() = default;
  LazyMetric(prometheus::Family<T>* family, prometheus::Labels labels) {
    Init(family, std::move(labels));
  }
  void Init(prometheus::Family<T>* family, prometheus::Labels labels) {
    family_ = family;
    labels_ = std::move(labels);
  }
  T& Get() {
    T* m = metric_.load(std::memory_order_acquire);
    if (m == nullptr) {
      // Family::Add is thread-safe and returns the existing metric for equal
      // labels, so a race here only repeats a lookup.
      if constexpr (std::is_same_v<T, prometheus::Histogram>) {
        m = &family_->Add(labels_, LatencyBuckets());
      } else {
        m = &family_->Add(labels_);
      }
      metric_.store(m, std::memory_order_release);
    }
    return *m;
  }

 private:
  prometheus::Family<T>* family_ = nullptr;
  prometheus::Labels labels_;
  std::atomic<T*> metric_{nullptr};
};

// One histogram per status code under a fixed subject label.
class HistogramsByCode {
 public:
  HistogramsByCode(prometheus::Family<prometheus::Histogram>* family,
                   const std::string& subject);
  prometheus::Histogram& For(absl::StatusCode code) {
    return by_code_[CodeIndex(code)].Get();
  }

 private:
  std::array<LazyMetric<prometheus::Histogram>, kCodeCount> by_code_;
};

// Every per-subject metric, resolved for one subject label.
struct SubjectMetrics {
  SubjectMetrics(class GatewayMetrics& metrics, const std::string& label);

  const std::string label;
  LazyMetric<prometheus::Counter> published;
  LazyMetric<prometheus::Counter> received;
  LazyMetric<prometheus::Histogram> publish_duration;
  LazyMetric<prometheus::Histogram> handler_duration;
  LazyMetric<prometheus::Histogram> delivery_latency;
  LazyMetric<prometheus::Counter> retries;
  LazyMetric<prometheus::Counter> hedges;
  LazyMetric<prometheus::Counter> shed;
  LazyMetric<prometheus::Counter> expired;
  // Requests sent and not yet answered (or failed).
  LazyMetric<prometheus::Gauge> in_flight;
  // Served requests: receipt to handler start; receipt to reply; the
  // handler alone.
  LazyMetric<prometheus::Histogram> server_queue_wait;
  HistogramsByCode client_request;
  HistogramsByCode server_request;
  HistogramsByCode server_handler;
};

class GatewayMetrics {
 public:
  // Registers (or joins, if another Connection already did) the families in
  // `registry`. Fails with ALREADY_EXISTS if a family name is taken by a
  // metric of another type.
  static absl::StatusOr<std::unique_ptr<GatewayMetrics>> Create(
      std::shared_ptr<prometheus::Registry> registry, size_t max_subjects);

  // Metrics for an exact label (a subscription pattern or caller-chosen
  // metric_subject): always distinct, not counted against the cap.
  SubjectMetrics& ForPattern(absl::string_view pattern);
  // Metrics for a literal subject: the first `max_subjects` distinct ones get
  // their own label, later ones share "_other".
  SubjectMetrics& ForLiteral(absl::string_view subject);

  void RecordError(Operation op, absl::StatusCode code, int64_t count = 1);

  // The NATS connections of a Connection, by lane ("rpc", "publish"):
  // natsgw_nats_connections counts those up (so several Connections sharing
  // a registry add up), natsgw_nats_disconnects_total / reconnects_total
  // count the losses and recoveries.
  void ConnectionUp(absl::string_view lane);
  void ConnectionDown(absl::string_view lane);
  void RecordDisconnect(absl::string_view lane);
  void RecordReconnect(absl::string_view lane);
  // nats.c reported a slow consumer on `lane`:
  // natsgw_slow_consumer_events_total.
  void RecordSlowConsumer(absl::string_view lane);
  void RecordTraceReplaced(bool missing);

  // End-to-end delivery latency of `message` under `subject`'s label: the
  // time from its send timestamp (message.sent_at, the sender's clock) to
  // `handler_start` (this host's clock), recorded when a handler is about to
  // run. Messages without a send timestamp are not recorded; a negative
  // value (clock skew between hosts) is recorded as 0. For subscriptions
  // and any other module that hands messages to handlers (e.g. a JetStream
  // consumer), with the subject label of the subscription, never the
  // concrete subject if that differs.
  static void ObserveDelivery(SubjectMetrics& subject, const Message& message,
                              absl::Time handler_start);

  const std::shared_ptr<prometheus::Registry>& registry() const {
    return registry_;
  }

 private:
  friend struct SubjectMetrics;
  explicit GatewayMetrics(std::shared_ptr<prometheus::Registry> registry,
                          size_t max_subjects);

  SubjectMetrics& Lookup(absl::string_view label, bool literal);
  SubjectMetrics& LookupLocked(absl::string_view label, bool literal);

  std::shared_ptr<prometheus::Registry> registry_;
  const size_t max_subjects_;
  // Distinguishes instances in the per-thread lookup cache (an address could
  // be reused by a later instance; this never is).
  const uint64_t instance_id_;

  prometheus::Family<prometheus::Histogram>* client_request_duration_ = nullptr;
  prometheus::Family<prometheus::Histogram>* server_request_duration_ = nullptr;
  prometheus::Family<prometheus::Histogram>* server_queue_wait_ = nullptr;
  prometheus::Family<prometheus::Histogram>* server_handler_duration_ = nullptr;
  prometheus::Family<prometheus::Histogram>* handler_duration_ = nullptr;
  prometheus::Family<prometheus::Histogram>* delivery_latency_ = nullptr;
  prometheus::Family<prometheus::Histogram>* publish_duration_ = nullptr;
  prometheus::Family<prometheus::Counter>* published_ = nullptr;
  prometheus::Family<prometheus::Counter>* received_ = nullptr;
  prometheus::Family<prometheus::Counter>* retries_ = nullptr;
  prometheus::Family<prometheus::Counter>* hedges_ = nullptr;
  prometheus::Family<prometheus::Counter>* shed_ = nullptr;
  prometheus::Family<prometheus::Counter>* expired_ = nullptr;
  prometheus::Family<prometheus::Gauge>* in_flight_ = nullptr;
  prometheus::Family<prometheus::Gauge>* connections_ = nullptr;
  prometheus::Family<prometheus::Counter>* disconnects_ = nullptr;
  prometheus::Family<prometheus::Counter>* reconnects_ = nullptr;
  prometheus::Family<prometheus::Counter>* slow_consumers_ = nullptr;
  prometheus::Counter* trace_missing_ = nullptr;
  prometheus::Counter* trace_invalid_ = nullptr;
  prometheus::Counter* subjects_overflow_ = nullptr;

  std::array<std::array<LazyMetric<prometheus::Counter>, kCodeCount>,
             kOperationCount>
      errors_;

  std::mutex mu_;
  absl::flat_hash_map<std::string, std::unique_ptr<SubjectMetrics>> by_label_
      ABSL_GUARDED_BY(mu_);
  size_t literal_count_ ABSL_GUARDED_BY(mu_) = 0;
};

// Seconds as a double, for Histogram::Observe.
inline double Seconds(absl::Duration d) { return absl::ToDoubleSeconds(d); }

}  // namespace natsgw::internal

#endif  // NATSGW_GATEWAY_SRC_METRICS_H_
