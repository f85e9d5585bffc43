// fault/loss_checker.h: the bookkeeping that decides whether a fault test
// lost, invented, duplicated or reordered anything, and how long the client
// saw the system unavailable.
//
// LossChecker follows the Jepsen and Kafka checkers: every producer `p`
// numbers its messages c = 0, 1, 2, ... in send order and publishes each with
// the deterministic message ID "p<p>-<c>" (MessageIdFor), so that a retry or a
// replay is de-duplicated by the stream and can be recognized afterwards. The
// test records what it attempted, what the stream acknowledged, what a
// consumer did (side effects) and, at the end, everything read back from the
// stream with its stream sequence. Check() then derives:
//
//   lost          acknowledged, yet not in the stream;
//   unexpected    in the stream (or processed) but never attempted;
//   stored_twice  one message ID at two stream sequences;
//   effect_twice  one message's side effect performed more than once;
//   out_of_order  for one producer, acknowledged messages whose stream
//                 sequences do not increase with the counter;
//   misacked      acknowledged at a sequence where the stream does not hold
//                 it, or acknowledged at two different sequences;
//   recovered     in the stream but never acknowledged (publish failed or is
//                 unfinished): allowed by at-least-once, reported only;
//   unprocessed   in the stream but never processed: reported; a test that
//                 drives a consumer to completion asserts it empty.
//
// The order check assumes each producer is sequential (it learns the outcome
// of message c before it sends c+1), so an acknowledged c must precede every
// later acknowledged message in the stream. Messages that were never
// acknowledged are left out of it: a publish that gave up may still be stored
// later (an attempt stuck in a paused server's socket), which at-least-once
// allows. The check does not fit a pipelined producer (several
// PublishAsync calls in flight), whose retries may legitimately reorder its
// messages.
//
//   LossChecker checker;
//   checker.Attempted(0, 7);
//   ... ack = publisher->Publish(subject, data, {message_id = "p0-7"}) ...
//   checker.Acked(0, 7, ack->sequence, ack->duplicate);
//   ... handler: checker.Processed(0, 7) ...
//   ... read back: checker.Read(0, 7, stream_sequence) ...
//   EXPECT_TRUE(checker.Verify().ok()) << checker.Check().ToString();
//
// UnavailabilityMeter measures unavailability as the client sees it: the
// longest stretch between two successes that spans a failure, or that ends
// after a fault was injected (see the class comment).
//
// Thread-safety: LossChecker and UnavailabilityMeter are thread-safe (one
// std::mutex each); every method may be called from any thread, e.g. from
// publish callbacks and consumer handlers concurrently.
#ifndef NATSGW_TESTS_FAULT_LOSS_CHECKER_H_
#define NATSGW_TESTS_FAULT_LOSS_CHECKER_H_

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace natsgw::testing {

// Records the life of every message of a fault test and checks it; see the
// file comment. Thread-safe.
class LossChecker {
 public:
  // Reports list at most this many message IDs per defect kind (the counts
  // are always complete).
  static constexpr size_t kMaxListed = 20;

  // "p<producer>-<counter>"; producer must be >= 0.
  static std::string MessageIdFor(int producer, uint64_t counter);
  // The inverse of MessageIdFor; nullopt for anything else, including
  // non-canonical spellings ("p01-2", "p1-+2"), so that two different IDs
  // never map to one message.
  static std::optional<std::pair<int, uint64_t>> ParseMessageId(
      std::string_view id);

  // A publish of message (producer, counter) is about to be sent (call it
  // before sending: a message read back must have been attempted).
  void Attempted(int producer, uint64_t counter);
  // The stream acknowledged it at `stream_sequence`; `duplicate` as the ack
  // says. May be called more than once (e.g. a deliberate replay).
  void Acked(int producer, uint64_t counter, uint64_t stream_sequence,
             bool duplicate);
  // The publish gave up with `status`.
  void Failed(int producer, uint64_t counter, const absl::Status& status);
  // The message was read back from the stream at `stream_sequence` (may be
  // called repeatedly for one sequence: re-reading is harmless).
  void Read(int producer, uint64_t counter, uint64_t stream_sequence);
  // A stored message whose ID is not a MessageIdFor ID (or is missing) was
  // read: always unexpected.
  void ReadUnknown(std::string_view id, uint64_t stream_sequence);
  // The consumer performed the message's side effect.
  void Processed(int producer, uint64_t counter);

  struct Report {
    uint64_t attempted = 0;           // distinct messages attempted
    uint64_t acked = 0;               // distinct messages acknowledged
    uint64_t acked_duplicate = 0;     // ... of which some ack said duplicate
    uint64_t failed = 0;              // distinct messages whose publish gave up
    uint64_t read_distinct = 0;       // distinct messages read back
    uint64_t stored_duplicates = 0;   // extra stored copies, in total
    uint64_t processed_distinct = 0;  // distinct messages processed
    uint64_t processed_duplicates = 0;  // extra side effects, in total
    uint64_t recovered = 0;             // read but never acknowledged (allowed)
    uint64_t unprocessed_count = 0;     // read but never processed
    uint64_t lost_count = 0;
    uint64_t unexpected_count = 0;
    uint64_t stored_twice_count = 0;
    uint64_t effect_twice_count = 0;
    uint64_t out_of_order_count = 0;
    uint64_t misacked_count = 0;
    // Up to kMaxListed message IDs each (with detail where useful), in
    // (producer, counter) order.
    std::vector<std::string> lost;          // acked but never read
    std::vector<std::string> unexpected;    // read/processed, never attempted
    std::vector<std::string> stored_twice;  // same ID at two sequences
    std::vector<std::string> effect_twice;  // processed more than once
    std::vector<std::string> out_of_order;  // acked, seq not increasing
    std::vector<std::string> misacked;      // ack sequence != stored one
    std::vector<std::string> unprocessed;   // read, never processed

    // No lost, unexpected, stored_twice, effect_twice, out_of_order or
    // misacked message. (recovered and unprocessed are reported only.)
    bool ok() const;
    // One human-readable block: the counts, then each non-empty list.
    std::string ToString() const;
  };
  Report Check() const;
  // OK, or kDataLoss with Check().ToString().
  absl::Status Verify() const;

 private:
  struct Entry {
    bool attempted = false;
    bool failed = false;
    bool acked_duplicate = false;
    // Every sequence an ack named (normally exactly one).
    std::set<uint64_t> acked_at;
    // Every sequence the message was read at (normally exactly one).
    std::set<uint64_t> read_at;
    uint64_t processed = 0;
  };
  using Key = std::pair<int, uint64_t>;

  mutable std::mutex mu_;
  std::map<Key, Entry> entries_ ABSL_GUARDED_BY(mu_);
  // ReadUnknown(): "<id>@<seq>".
  std::vector<std::string> unknown_reads_ ABSL_GUARDED_BY(mu_);
  uint64_t unknown_read_count_ ABSL_GUARDED_BY(mu_) = 0;
};

// The longest time the client went without a success while something was
// wrong. A gap between two consecutive successes counts when a failure falls
// inside it, or when it ends after the first injected fault: from then on the
// client is exposed, and a fault's effect may only show after a success or
// two that were already under way, or only as slow successes (retries the
// caller never sees). Producers under test publish continuously, so once a
// fault was injected every stretch without success is unavailability; gaps
// before any fault count only when a failure shows. If the last event is a
// failure or fault not yet followed by a success, the open stretch counts up
// to it. Timestamps from concurrent threads may arrive slightly out of order;
// a success older than the newest one only counts.
//
// Thread-safe.
class UnavailabilityMeter {
 public:
  void Success(absl::Time at = absl::Now());
  void Failure(absl::Time at = absl::Now());
  // A fault was injected now (kill, pause, step-down, ...).
  void Fault(absl::Time at = absl::Now());

  absl::Duration LongestGap() const;
  uint64_t successes() const;
  uint64_t failures() const;
  uint64_t faults() const;

 private:
  void Disrupted(absl::Time at) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable std::mutex mu_;
  uint64_t successes_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t failures_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t faults_ ABSL_GUARDED_BY(mu_) = 0;
  // The newest success; InfinitePast() before the first.
  absl::Time last_success_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  // The first event ever (the start of an outage that precedes any success).
  absl::Time first_event_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  // The first Fault(); InfiniteFuture() before it.
  absl::Time first_fault_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  // A failure or fault newer than last_success_, and the newest such.
  bool disrupted_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time last_disruption_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  absl::Duration longest_ ABSL_GUARDED_BY(mu_) = absl::ZeroDuration();
};

// One machine-readable result line, collected for the README:
//   FAULT-RESULT {"test":"F1_kill_stream_leader","attempted":..,"acked":..,
//                 "acked_dup":..,"failed":..,"read":..,"lost":..,"dups":..,
//                 "effect_dups":..,"unexpected":..,"out_of_order":..,
//                 "misacked":..,"recovered":..,"unavailable_ms":..,<extra>...}
// "lost", "unexpected", "out_of_order" and "misacked" are message counts,
// "dups" extra stored copies, "effect_dups" extra side effects, and
// "unavailable_ms" the meter's LongestGap(). `test` and the extra keys must
// be plain identifiers (they are not escaped); `extra` adds integer fields
// in order.
std::string FaultResultLine(
    std::string_view test, const LossChecker::Report& report,
    const UnavailabilityMeter& meter,
    const std::vector<std::pair<std::string, int64_t>>& extra = {});

}  // namespace natsgw::testing

#endif  // NATSGW_TESTS_FAULT_LOSS_CHECKER_H_
