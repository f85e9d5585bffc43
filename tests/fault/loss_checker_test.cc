// The loss checker judges every fault test, so it is tested on its own: a
// clean history passes, and each defect kind, planted alone, is detected,
// named in the report and fails Verify().
#include "fault/loss_checker.h"

#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace natsgw::testing {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Optional;
using ::testing::Pair;

// Producer `p` publishes counters [0, n) acknowledged at consecutive
// sequences from `first_seq`, each read back where acknowledged and
// processed once.
void CleanRun(LossChecker& checker, int p, uint64_t n, uint64_t first_seq) {
  for (uint64_t c = 0; c < n; ++c) {
    checker.Attempted(p, c);
    checker.Acked(p, c, first_seq + c, /*duplicate=*/false);
    checker.Read(p, c, first_seq + c);
    checker.Processed(p, c);
  }
}

TEST(LossCheckerTest, MessageIdsRoundTripAndOnlyCanonicalOnesParse) {
  EXPECT_EQ(LossChecker::MessageIdFor(0, 0), "p0-0");
  EXPECT_EQ(LossChecker::MessageIdFor(12, 345), "p12-345");
  EXPECT_THAT(LossChecker::ParseMessageId("p12-345"), Optional(Pair(12, 345)));
  EXPECT_THAT(LossChecker::ParseMessageId(
                  LossChecker::MessageIdFor(7, 18446744073709551615u)),
              Optional(Pair(7, 18446744073709551615u)));
  for (const char* bad :
       {"", "p", "p-", "p1-", "p-1", "q1-2", "p1_2", "p01-2", "p1-02", "p1-+2",
        "p-1-2", "p1-2x", "p1-18446744073709551616", "p99999999999-1", " p1-2",
        "P1-2", "p1--2"}) {
    EXPECT_EQ(LossChecker::ParseMessageId(bad), std::nullopt) << bad;
  }
}

TEST(LossCheckerTest, CleanHistoryPassesAndIsCounted) {
  LossChecker checker;
  CleanRun(checker, 0, 10, 1);
  CleanRun(checker, 1, 5, 11);
  // A retried publish acknowledged as duplicate of its first copy, read
  // twice (re-reading a sequence is harmless) and processed once.
  checker.Acked(0, 3, 4, /*duplicate=*/true);
  checker.Read(0, 3, 4);
  const LossChecker::Report r = checker.Check();
  EXPECT_TRUE(r.ok()) << r.ToString();
  EXPECT_TRUE(checker.Verify().ok());
  EXPECT_EQ(r.attempted, 15u);
  EXPECT_EQ(r.acked, 15u);
  EXPECT_EQ(r.acked_duplicate, 1u);
  EXPECT_EQ(r.read_distinct, 15u);
  EXPECT_EQ(r.processed_distinct, 15u);
  EXPECT_EQ(r.stored_duplicates, 0u);
  EXPECT_EQ(r.processed_duplicates, 0u);
  EXPECT_EQ(r.failed, 0u);
  EXPECT_EQ(r.recovered, 0u);
  EXPECT_EQ(r.unprocessed_count, 0u);
  EXPECT_THAT(r.ToString(), HasSubstr("loss check OK"));
}

TEST(LossCheckerTest, FailedOrUnfinishedPublishesThatWereStoredAreRecovered) {
  LossChecker checker;
  CleanRun(checker, 0, 3, 1);
  // p0-3 gave up but had been stored after all; p0-4 never got an answer
  // and is not in the stream: neither is a defect.
  checker.Attempted(0, 3);
  checker.Failed(0, 3, absl::UnavailableError("no responders"));
  checker.Read(0, 3, 4);
  checker.Processed(0, 3);
  checker.Attempted(0, 4);
  checker.Failed(0, 4, absl::DeadlineExceededError("timeout"));
  // p0-5 was stored without an ack *before* acknowledged p0-2: order is only
  // judged among acknowledged messages.
  checker.Attempted(0, 5);
  checker.Read(0, 5, 0);
  checker.Processed(0, 5);
  const LossChecker::Report r = checker.Check();
  EXPECT_TRUE(r.ok()) << r.ToString();
  EXPECT_EQ(r.failed, 2u);
  EXPECT_EQ(r.recovered, 2u);
  EXPECT_EQ(r.lost_count, 0u);
}

TEST(LossCheckerTest, DetectsLostMessages) {
  LossChecker checker;
  CleanRun(checker, 0, 5, 1);
  checker.Attempted(0, 5);
  checker.Acked(0, 5, 6, false);  // acked, never read back
  const LossChecker::Report r = checker.Check();
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.lost_count, 1u);
  EXPECT_THAT(r.lost, ElementsAre("p0-5 (acked@6)"));
  const absl::Status status = checker.Verify();
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(status.message(), HasSubstr("lost (1): p0-5"));
}

TEST(LossCheckerTest, DetectsUnexpectedMessages) {
  LossChecker checker;
  CleanRun(checker, 0, 2, 1);
  checker.Read(1, 0, 3);              // never attempted
  checker.Processed(2, 9);            // a side effect nobody asked for
  checker.ReadUnknown("garbage", 4);  // not one of ours at all
  const LossChecker::Report r = checker.Check();
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.unexpected_count, 3u);
  EXPECT_THAT(r.unexpected,
              ElementsAre("'garbage'@4", "p1-0@3", "p2-9 (processed)"));
  EXPECT_THAT(checker.Verify().message(), HasSubstr("unexpected (3)"));
}

TEST(LossCheckerTest, DetectsMessagesStoredTwice) {
  LossChecker checker;
  CleanRun(checker, 0, 3, 1);
  checker.Read(0, 1, 7);  // the same ID at a second sequence
  const LossChecker::Report r = checker.Check();
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.stored_twice_count, 1u);
  EXPECT_EQ(r.stored_duplicates, 1u);
  EXPECT_THAT(r.stored_twice, ElementsAre("p0-1@2,7"));
  EXPECT_THAT(checker.Verify().message(), HasSubstr("stored twice (1)"));
}

TEST(LossCheckerTest, DetectsSideEffectsPerformedTwice) {
  LossChecker checker;
  CleanRun(checker, 0, 3, 1);
  checker.Processed(0, 2);
  checker.Processed(0, 2);
  const LossChecker::Report r = checker.Check();
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.effect_twice_count, 1u);
  EXPECT_EQ(r.processed_duplicates, 2u);
  EXPECT_THAT(r.effect_twice, ElementsAre("p0-2 x3"));
  EXPECT_THAT(checker.Verify().message(), HasSubstr("effect twice (1)"));
}

TEST(LossCheckerTest, DetectsPerProducerReordering) {
  LossChecker checker;
  // p0's acknowledged counters 0..3 stored at 1, 2, 4, 3: p0-3 lands before
  // p0-2. p1 interleaves and is in order, so only p0 is named.
  const uint64_t p0_seqs[] = {1, 2, 5, 4};
  const uint64_t p1_seqs[] = {3, 6};
  for (uint64_t c = 0; c < 4; ++c) {
    checker.Attempted(0, c);
    checker.Acked(0, c, p0_seqs[c], false);
    checker.Read(0, c, p0_seqs[c]);
    checker.Processed(0, c);
  }
  for (uint64_t c = 0; c < 2; ++c) {
    checker.Attempted(1, c);
    checker.Acked(1, c, p1_seqs[c], false);
    checker.Read(1, c, p1_seqs[c]);
    checker.Processed(1, c);
  }
  const LossChecker::Report r = checker.Check();
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.out_of_order_count, 1u);
  EXPECT_THAT(r.out_of_order, ElementsAre("p0-3@4 after p0-2@5"));
  EXPECT_THAT(checker.Verify().message(), HasSubstr("out of order (1)"));
}

TEST(LossCheckerTest, DetectsAcksThatNameTheWrongSequence) {
  LossChecker checker;
  CleanRun(checker, 0, 3, 1);
  // Acked at 9 but stored at 4.
  checker.Attempted(0, 3);
  checker.Acked(0, 3, 9, false);
  checker.Read(0, 3, 4);
  checker.Processed(0, 3);
  // A duplicate ack naming another sequence than the first copy's.
  checker.Acked(0, 1, 3, true);
  const LossChecker::Report r = checker.Check();
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.misacked_count, 2u);
  EXPECT_THAT(r.misacked,
              ElementsAre("p0-1 acked@2,3 stored@2", "p0-3 acked@9 stored@4"));
  EXPECT_THAT(checker.Verify().message(), HasSubstr("misacked (2)"));
}

TEST(LossCheckerTest, ReportsUnprocessedMessagesWithoutFailing) {
  LossChecker checker;
  checker.Attempted(0, 0);
  checker.Acked(0, 0, 1, false);
  checker.Read(0, 0, 1);
  const LossChecker::Report r = checker.Check();
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(r.unprocessed_count, 1u);
  EXPECT_THAT(r.unprocessed, ElementsAre("p0-0@1"));
  EXPECT_THAT(r.ToString(), HasSubstr("unprocessed (reported only) (1)"));
}

TEST(LossCheckerTest, ListsAreCappedButCountsAreComplete) {
  LossChecker checker;
  for (uint64_t c = 0; c < 50; ++c) {
    checker.Attempted(0, c);
    checker.Acked(0, c, c + 1, false);
  }
  const LossChecker::Report r = checker.Check();
  EXPECT_EQ(r.lost_count, 50u);
  EXPECT_EQ(r.lost.size(), LossChecker::kMaxListed);
  EXPECT_THAT(r.ToString(), HasSubstr("lost (50)"));
  EXPECT_THAT(r.ToString(), HasSubstr(" ..."));
}

TEST(LossCheckerTest, ConcurrentRecordingIsComplete) {
  LossChecker checker;
  std::vector<std::thread> threads;
  for (int p = 0; p < 4; ++p) {
    threads.emplace_back(
        [&checker, p] { CleanRun(checker, p, 500, p * 500 + 1); });
  }
  for (std::thread& t : threads) t.join();
  const LossChecker::Report r = checker.Check();
  EXPECT_TRUE(r.ok()) << r.ToString();
  EXPECT_EQ(r.acked, 2000u);
  EXPECT_EQ(r.read_distinct, 2000u);
  EXPECT_EQ(r.processed_distinct, 2000u);
}

TEST(UnavailabilityMeterTest, GapsWithoutDisruptionDoNotCount) {
  UnavailabilityMeter meter;
  const absl::Time t0 = absl::UnixEpoch();
  meter.Success(t0);
  meter.Success(t0 + absl::Seconds(3));
  EXPECT_EQ(meter.LongestGap(), absl::ZeroDuration());
  EXPECT_EQ(meter.successes(), 2u);
}

TEST(UnavailabilityMeterTest, MeasuresTheLongestGapAcrossFailures) {
  UnavailabilityMeter meter;
  const absl::Time t0 = absl::UnixEpoch();
  meter.Success(t0);
  meter.Failure(t0 + absl::Seconds(1));
  meter.Failure(t0 + absl::Seconds(2));
  meter.Success(t0 + absl::Seconds(4));  // gap 4 s
  meter.Success(t0 + absl::Seconds(9));  // idle, no failure: not counted
  EXPECT_EQ(meter.LongestGap(), absl::Seconds(4));
  EXPECT_EQ(meter.failures(), 2u);
  // A late report from another thread neither opens nor stretches a gap.
  meter.Failure(t0 + absl::Seconds(3));
  meter.Success(t0 + absl::Seconds(8));
  meter.Success(t0 + absl::Seconds(10));
  EXPECT_EQ(meter.LongestGap(), absl::Seconds(4));
}

TEST(UnavailabilityMeterTest, AfterAFaultEveryGapCounts) {
  UnavailabilityMeter meter;
  const absl::Time t0 = absl::UnixEpoch();
  meter.Success(t0);
  meter.Success(t0 + absl::Seconds(2));  // before any fault: not counted
  meter.Fault(t0 + absl::Seconds(3));
  // A publish already under way succeeds just after the fault...
  meter.Success(t0 + absl::Milliseconds(3010));
  // ...and the next one succeeds only 7 s later, its failed attempts
  // retried out of the caller's sight.
  meter.Success(t0 + absl::Milliseconds(10010));
  meter.Success(t0 + absl::Milliseconds(10020));
  EXPECT_EQ(meter.LongestGap(), absl::Seconds(7));
  EXPECT_EQ(meter.faults(), 1u);
  EXPECT_EQ(meter.failures(), 0u);
}

TEST(UnavailabilityMeterTest, AnOutageNotYetOverCountsUpToItsLastFailure) {
  UnavailabilityMeter meter;
  const absl::Time t0 = absl::UnixEpoch();
  meter.Success(t0);
  meter.Fault(t0 + absl::Seconds(1));
  meter.Failure(t0 + absl::Seconds(9));
  EXPECT_EQ(meter.LongestGap(), absl::Seconds(9));
  // Before any success, the outage counts from the first event.
  UnavailabilityMeter fresh;
  fresh.Failure(t0);
  fresh.Failure(t0 + absl::Seconds(2));
  EXPECT_EQ(fresh.LongestGap(), absl::Seconds(2));
  fresh.Success(t0 + absl::Seconds(5));
  EXPECT_EQ(fresh.LongestGap(), absl::Seconds(5));
}

TEST(FaultResultLineTest, IsOneJsonObjectWithTheFigures) {
  LossChecker checker;
  CleanRun(checker, 0, 3, 1);
  UnavailabilityMeter meter;
  const absl::Time t0 = absl::UnixEpoch();
  meter.Success(t0);
  meter.Failure(t0 + absl::Milliseconds(100));
  meter.Success(t0 + absl::Milliseconds(1500));
  EXPECT_EQ(FaultResultLine("F0_demo", checker.Check(), meter,
                            {{"faults", 1}, {"retries", -1}}),
            "FAULT-RESULT {\"test\":\"F0_demo\",\"attempted\":3,\"acked\":3,"
            "\"acked_dup\":0,\"failed\":0,\"read\":3,\"lost\":0,\"dups\":0,"
            "\"effect_dups\":0,\"unexpected\":0,\"out_of_order\":0,"
            "\"misacked\":0,\"recovered\":0,\"unavailable_ms\":1500,"
            "\"faults\":1,\"retries\":-1}");
}

}  // namespace
}  // namespace natsgw::testing
