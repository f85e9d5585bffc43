// fault/fault_support.h: small helpers the fault suites share (connecting,
// polling a condition that costs a round trip, reporting durations).
//
//   auto conn = natsgw::testing::MustConnect(options);
//   ASSERT_NE(conn, nullptr);
//   ASSERT_TRUE(natsgw::testing::PollUntil(
//       [&] { return conn->Readiness().ok(); }, absl::Seconds(5)));
//
// Header-only; the test that includes it links gtest and natsgw::gateway.
//
// Thread-safety: the functions keep no state; PollUntil calls `done` on the
// calling thread only.
#ifndef NATSGW_TESTS_FAULT_FAULT_SUPPORT_H_
#define NATSGW_TESTS_FAULT_FAULT_SUPPORT_H_

#include <cstdint>
#include <memory>
#include <utility>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "natsgw/connection.h"

namespace natsgw::testing {

// Whole milliseconds, for the figures a FAULT-RESULT line reports.
inline int64_t Ms(absl::Duration d) { return absl::ToInt64Milliseconds(d); }

// Connects with `options`; on failure records a test failure (with the
// status) and returns nullptr, so a test can ASSERT_NE(conn, nullptr).
inline std::unique_ptr<Connection> MustConnect(ConnectionOptions options) {
  auto conn = Connection::Create(std::move(options));
  EXPECT_TRUE(conn.ok()) << conn.status();
  return conn.ok() ? *std::move(conn) : nullptr;
}

// Polls `done` every `interval` until it holds; false after `timeout`. Unlike
// Eventually (harness/sync_points.h), which polls every millisecond, for
// conditions that cost a server round trip or a registry scrape to evaluate.
template <typename Pred>
bool PollUntil(Pred done, absl::Duration timeout,
               absl::Duration interval = absl::Milliseconds(20)) {
  const absl::Time until = absl::Now() + timeout;
  while (!done()) {
    if (absl::Now() > until) return false;
    absl::SleepFor(interval);
  }
  return true;
}

}  // namespace natsgw::testing

#endif  // NATSGW_TESTS_FAULT_FAULT_SUPPORT_H_
