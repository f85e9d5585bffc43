// Internals shared by natsgw's JetStream modules: the nats.c JetStream
// context a natsgw::JetStream owns, the mapping of JetStream API errors to
// absl::Status, and the JetStream metric families.
#ifndef NATSGW_GATEWAY_SRC_JETSTREAM_IMPL_H_
#define NATSGW_GATEWAY_SRC_JETSTREAM_IMPL_H_

#include <nats/nats.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "connection_impl.h"
#include "natsgw/jetstream.h"

namespace natsgw {

// Thread-safety: thread-safe (nats.c's jsCtx is thread-safe; the rest is
// immutable after Create).
class JetStream::Impl {
 public:
  static absl::StatusOr<std::unique_ptr<Impl>> Create(Connection& conn,
                                                      JetStreamOptions options);
  ~Impl();

  Connection& conn() const { return conn_; }
  Connection::Impl& conn_impl() const { return conn_.impl(); }
  // The single owner of the nats.c context (on the rpc connection, which
  // writes every message at once).
  jsCtx* js() const { return js_; }
  const JetStreamOptions& options() const { return options_; }
  // jsOptions for one API call, with options().api_timeout.
  jsOptions ApiOptions() const;

 private:
  Impl(Connection& conn, JetStreamOptions options)
      : conn_(conn), options_(std::move(options)) {}

  Connection& conn_;
  const JetStreamOptions options_;
  jsCtx* js_ = nullptr;
};

namespace internal {

// The one table from JetStream error codes (`err_code` in the server's JSON
// answers, jsErrCode in nats.c) to canonical codes; nullopt for a code with
// no more specific meaning than the answer's HTTP-like status.
std::optional<absl::StatusCode> StatusCodeForJetStreamError(int err_code);

// An absl::Status for a failed JetStream API call: the code fits the
// JetStream error (`err`, 0 if none) or else the natsStatus; the message is
// "<context>: <server's description or nats.c's text>".
absl::Status JetStreamError(natsStatus s, jsErrCode err,
                            absl::string_view context);

// The JetStream metric families, registered (or found: prometheus-cpp merges
// a family registered again with the same labels) on a registry.
//
// Thread-safety: thread-safe (prometheus-cpp metrics are).
struct JetStreamMetrics {
  static absl::StatusOr<std::shared_ptr<JetStreamMetrics>> Create(
      prometheus::Registry& registry);

  // natsgw_js_published_total{stream,result}: result stored | duplicate |
  // failed.
  prometheus::Family<prometheus::Counter>* published = nullptr;
  // natsgw_js_publish_retries_total{stream}
  prometheus::Family<prometheus::Counter>* publish_retries = nullptr;
  // natsgw_js_publish_duration_seconds{stream}: send to ack, retries included.
  prometheus::Family<prometheus::Histogram>* publish_duration = nullptr;
  // natsgw_js_publish_pending{stream}: asynchronous publishes awaiting their
  // ack.
  prometheus::Family<prometheus::Gauge>* publish_pending = nullptr;
  // natsgw_js_deliveries_total{stream,consumer,outcome}: outcome ack | nak |
  // term | dead_letter | skipped_duplicate.
  prometheus::Family<prometheus::Counter>* deliveries = nullptr;
  // natsgw_js_redeliveries_total{stream,consumer}: deliveries with a delivery
  // count above 1.
  prometheus::Family<prometheus::Counter>* redeliveries = nullptr;
  // natsgw_js_dead_lettered_total{stream,consumer}
  prometheus::Family<prometheus::Counter>* dead_lettered = nullptr;
  // natsgw_js_in_progress_total{stream,consumer}: in-progress heartbeats.
  prometheus::Family<prometheus::Counter>* in_progress = nullptr;
  // natsgw_js_handler_duration_seconds{stream,consumer}
  prometheus::Family<prometheus::Histogram>* handler_duration = nullptr;
  // natsgw_js_delivery_latency_seconds{stream,consumer}: stored (server
  // timestamp) to handler start, per delivery.
  prometheus::Family<prometheus::Histogram>* delivery_latency = nullptr;
};

}  // namespace internal
}  // namespace natsgw

#endif  // NATSGW_GATEWAY_SRC_JETSTREAM_IMPL_H_
