// natsgw/connection.h: the untyped gateway core. One Connection turns C++
// calls into NATS publishes, subscriptions, requests and served endpoints,
// stamping every message it sends with a trace context, a message ID and a
// send timestamp, and timing every operation into Prometheus metrics.
//
//   natsgw::ConnectionOptions options;
//   options.servers = {"nats://127.0.0.1:4222"};
//   NATSGW_ASSIGN_OR_RETURN(std::unique_ptr<natsgw::Connection> conn,
//                           natsgw::Connection::Create(options));
//
//   // Serve an endpoint (queue group "q": instances share the load).
//   NATSGW_ASSIGN_OR_RETURN(auto endpoint, conn->Serve("echo.Echo", "q",
//       [](const natsgw::Message& req) -> absl::StatusOr<natsgw::Reply> {
//         return natsgw::Reply{req.data, {}};
//       }));
//
//   // Call it.
//   NATSGW_ASSIGN_OR_RETURN(natsgw::Message reply,
//       conn->Request("echo.Echo", "hello", absl::Milliseconds(250)));
//
// Errors: every method returns absl::Status(Or). Invalid subjects, headers or
// sizes are INVALID_ARGUMENT and nothing is sent. A request nobody serves is
// UNAVAILABLE at once; one that gets no reply in time is DEADLINE_EXCEEDED; a
// handler's error status reaches the caller with the same code and message.
// The full table is in README.md "Errors".
//
// Latency and batching: requests and replies are written to the socket
// immediately; fire-and-forget publishes are coalesced (see
// ConnectionOptions::batch_publishes). Publishes keep their order among
// themselves, as do requests; a request may overtake a publish made less than
// ~1 ms before it unless Flush() is called in between.
//
// Thread-safety: all methods are thread-safe and may be called concurrently,
// including from inside handlers. The Connection must outlive every call in
// progress and must not be destroyed from inside one of its own handlers.
#ifndef NATSGW_CONNECTION_H_
#define NATSGW_CONNECTION_H_

#include <memory>
#include <optional>
#include <string>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "natsgw/connection_options.h"
#include "natsgw/message.h"
#include "natsgw/send_options.h"
#include "natsgw/serve_options.h"
#include "natsgw/subscribe_options.h"
#include "natsgw/subscription.h"

namespace prometheus {
class Registry;
}  // namespace prometheus

namespace natsgw {

enum class ConnectionState {
  kConnecting,
  kConnected,
  kReconnecting,
  kDraining,
  kClosed,
};

absl::string_view ConnectionStateName(ConnectionState state);

class Connection {
 public:
  // Connects to NATS. Fails with INVALID_ARGUMENT for bad options (no server,
  // malformed URL, negative durations) and UNAVAILABLE if no server can be
  // reached (unless options.retry_on_failed_connect).
  static absl::StatusOr<std::unique_ptr<Connection>> Create(
      ConnectionOptions options);

  // Closes the connection (see Close()).
  ~Connection();

  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Publishes `data` to `subject` (fire-and-forget, at-most-once: NATS core
  // does not store messages). The message is buffered and written within
  // ~1 ms, coalesced with other publishes. While reconnecting, publishes are
  // buffered up to ReconnectPolicy::buffer_bytes, then RESOURCE_EXHAUSTED.
  // Returns the trace, message ID and timestamp the message carries.
  absl::StatusOr<SendInfo> Publish(absl::string_view subject,
                                   absl::string_view data,
                                   const PublishOptions& options = {});

  // Calls `handler` for each message on `subject` (wildcards allowed). With a
  // non-empty `queue_group`, each message goes to one member of the group.
  // Returns once the server has registered the interest, so a publish made
  // afterwards, from any connection, is delivered.
  //
  // With default `options`, `handler` runs on a thread dedicated to this
  // subscription: calls for one subscription never overlap and arrive in
  // order; different subscriptions run in parallel. It may block (messages
  // queue up to nats.c's pending limits, beyond which they are dropped and
  // counted) and may call any Connection method. It is destroyed after the
  // subscription ends. With options.workers > 0 it runs on a bounded task
  // queue of that many threads instead, concurrently with itself (so it must
  // be thread-safe); see natsgw/subscribe_options.h. INVALID_ARGUMENT for
  // bad options (negative workers or block_timeout).
  absl::StatusOr<std::unique_ptr<Subscription>> Subscribe(
      absl::string_view subject, absl::string_view queue_group,
      MessageHandler handler, const SubscribeOptions& options = {});

  // Sends a request and waits up to `timeout` for the reply. Inside a handler,
  // the timeout is capped by the remaining budget of the request being
  // handled, and the request continues its trace. The remaining budget travels
  // in Natsgw-Timeout-Us so the server can drop work nobody waits for. A
  // budget beyond a century (absl::InfiniteDuration() included) is a
  // century.
  //
  // Errors: INVALID_ARGUMENT (bad input, nothing sent); UNAVAILABLE (no
  // responder, or not connected); DEADLINE_EXCEEDED (no reply in time, or no
  // budget left); the handler's own status. Failed calls carry their trace ID
  // (TraceIdFromStatus).
  //
  // `sent`, if not null, receives the call's trace, message ID and send time
  // once the request has gone out; it stays empty if nothing was sent.
  //
  // While it waits, the calling thread usually reads its reply itself, from a
  // reply subscription of its own use, so nats.c wakes it directly when the
  // reply arrives: one thread hand-off fewer than waiting for natsgw's reply
  // thread. That needs an unhedged call and no other thread doing the same
  // at that moment; otherwise the reply comes through the reply thread. Only
  // its own reply is handled on this thread.
  absl::StatusOr<Message> Request(absl::string_view subject,
                                  absl::string_view data,
                                  absl::Duration timeout,
                                  const RequestOptions& options = {},
                                  std::optional<SendInfo>* sent = nullptr);

  // Sends a request without waiting: `done` receives the reply or the error
  // exactly once, unless RequestAsync itself returns an error (nothing sent,
  // `done` never called). Any number of requests may be in flight; they
  // share one wildcard reply subscription, a token per call telling replies
  // apart, and one timer thread enforcing deadlines. Retries and hedges
  // (options.retry, options.hedging) happen inside the call.
  //
  // Returns the trace, message ID and send time of the call (the same for
  // every attempt; each attempt is a new span of the trace).
  //
  // `done` runs on natsgw's reply thread (the reply), its timer thread
  // (deadline), or nats.c's callback thread (lost connection, permission
  // denied). It must not block: hand long work to another thread. Calls to
  // `done` for different requests never overlap on one thread but may run
  // concurrently on different ones. Errors as for Request. After Close(),
  // requests still pending get UNAVAILABLE.
  using ReplyCallback = absl::AnyInvocable<void(absl::StatusOr<Message> reply)>;
  absl::StatusOr<SendInfo> RequestAsync(absl::string_view subject,
                                        absl::string_view data,
                                        absl::Duration timeout,
                                        const RequestOptions& options,
                                        ReplyCallback done);

  // Serves requests on `subject`: `handler` returns the reply, or a status the
  // caller receives with the same code and message. Requests whose budget has
  // already run out are answered DEADLINE_EXCEEDED without calling the
  // handler. Use queue group "q" (the NATS Services API default) so instances
  // share the load. With default `serve` options the handler runs as for
  // Subscribe; see natsgw/serve_options.h for worker pools and load
  // shedding. The returned Subscription reports the endpoint's statistics.
  absl::StatusOr<std::unique_ptr<Subscription>> Serve(
      absl::string_view subject, absl::string_view queue_group,
      RequestHandler handler, const ServeOptions& serve = {});

  // Writes out everything published so far and waits until the server has
  // processed it (a PING/PONG round trip on each underlying connection).
  absl::Status Flush(absl::Duration timeout);

  // Ends every subscription (waiting for running handlers on other threads),
  // then closes the NATS connections. Idempotent. Later calls fail with
  // UNAVAILABLE.
  void Close();

  ConnectionState state() const;
  // Whether the connection can do its work now, for a readiness probe
  // (MetricsServer::AddReadinessCheck): OK, or UNAVAILABLE naming what is
  // wrong: a NATS connection that is not connected (connecting, reconnecting,
  // draining, closed); a subscription or served endpoint that is no longer
  // active (draining, or ended by the server, e.g. for lack of permission);
  // or a slow consumer (messages dropped) reported within the last
  // ConnectionOptions::slow_consumer_unready_for.
  absl::Status Readiness() const;
  // URL of the server currently connected to, or empty. Credentials in it
  // are masked ("nats://user:[REDACTED]@host:4222").
  std::string connected_url() const;
  // The registry metrics are recorded in.
  const std::shared_ptr<prometheus::Registry>& registry() const;
  const ConnectionOptions& options() const;

  // For natsgw's own modules (JetStream); Impl is not part of the API.
  class Impl;
  Impl& impl() const { return *impl_; }

 private:
  explicit Connection(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace natsgw

#endif  // NATSGW_CONNECTION_H_
