#include "natsgw/trace_context.h"

#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace natsgw {
namespace {

using ::testing::HasSubstr;

constexpr absl::string_view kValid =
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

TEST(TraceContextTest, NewRootIsValidSampledAndRoundTrips) {
  TraceContext t = TraceContext::NewRoot();
  EXPECT_TRUE(t.valid());
  EXPECT_TRUE(t.sampled());
  std::string header = t.ToTraceParent();
  EXPECT_EQ(header.size(), 55u);
  absl::StatusOr<TraceContext> parsed = TraceContext::Parse(header);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(*parsed, t);
}

TEST(TraceContextTest, ParsesTheW3CExample) {
  absl::StatusOr<TraceContext> t =
      TraceContext::Parse(kValid, "congo=t61rcWkgMzE");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->TraceIdHex(), "4bf92f3577b34da6a3ce929d0e0e4736");
  EXPECT_EQ(t->SpanIdHex(), "00f067aa0ba902b7");
  EXPECT_EQ(t->flags(), 1);
  EXPECT_EQ(t->trace_state(), "congo=t61rcWkgMzE");
  EXPECT_EQ(t->ToTraceParent(), kValid);
}

TEST(TraceContextTest, ChildKeepsTraceIdAndStateButNotSpan) {
  TraceContext parent = *TraceContext::Parse(kValid, "a=b");
  TraceContext child = parent.Child();
  EXPECT_EQ(child.trace_id(), parent.trace_id());
  EXPECT_NE(child.span_id(), parent.span_id());
  EXPECT_EQ(child.trace_state(), "a=b");
  EXPECT_EQ(child.flags(), parent.flags());
}

struct BadCase {
  const char* value;
  const char* rule;
};

TEST(TraceContextTest, RejectsMalformedValuesNamingTheRule) {
  const BadCase cases[] = {
      {"", "at least 55"},
      {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0", "at least 55"},
      {"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", "trace ID"},
      {"00-00000000000000000000000000000000-00f067aa0ba902b7-01", "all zeros"},
      {"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", "all zeros"},
      {"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "ff"},
      {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
       "exactly 55"},
      {"00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "separated"},
      {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902bz-01", "parent ID"},
      {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x", "flags"},
      {"zz-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "version"},
  };
  for (const BadCase& c : cases) {
    absl::StatusOr<TraceContext> t = TraceContext::Parse(c.value);
    ASSERT_FALSE(t.ok()) << c.value;
    EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(t.status().message()), HasSubstr(c.rule))
        << c.value;
  }
}

TEST(TraceContextTest, AcceptsFutureVersionsWithExtraFields) {
  absl::StatusOr<TraceContext> t = TraceContext::Parse(
      "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future");
  ASSERT_TRUE(t.ok()) << t.status();
  // Re-emitted as version 00, the only version natsgw writes.
  EXPECT_EQ(t->ToTraceParent(), kValid);
}

TEST(TraceContextTest, DropsUnsafeTraceState) {
  TraceContext t = *TraceContext::Parse(kValid, "a=b\r\nInjected: x");
  EXPECT_EQ(t.trace_state(), "");
  TraceContext long_state = *TraceContext::Parse(kValid, std::string(513, 'a'));
  EXPECT_EQ(long_state.trace_state(), "");
}

TEST(TraceContextTest, ScopesNestAndAreThreadLocal) {
  EXPECT_FALSE(CurrentTraceContext().has_value());
  TraceContext outer = TraceContext::NewRoot();
  TraceContext inner = TraceContext::NewRoot();
  {
    ScopedTraceContext a(outer);
    EXPECT_EQ(CurrentTraceContext(), outer);
    {
      ScopedTraceContext b(inner);
      EXPECT_EQ(CurrentTraceContext(), inner);
      std::thread([] {
        EXPECT_FALSE(CurrentTraceContext().has_value());
      }).join();
    }
    EXPECT_EQ(CurrentTraceContext(), outer);
  }
  EXPECT_FALSE(CurrentTraceContext().has_value());
}

}  // namespace
}  // namespace natsgw
