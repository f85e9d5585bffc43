// natsgw/jetstream.h: the JetStream context of a Connection, and the
// provisioning of streams and consumers.
//
//   NATSGW_ASSIGN_OR_RETURN(std::unique_ptr<natsgw::JetStream> js,
//                           natsgw::JetStream::Create(*conn));
//   natsgw::StreamConfig users{.name = "USERS",
//                              .subjects = {"users.events.>"}};
//   NATSGW_RETURN_IF_ERROR(js->EnsureStream(users).status());
//
// EnsureStream / EnsureConsumer make deployments declarative: the first
// service instance creates what is missing, and every later one verifies that
// what exists is what it declares. A difference is FAILED_PRECONDITION naming
// the field and both values; natsgw never changes an existing stream or
// consumer on its own (that can drop messages), so an operator decides.
//
// Publishing with acknowledgements is natsgw/stream_publisher.h; consuming
// with acknowledgements natsgw/stream_consumer.h.
//
// Thread-safety: thread-safe. A JetStream must not outlive its Connection;
// every StreamPublisher, StreamConsumer and KV store made from it must not
// outlive it.
#ifndef NATSGW_JETSTREAM_H_
#define NATSGW_JETSTREAM_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "natsgw/connection.h"
#include "natsgw/stream_config.h"

namespace natsgw {

struct JetStreamOptions {
  // Time allowed for one JetStream API call (stream/consumer lookups and
  // creation, KV operations).
  absl::Duration api_timeout = absl::Seconds(5);
};

// What a stream holds now.
struct StreamState {
  StreamConfig config;  // as the server reports it
  uint64_t messages = 0;
  uint64_t bytes = 0;
  uint64_t first_sequence = 0;
  uint64_t last_sequence = 0;
  // Clustered streams: the server currently leading the stream (empty for a
  // single server).
  std::string leader;
  // True if this EnsureStream call created the stream.
  bool created = false;
};

struct ConsumerState {
  ConsumerConfig config;  // as the server reports it
  // Messages delivered and not yet acknowledged.
  uint64_t ack_pending = 0;
  // Messages of the stream not yet delivered to this consumer.
  uint64_t pending = 0;
  // Messages being redelivered.
  uint64_t redelivered = 0;
  bool created = false;
};

class JetStream {
 public:
  // Fails with INVALID_ARGUMENT for bad options and UNAVAILABLE if `conn` is
  // closed. Does not contact the server (JetStream may be enabled later).
  static absl::StatusOr<std::unique_ptr<JetStream>> Create(
      Connection& conn, JetStreamOptions options = {});
  ~JetStream();

  JetStream(const JetStream&) = delete;
  JetStream& operator=(const JetStream&) = delete;

  // Creates the stream, or verifies the existing one against `config`.
  // Errors: INVALID_ARGUMENT (bad config); FAILED_PRECONDITION (exists and
  // differs, or its subjects overlap another stream's); UNAVAILABLE
  // (JetStream not enabled or not reachable); DEADLINE_EXCEEDED.
  absl::StatusOr<StreamState> EnsureStream(const StreamConfig& config);
  // The stream's current state; NOT_FOUND if it does not exist.
  absl::StatusOr<StreamState> GetStream(absl::string_view name);
  // Deletes the stream and everything in it; NOT_FOUND if there is none.
  absl::Status DeleteStream(absl::string_view name);

  // Creates the durable pull consumer, or verifies the existing one, as for
  // EnsureStream. NOT_FOUND if the stream does not exist.
  absl::StatusOr<ConsumerState> EnsureConsumer(const ConsumerConfig& config);
  absl::StatusOr<ConsumerState> GetConsumer(absl::string_view stream,
                                            absl::string_view durable);
  // Deletes the consumer (its position and pending acks); NOT_FOUND if there
  // is none.
  absl::Status DeleteConsumer(absl::string_view stream,
                              absl::string_view durable);

  Connection& connection() const;
  const JetStreamOptions& options() const;

  class Impl;
  Impl& impl() const { return *impl_; }

 private:
  explicit JetStream(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace natsgw

#endif  // NATSGW_JETSTREAM_H_
