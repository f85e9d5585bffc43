// natsgw/stream_config.h: the declared shape of a JetStream stream and of a
// durable pull consumer, as JetStream::EnsureStream / EnsureConsumer create or
// verify them.
//
//   natsgw::StreamConfig users;
//   users.name = "USERS";
//   users.subjects = {"users.events.>"};
//   users.duplicate_window = absl::Minutes(2);   // Nats-Msg-Id de-duplication
//
//   natsgw::ConsumerConfig email;
//   email.stream = "USERS";
//   email.durable = "email-service";
//   email.ack_wait = absl::Seconds(30);
//
// Only the fields below are declared; every other stream or consumer setting
// keeps the server's default when natsgw creates it, and is not compared when
// natsgw verifies an existing one.
//
// Thread-safety: value types and pure functions.
#ifndef NATSGW_STREAM_CONFIG_H_
#define NATSGW_STREAM_CONFIG_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace natsgw {

enum class StorageType { kFile, kMemory };
enum class RetentionPolicy { kLimits, kInterest, kWorkQueue };
enum class DeliverPolicy { kAll, kNew, kLast };

struct StreamConfig {
  // 1..255 characters, no spaces, '.', '*', '>', '/' or '\' (the server's
  // rule for stream names).
  std::string name;
  std::string description;
  // Subjects the stream captures (wildcards allowed); at least one.
  std::vector<std::string> subjects;
  StorageType storage = StorageType::kFile;
  RetentionPolicy retention = RetentionPolicy::kLimits;
  // 1 (single server) or the number of cluster nodes holding a copy (<= 5).
  int replicas = 1;
  // Limits; zero / -1 mean unlimited (the server's defaults).
  absl::Duration max_age = absl::ZeroDuration();
  int64_t max_msgs = -1;
  int64_t max_bytes = -1;
  int32_t max_msg_size = -1;
  // Messages with a Nats-Msg-Id seen within this window are not stored again
  // (the publish ack says "duplicate"). A producer's retries must end inside
  // it; StreamPublisher checks that.
  absl::Duration duplicate_window = absl::Minutes(2);
};

struct ConsumerConfig {
  // Stream the consumer reads.
  std::string stream;
  // The durable name: replicas using the same name share the work and the
  // consumer (and its position) outlives them. Same rules as stream names.
  std::string durable;
  std::string description;
  // Only messages on subjects matching this (empty: all of the stream).
  std::string filter_subject;
  DeliverPolicy deliver = DeliverPolicy::kAll;
  // A delivered message not acknowledged within ack_wait is delivered again.
  // StreamConsumer sends in-progress heartbeats for longer work.
  absl::Duration ack_wait = absl::Seconds(30);
  // Server-side delivery limit; -1 (unlimited) is what StreamConsumer wants:
  // it enforces its own ConsumerOptions::max_deliveries and dead-letters the
  // message, whereas at the server's limit a message silently stops being
  // delivered.
  int64_t max_deliver = -1;
  // Messages delivered and not yet acknowledged, across all replicas, before
  // the server stops delivering more.
  int64_t max_ack_pending = 1000;
};

// INVALID_ARGUMENT naming the broken rule, or OK.
absl::Status ValidateStreamConfig(const StreamConfig& config);
absl::Status ValidateConsumerConfig(const ConsumerConfig& config);

// Checks a JetStream name (stream, durable consumer or KV bucket); `what`
// names it in the error ("stream name").
absl::Status ValidateJetStreamName(absl::string_view name,
                                   absl::string_view what);

}  // namespace natsgw

#endif  // NATSGW_STREAM_CONFIG_H_
