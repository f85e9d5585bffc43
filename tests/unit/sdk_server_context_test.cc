#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "flatbuffers/flatbuffers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "natsgw/headers.h"
#include "natsgw/message.h"
#include "natsgw/server_context.h"
#include "natsgw/trace_context.h"
#include "natsgw/wire_headers.h"
#include "sdk_test_util.h"

namespace natsgw {
namespace {

using ::natsgw::testing::kEchoMethod;
using ::testing::ElementsAre;
using ::testing::Optional;

// A request as natsgw delivers it: natsgw's own headers (in the cases other
// clients write them) mixed with the caller's application headers.
Message RequestWithHeaders() {
  Message m;
  m.subject = "echo.Echo";
  m.data = "payload";
  m.headers.Add(kTraceParentHeader,
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
  m.headers.Add("Tracestate", "vendor=value");
  m.headers.Add("Tenant", "acme");
  m.headers.Add(kMessageIdHeader, "msg-1");
  m.headers.Add("NATS-MSG-ID", "msg-1-again");
  m.headers.Add(kSentAtHeader, "1700000000000000000");
  m.headers.Add("natsgw-timeout-us", "250000");
  m.headers.Add("Natsgw-Anything-New", "x");
  m.headers.Add(kServiceErrorHeader, "oops");
  m.headers.Add(kServiceErrorCodeHeader, "500");
  m.headers.Add(kStatusCodeHeader, "13");
  m.headers.Add("status", "503");
  m.headers.Add("Description", "no responders");
  m.headers.Add("Accept", "a");
  m.headers.Add("X-Request-Kind", "unit");
  m.headers.Add("accept", "b");
  m.trace = TraceContext::NewRoot();
  m.message_id = "msg-1";
  m.sent_at = absl::FromUnixSeconds(1'700'000'000);
  return m;
}

TEST(ServerContextTest, PassesTheRequestThrough) {
  const Message request = RequestWithHeaders();
  flatbuffers::FlatBufferBuilder fbb;
  ServerContext ctx(kEchoMethod, request, fbb);
  EXPECT_EQ(&ctx.method(), &kEchoMethod);
  EXPECT_EQ(&ctx.request(), &request);
  EXPECT_EQ(&ctx.builder(), &fbb);
  EXPECT_EQ(ctx.trace().TraceIdHex(), request.trace.TraceIdHex());
  EXPECT_EQ(ctx.message_id(), "msg-1");
  EXPECT_EQ(ctx.sent_at(), absl::FromUnixSeconds(1'700'000'000));
  EXPECT_EQ(ctx.deadline(), std::nullopt);
  EXPECT_TRUE(ctx.reply_headers().empty());
  ctx.reply_headers().Add("Served-By", "unit");
  const ServerContext& const_ctx = ctx;
  EXPECT_THAT(const_ctx.reply_headers().Get("served-by"),
              Optional(absl::string_view("unit")));
}

TEST(ServerContextTest, RemainingIsInfiniteWithoutADeadline) {
  Message request;
  flatbuffers::FlatBufferBuilder fbb;
  ServerContext ctx(kEchoMethod, request, fbb);
  EXPECT_EQ(ctx.remaining(), absl::InfiniteDuration());
}

TEST(ServerContextTest, RemainingCountsDownToTheDeadline) {
  Message request;
  request.deadline = absl::Now() + absl::Hours(1);
  flatbuffers::FlatBufferBuilder fbb;
  ServerContext ctx(kEchoMethod, request, fbb);
  EXPECT_EQ(ctx.deadline(), request.deadline);
  EXPECT_GT(ctx.remaining(), absl::ZeroDuration());
  EXPECT_LE(ctx.remaining(), absl::Hours(1));
}

TEST(ServerContextTest, RemainingIsNegativeAfterTheDeadline) {
  Message request;
  request.deadline = absl::Now() - absl::Hours(1);
  flatbuffers::FlatBufferBuilder fbb;
  ServerContext ctx(kEchoMethod, request, fbb);
  EXPECT_LE(ctx.remaining(), -absl::Hours(1));
  EXPECT_NE(ctx.remaining(), -absl::InfiniteDuration());
}

TEST(ServerContextTest, ApplicationHeadersExcludeNatsgwsOwn) {
  const Message request = RequestWithHeaders();
  flatbuffers::FlatBufferBuilder fbb;
  ServerContext ctx(kEchoMethod, request, fbb);
  const Headers app = ctx.application_headers();
  // Order and case as received, repeated keys kept.
  EXPECT_THAT(
      std::vector<HeaderField>(app.begin(), app.end()),
      ElementsAre(HeaderField{"Tenant", "acme"}, HeaderField{"Accept", "a"},
                  HeaderField{"X-Request-Kind", "unit"},
                  HeaderField{"accept", "b"}));
}

TEST(ServerContextTest, MetadataIsCaseInsensitive) {
  const Message request = RequestWithHeaders();
  flatbuffers::FlatBufferBuilder fbb;
  ServerContext ctx(kEchoMethod, request, fbb);
  EXPECT_THAT(ctx.metadata("Tenant"), Optional(absl::string_view("acme")));
  EXPECT_THAT(ctx.metadata("tenant"), Optional(absl::string_view("acme")));
  EXPECT_THAT(ctx.metadata("TENANT"), Optional(absl::string_view("acme")));
  EXPECT_THAT(ctx.metadata("x-request-kind"),
              Optional(absl::string_view("unit")));
  // The first value of a repeated key.
  EXPECT_THAT(ctx.metadata("ACCEPT"), Optional(absl::string_view("a")));
  EXPECT_EQ(ctx.metadata("missing"), std::nullopt);
}

TEST(ServerContextTest, MetadataNeverReturnsReservedHeaders) {
  const Message request = RequestWithHeaders();
  flatbuffers::FlatBufferBuilder fbb;
  ServerContext ctx(kEchoMethod, request, fbb);
  for (absl::string_view key :
       {"traceparent", "TRACEPARENT", "tracestate", "Nats-Msg-Id",
        "nats-msg-id", "Natsgw-Sent-At-Ns", "Natsgw-Timeout-Us",
        "NATSGW-ANYTHING-NEW", "Nats-Service-Error", "Nats-Service-Error-Code",
        "Natsgw-Status", "Status", "description"}) {
    SCOPED_TRACE(key);
    // Present in the request...
    ASSERT_TRUE(request.headers.Contains(key));
    // ...but not application metadata.
    EXPECT_EQ(ctx.metadata(key), std::nullopt);
  }
}

}  // namespace
}  // namespace natsgw
