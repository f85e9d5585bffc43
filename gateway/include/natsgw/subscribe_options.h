// natsgw/subscribe_options.h: how a subscription runs its handler and what
// it does when messages arrive faster than they are handled.
//
//   natsgw::SubscribeOptions opts;
//   opts.workers = 8;                 // handlers run on 8 threads of their own
//   opts.queue_capacity = 1024;       // messages waiting for a worker at most
//   opts.overflow = natsgw::OverflowPolicy::kBlock;
//   conn->Subscribe("users.events.UserRegistered", "email", handler, opts);
//
// Inline (workers == 0, the default): the handler runs on the subscription's
// delivery thread, one message at a time, in arrival order. Messages wait in
// the client library's pending queue; beyond its limits they are dropped and
// counted (Subscription::dropped()).
//
// Task queue (workers > 0): the delivery thread hands each message to a
// natsgw::TaskQueue (natsgw/task_queue.h) served by `workers` threads, so up
// to `workers` handler calls run concurrently and messages are no longer
// handled in order (they start in arrival order). When `workers` handlers
// are busy and `queue_capacity` messages already wait, `overflow` decides:
//   kBlock       the delivery thread waits up to block_timeout for room
//                (back-pressure: meanwhile messages collect in the client
//                library's pending queue, whose limits then apply), then the
//                message is discarded with RESOURCE_EXHAUSTED;
//   kReject      the new message is discarded at once (RESOURCE_EXHAUSTED);
//   kDropOldest  the oldest waiting message is discarded to make room.
// A discarded message is never silent: it is counted in
// natsgw_errors_total{operation="subscribe",code=...}, in the queue's
// natsgw_task_queue_tasks_total{queue,outcome} and in
// Subscription::dropped(), and reported to the connection's Logger (at most
// about once a second per subscription, with a count). Unsubscribe discards
// messages still waiting (CANCELLED) and waits for running handlers;
// Subscription::Drain runs them first.
//
// Thread-safety: a value type.
#ifndef NATSGW_SUBSCRIBE_OPTIONS_H_
#define NATSGW_SUBSCRIBE_OPTIONS_H_

#include <cstddef>
#include <string>

#include "absl/time/time.h"
#include "natsgw/task_queue.h"

namespace natsgw {

struct SubscribeOptions {
  // 0: the handler runs inline on the subscription's delivery thread (in
  // order, one at a time). > 0: handlers run on a task queue with this many
  // threads (concurrently, not ordered).
  int workers = 0;
  // With workers > 0: messages waiting for a worker at most (0: a message is
  // accepted only while a worker is idle).
  size_t queue_capacity = 256;
  // With workers > 0: what happens to a message arriving while the queue is
  // full (see the file comment). kBlock back-pressures the delivery thread.
  OverflowPolicy overflow = OverflowPolicy::kBlock;
  // kBlock only: how long the delivery thread waits for room; >= 0.
  absl::Duration block_timeout = absl::Milliseconds(100);
  // Label used for this subscription in metrics (natsgw_*{subject} and the
  // task queue's `queue`) instead of the subject pattern. Set it when the
  // pattern embeds an ID, to keep label cardinality bounded.
  std::string metric_subject;
};

}  // namespace natsgw

#endif  // NATSGW_SUBSCRIBE_OPTIONS_H_
