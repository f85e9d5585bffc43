// Internals of natsgw::Connection: the NATS connections ("lanes") it owns and
// the per-subscription state shared between the public Subscription handle,
// the Connection and nats.c's delivery threads.
#ifndef NATSGW_GATEWAY_SRC_CONNECTION_IMPL_H_
#define NATSGW_GATEWAY_SRC_CONNECTION_IMPL_H_

#include <nats/nats.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "denied_subscriptions.h"
#include "endpoint_stats_recorder.h"
#include "metrics.h"
#include "natsgw/connection.h"
#include "natsgw/message.h"
#include "natsgw/serve_options.h"
#include "natsgw/subscribe_options.h"
#include "natsgw/task_queue.h"
#include "notification.h"
#include "request_mux.h"
#include "span.h"

namespace natsgw::internal {

class SubscriptionCore;

// The set of open subscriptions of one Connection. Shared (not owned by the
// Connection alone) so that a Subscription closing itself can always
// unregister, even while the Connection is being torn down.
//
// Thread-safety: thread-safe.
class SubscriptionSet {
 public:
  void Add(const std::shared_ptr<SubscriptionCore>& core);
  void Remove(const SubscriptionCore* core);
  // Empties the set and returns what it held.
  std::vector<std::shared_ptr<SubscriptionCore>> TakeAll();
  // What the set holds now (the set keeps them).
  std::vector<std::shared_ptr<SubscriptionCore>> Snapshot() const;

 private:
  mutable std::mutex mu_;
  std::vector<std::shared_ptr<SubscriptionCore>> cores_ ABSL_GUARDED_BY(mu_);
};

// One nats.c connection and the notification of its closed callback.
// The single owner of its natsConnection*.
//
// Thread-safety: `nc` is thread-safe (nats.c); the callbacks run on nats.c's
// callback thread.
struct Lane {
  Lane(Connection::Impl* owner, std::string name)
      : owner(owner), name(std::move(name)) {}
  ~Lane();

  Connection::Impl* const owner;
  const std::string name;  // "rpc" or "publish", for logs
  natsConnection* nc = nullptr;
  Notification closed;
  // The server's max_payload, refreshed on every (re)connect: reading it from
  // nats.c takes the connection lock, which every publish would contend on.
  std::atomic<int64_t> max_payload{0};
  // Whether natsgw_nats_connections counts this lane as up, and whether it
  // has ever been (a later "connected" is then a reconnection).
  std::atomic<bool> up{false};
  std::atomic<bool> ever_up{false};
  // When nats.c last reported a slow consumer on this lane (absl::ToUnixNanos;
  // 0 for never), for readiness.
  std::atomic<int64_t> last_slow_consumer_ns{0};
  // The server refused this lane's credentials since it last connected
  // (nats.c closes the connection when a reconnect is refused again, rather
  // than retrying forever), for readiness and the closing log line.
  std::atomic<bool> auth_refused{false};

  // `connection` is this lane's; passed in because nats.c's first
  // "connected" callback can run before natsConnection_Connect returns it.
  void RefreshMaxPayload(natsConnection* connection) {
    max_payload.store(natsConnection_GetMaxPayload(connection));
  }
};

// State of one subscription or served endpoint.
//
// Lifetime: created by the Connection, shared by the Subscription handle and
// the SubscriptionSet. nats.c gets a raw pointer as callback closure; the
// core keeps itself alive (self_) until nats.c reports, through the
// subscription's completion callback, that no handler call is running and
// none will follow.
//
// Thread-safety: thread-safe. OnMessage runs on the subscription's nats.c
// delivery thread, one call at a time; with a task queue (ServeOptions or
// SubscribeOptions::workers > 0), handlers run on the queue's threads.
class SubscriptionCore : public std::enable_shared_from_this<SubscriptionCore> {
 public:
  // kReplies: the request multiplexer's inbox subscription.
  enum class Kind { kSubscribe, kServe, kReplies };

  SubscriptionCore(Connection::Impl* conn, std::shared_ptr<SubscriptionSet> set,
                   Kind kind, std::string subject, std::string queue_group,
                   MessageHandler message_handler,
                   RequestHandler request_handler, SubjectMetrics* metrics,
                   ServeOptions serve = {},
                   std::unique_ptr<TaskQueue> queue = nullptr);

  // Subscribes on `nc`. On failure nothing is left subscribed.
  absl::Status Start(natsConnection* nc);

  // Ends delivery; waits for a running handler unless called from this
  // subscription's own handler. `unregister` is false when the Connection is
  // closing and has already emptied the SubscriptionSet. Messages waiting in
  // a subscription's task queue are discarded (CANCELLED); requests waiting
  // in an endpoint's are still answered. A call while another one (or a
  // Drain) is ending the subscription waits until it has, unless made from
  // this subscription's own handler.
  absl::Status Close(bool unregister);

  // Subscription::Drain.
  absl::Status Drain(absl::Duration timeout);

  // `count` messages that will not reach the handler, for `why` (discarded
  // by the task queue, or left pending when a drain timed out): counts them
  // for dropped() (and for Drain, if `why` means they were cut off by ending
  // the subscription) and reports them to the log, at most about once a
  // second with the number since the last report. Plain subscriptions only;
  // an endpoint answers what it does not handle.
  void NoteDiscarded(const absl::Status& why, int64_t count);
  // Logs what NoteDiscarded has not reported yet.
  void ReportDiscarded();

  // Whether `sub` is this core's nats.c subscription.
  bool Owns(const natsSubscription* sub) const;
  // nats.c reported a slow consumer on this subscription. It reports each
  // episode once, however many messages it drops, so from now on every
  // delivery (and the end) counts the messages dropped since the last count
  // in natsgw_errors_total, one by one; subscriptions never slow pay
  // nothing for this.
  void NoteLibraryDrops();

  const std::string& subject() const { return subject_; }
  const std::string& queue_group() const { return queue_group_; }
  int64_t dropped() const;
  bool active() const;

  Kind kind() const { return kind_; }
  MessageHandler& message_handler() { return message_handler_; }
  RequestHandler& request_handler() { return request_handler_; }
  SubjectMetrics& metrics() { return *metrics_; }
  const ServeOptions& serve_options() const { return serve_; }
  // Null unless serve_options().workers or subscribe options' workers > 0.
  TaskQueue* queue() { return queue_.get(); }
  EndpointStatsRecorder& stats() { return stats_; }
  // The Message that OnMessage reads each delivery into, reused so that a
  // steady stream of messages allocates nothing for them. Only the delivery
  // thread touches it (nats.c calls OnMessage for one subscription one at a
  // time); a message handed to a task queue is moved out of it.
  Message& delivery_scratch() { return delivery_scratch_; }

 private:
  static void OnMessage(natsConnection* nc, natsSubscription* sub, natsMsg* msg,
                        void* closure);
  static void OnComplete(void* closure);

  // Close() and Drain(): `drain` unset ends at once.
  absl::Status End(bool unregister, std::optional<absl::Duration> drain);
  // Counts in natsgw_errors_total{code="RESOURCE_EXHAUSTED"} the messages
  // nats.c dropped since the last call.
  void AccountLibraryDrops();
  // Adds `count` of nats.c's drops to natsgw_errors_total.
  void RecordLibraryDrops(int64_t count);
  // The uncounted part of what nats.c dropped, now counted as accounted.
  int64_t TakeLibraryDropsLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Waits for nats.c's completion callback, logging every 5 s of waiting.
  void WaitCompleted();

  Connection::Impl* const conn_;
  const std::shared_ptr<SubscriptionSet> set_;
  const Kind kind_;
  const std::string subject_;
  const std::string queue_group_;
  MessageHandler message_handler_;
  RequestHandler request_handler_;
  SubjectMetrics* const metrics_;
  const ServeOptions serve_;
  const std::unique_ptr<TaskQueue> queue_;
  EndpointStatsRecorder stats_;
  Message delivery_scratch_;  // See delivery_scratch().
  // Messages the task queue discarded (see NoteDiscarded); `cut_off_`: of
  // those, the ones discarded because the subscription was ending
  // (CANCELLED or UNAVAILABLE).
  std::atomic<int64_t> discarded_{0};
  std::atomic<int64_t> cut_off_{0};
  std::mutex report_mu_;
  absl::Time last_report_ ABSL_GUARDED_BY(report_mu_) = absl::InfinitePast();
  int64_t unreported_ ABSL_GUARDED_BY(report_mu_) = 0;

  mutable std::mutex mu_;
  natsSubscription* sub_ ABSL_GUARDED_BY(mu_) = nullptr;
  bool closing_ ABSL_GUARDED_BY(mu_) = false;
  bool destroyed_ ABSL_GUARDED_BY(mu_) = false;
  int64_t final_dropped_ ABSL_GUARDED_BY(mu_) = 0;
  // See NoteLibraryDrops: set once nats.c reported a slow consumer; how many
  // of nats.c's drops are in the metric so far.
  std::atomic<bool> library_drops_{false};
  int64_t accounted_library_drops_ ABSL_GUARDED_BY(mu_) = 0;
  std::shared_ptr<SubscriptionCore> self_ ABSL_GUARDED_BY(mu_);
  Notification completed_;
  // Notified once the first Close() or Drain() has finished ending it.
  Notification ended_;
};

}  // namespace natsgw::internal

namespace natsgw {

class Connection::Impl {
 public:
  static absl::StatusOr<std::unique_ptr<Impl>> Create(
      ConnectionOptions options);
  ~Impl();

  absl::StatusOr<SendInfo> Publish(absl::string_view subject,
                                   absl::string_view data,
                                   const PublishOptions& options);
  absl::StatusOr<std::unique_ptr<Subscription>> Subscribe(
      internal::SubscriptionCore::Kind kind, absl::string_view subject,
      absl::string_view queue_group, MessageHandler message_handler,
      RequestHandler request_handler, const ServeOptions& serve = {},
      const SubscribeOptions& subscribe = {});
  absl::StatusOr<Message> Request(absl::string_view subject,
                                  absl::string_view data,
                                  absl::Duration timeout,
                                  const RequestOptions& options,
                                  std::optional<SendInfo>* sent);
  // `waiting`, if not null: the caller will block until `done` has run and
  // calls RequestMux::ReadDirect with the call, which it receives here.
  absl::StatusOr<SendInfo> RequestAsync(
      absl::string_view subject, absl::string_view data, absl::Duration timeout,
      const RequestOptions& options, ReplyCallback done,
      std::shared_ptr<internal::RequestMux::Call>* waiting = nullptr);
  absl::Status Flush(absl::Duration timeout);
  void Close();
  ConnectionState state() const;
  absl::Status Readiness() const;
  std::string connected_url() const;

  const ConnectionOptions& options() const { return options_; }
  // The connection that writes every message at once (requests, replies,
  // JetStream API calls and acknowledgements).
  natsConnection* rpc_connection() const { return rpc_->nc; }
  // OK, or UNAVAILABLE once Close() has begun.
  absl::Status CheckOpen() const;
  const std::shared_ptr<prometheus::Registry>& registry() const {
    return options_.registry;
  }
  // ConnectionOptions::span_sink (null: no spans).
  const std::shared_ptr<SpanSink>& span_sink() const {
    return options_.span_sink;
  }
  // messaging.client.id (the connection's name), if it has one.
  void SetClientAttributes(internal::Span& span) const;
  // The connection's metric families, for natsgw modules that record into
  // them too (e.g. GatewayMetrics::ObserveDelivery for a JetStream consumer,
  // with metrics().ForPattern(label)).
  internal::GatewayMetrics& metrics() { return *metrics_; }

  // Called on a subscription's delivery thread for each message; takes
  // ownership of `msg`.
  void Dispatch(internal::SubscriptionCore& core, natsSubscription* sub,
                natsMsg* msg);

  // nats.c connection callbacks (closure: the Lane).
  static void OnDisconnected(natsConnection* nc, void* closure);
  // Keep natsgw_nats_connections and the reconnect count in step with a
  // lane's state; idempotent.
  void MarkUp(internal::Lane& lane);
  void MarkDown(internal::Lane& lane);
  static void OnReconnected(natsConnection* nc, void* closure);
  static void OnClosed(natsConnection* nc, void* closure);
  static void OnAsyncError(natsConnection* nc, natsSubscription* sub,
                           natsStatus err, void* closure);

  // The server refused a publish or subscription on the rpc connection
  // (`detail`: its error text, e.g. 'Permissions Violation for Publish to
  // "x"'): requests waiting on it fail now with PERMISSION_DENIED instead of
  // at their deadline.
  void FailDenied(absl::string_view detail);

  void Log(absl::LogSeverity severity, absl::string_view message) const {
    options_.logger->Log(severity, message);
  }

  // `count` messages of subscription `core` will not reach its handler, for
  // `why`: counted in natsgw_errors_total{operation="subscribe"} and by the
  // subscription, and reported to the log (see SubscriptionCore).
  void RecordUndelivered(internal::SubscriptionCore& core,
                         const absl::Status& why, int64_t count = 1);

 private:
  explicit Impl(ConnectionOptions options);

  absl::Status ConnectLane(internal::Lane& lane, bool send_asap);
  // Everything a send must pass before a message is built: the connection is
  // open and subject, headers and message ID are valid.
  absl::Status CheckSend(absl::string_view subject,
                         const SendOptions& options) const;
  // Records and returns an error for `op`.
  absl::Status Fail(internal::Operation op, absl::Status status);
  // Runs `call` as handler code for `m`: with `current` (m's trace, or the
  // span handling it) and m's deadline as the thread's context, and an
  // escaping exception turned into INTERNAL.
  static absl::Status RunHandler(const internal::SubscriptionCore& core,
                                 const Message& m, const TraceContext& current,
                                 absl::FunctionRef<void()> call);
  // The SERVER span of a request or the CONSUMER span of a message on
  // `core`, started at `m.received_at` (inert unless spans are wanted). A
  // child of the sender's span, or the root of the trace natsgw started for
  // a message that came without one.
  internal::Span StartReceiveSpan(internal::SubscriptionCore& core,
                                  const Message& m) const;
  // Answers a request on `core` (on the delivery thread, or on a worker).
  void HandleRequest(internal::SubscriptionCore& core, const char* reply_to,
                     const Message& request,
                     std::chrono::steady_clock::time_point start);
  // Hands a request to the endpoint's task queue; if the queue discards it
  // (now or later), answers it as DiscardRequest does.
  void EnqueueRequest(internal::SubscriptionCore& core, const char* reply_to,
                      Message request,
                      std::chrono::steady_clock::time_point start);
  // Answers a request the endpoint's task queue discarded for `why`:
  // RESOURCE_EXHAUSTED is shed, DEADLINE_EXCEEDED expired, anything else
  // (the endpoint is closing) is answered with that code.
  void DiscardRequest(internal::SubscriptionCore& core, const char* reply_to,
                      const Message& request,
                      std::chrono::steady_clock::time_point start,
                      const absl::Status& why);
  // Answers RESOURCE_EXHAUSTED at once: the endpoint is at its limit.
  void Shed(internal::SubscriptionCore& core, const char* reply_to,
            const Message& request, std::chrono::steady_clock::time_point start,
            int in_flight);
  // Answers DEADLINE_EXCEEDED without running the handler: the caller's
  // budget ran out before it could start.
  void Expire(internal::SubscriptionCore& core, const char* reply_to,
              const Message& request,
              std::chrono::steady_clock::time_point start);
  // Hands a message to the subscription's task queue; a discarded one is
  // counted and reported (DiscardMessage).
  void EnqueueMessage(internal::SubscriptionCore& core, Message message);
  void DiscardMessage(internal::SubscriptionCore& core, const Message& message,
                      const absl::Status& why);
  // Creates the task queue of a subscription or endpoint with `workers`
  // threads, named after its metric label.
  absl::StatusOr<std::unique_ptr<TaskQueue>> MakeQueue(
      absl::string_view label, int workers, size_t capacity,
      OverflowPolicy overflow, absl::Duration block_timeout);
  // Sends the reply (or error reply) for a request taken at `start`;
  // `result` is the outcome so far and is updated if the reply cannot be
  // built. `handled_in`: the handler ran for that long; unset when it did not
  // run. Statistics and metrics are recorded before the reply is sent.
  // `span`: the request's SERVER span (StartReceiveSpan), ended here after
  // the reply was sent, with `outcome` (span_attributes::kNatsRequestOutcome).
  void SendReply(internal::SubscriptionCore& core, const char* reply_to,
                 const Message& request, absl::StatusOr<Reply>& result,
                 std::chrono::steady_clock::time_point start,
                 std::optional<absl::Duration> handled_in, internal::Span span,
                 absl::string_view outcome);
  // Subscribes the request multiplexer's inbox, once.
  absl::Status EnsureReplySubscription();
  void HandleMessage(internal::SubscriptionCore& core, const Message& m,
                     std::chrono::steady_clock::time_point start);
  // Chooses the trace an outgoing message carries; `parent` receives the
  // span ID of the context it continues (unset for a new root).
  TraceContext OutgoingTrace(const SendOptions& options,
                             std::optional<TraceContext::SpanId>* parent) const;
  internal::SubjectMetrics& MetricsFor(absl::string_view subject,
                                       absl::string_view metric_subject);

  ConnectionOptions options_;
  std::unique_ptr<internal::GatewayMetrics> metrics_;
  // rpc_: requests, replies and served endpoints; sends immediately.
  // publish_: publishes and subscriptions; coalesces writes. Equal to rpc_
  // when batch_publishes is false.
  std::unique_ptr<internal::Lane> rpc_;
  std::unique_ptr<internal::Lane> batch_;
  internal::Lane* publish_ = nullptr;
  std::shared_ptr<internal::SubscriptionSet> subscriptions_;
  std::unique_ptr<internal::RequestMux> mux_;
  std::mutex reply_sub_mu_;
  bool reply_sub_started_ ABSL_GUARDED_BY(reply_sub_mu_) = false;
  // Subscriptions the server refused (see Subscribe).
  internal::DeniedSubscriptions denied_;
  std::atomic<bool> closed_{false};
  std::mutex close_mu_;
};

}  // namespace natsgw

#endif  // NATSGW_GATEWAY_SRC_CONNECTION_IMPL_H_
