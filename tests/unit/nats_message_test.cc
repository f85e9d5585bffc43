#include "nats_message.h"

#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nats_status.h"
#include "natsgw/wire_headers.h"

namespace natsgw::internal {
namespace {

using ::testing::HasSubstr;
using ::testing::Optional;

// nats.c must be initialized before messages can be freed.
class NatsLibrary : public ::testing::Environment {
 public:
  void SetUp() override { ASSERT_TRUE(EnsureNatsLibrary().ok()); }
};
const auto* const kNatsLibrary =
    ::testing::AddGlobalTestEnvironment(new NatsLibrary);

Stamp MakeStamp() {
  Stamp stamp;
  stamp.trace = *TraceContext::Parse(
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "k=v");
  stamp.message_id = "MSGID1234567890";
  stamp.sent_at = absl::FromUnixNanos(1732500000123456789);
  return stamp;
}

TEST(NatsMessageTest, StampsAndReadsBackTheWireHeaders) {
  Stamp stamp = MakeStamp();
  stamp.timeout = absl::Milliseconds(250);
  Headers app{{"Tenant", "acme"}, {"Tenant", "beta"}};
  auto msg = BuildNatsMsg("users.RegisterUser", "payload", app, nullptr, stamp,
                          1 << 20);
  ASSERT_TRUE(msg.ok()) << msg.status();

  const absl::Time received = absl::FromUnixSeconds(1800000000);
  TraceOrigin origin;
  Message m = ReadNatsMsg(msg->get(), received, 1.0, &origin);
  EXPECT_EQ(origin, TraceOrigin::kReceived);
  EXPECT_EQ(m.subject, "users.RegisterUser");
  EXPECT_EQ(m.data, "payload");
  EXPECT_EQ(m.trace, stamp.trace);
  EXPECT_FALSE(m.trace_replaced);
  EXPECT_EQ(m.message_id, "MSGID1234567890");
  EXPECT_EQ(m.sent_at, stamp.sent_at);
  EXPECT_EQ(m.deadline, received + absl::Milliseconds(250));
  EXPECT_THAT(m.headers.GetAll("tenant"),
              ::testing::ElementsAre("acme", "beta"));
  EXPECT_THAT(m.headers.Get("traceparent"),
              Optional(absl::string_view(
                  "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")));
  EXPECT_THAT(m.headers.Get(kSentAtHeader),
              Optional(absl::string_view("1732500000123456789")));
}

TEST(NatsMessageTest, BinaryPayloadSurvives) {
  const std::string payload("\0\x01\xff\r\n", 5);
  auto msg = BuildNatsMsg("a", payload, {}, nullptr, MakeStamp(), 0);
  ASSERT_TRUE(msg.ok());
  EXPECT_EQ(ReadNatsMsg(msg->get(), absl::Now(), 1.0, nullptr).data, payload);
}

TEST(NatsMessageTest, RejectsMessagesOverMaxPayloadCountingHeaders) {
  Stamp stamp = MakeStamp();
  const size_t headers = HeaderBlockBytes({}, nullptr, stamp);
  // Exactly at the limit is fine; one byte more is not.
  std::string data(1000 - headers, 'x');
  EXPECT_TRUE(BuildNatsMsg("a", data, {}, nullptr, stamp, 1000).ok());
  data.push_back('x');
  auto too_big = BuildNatsMsg("a", data, {}, nullptr, stamp, 1000);
  ASSERT_FALSE(too_big.ok());
  EXPECT_EQ(too_big.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(too_big.status().message()),
              HasSubstr("exceeds the server's max_payload of 1000 bytes"));
}

natsMsg* RawMessage(const char* traceparent) {
  natsMsg* msg = nullptr;
  EXPECT_EQ(natsMsg_Create(&msg, "s", nullptr, "", 0), NATS_OK);
  if (traceparent != nullptr) {
    EXPECT_EQ(natsMsgHeader_Set(msg, "Traceparent", traceparent), NATS_OK);
  }
  return msg;
}

TEST(NatsMessageTest, ReadsTraceparentCaseInsensitively) {
  NatsMsgPtr msg(
      RawMessage("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"));
  TraceOrigin origin;
  Message m = ReadNatsMsg(msg.get(), absl::Now(), 1.0, &origin);
  EXPECT_EQ(origin, TraceOrigin::kReceived);
  EXPECT_EQ(m.trace.TraceIdHex(), "4bf92f3577b34da6a3ce929d0e0e4736");
  EXPECT_FALSE(m.trace.sampled());
}

TEST(NatsMessageTest, ReplacesMissingOrInvalidTrace) {
  NatsMsgPtr invalid(RawMessage("00-garbage"));
  TraceOrigin origin;
  Message m = ReadNatsMsg(invalid.get(), absl::Now(), 1.0, &origin);
  EXPECT_EQ(origin, TraceOrigin::kInvalid);
  EXPECT_TRUE(m.trace_replaced);
  EXPECT_TRUE(m.trace.valid());

  NatsMsgPtr missing(RawMessage(nullptr));
  Message m2 = ReadNatsMsg(missing.get(), absl::Now(), 1.0, &origin);
  EXPECT_EQ(origin, TraceOrigin::kMissing);
  EXPECT_TRUE(m2.trace.valid());
  EXPECT_TRUE(m2.message_id.empty());
  EXPECT_FALSE(m2.sent_at.has_value());
  EXPECT_FALSE(m2.deadline.has_value());
}

TEST(NatsMessageTest, NegativeBudgetMeansAlreadyExpired) {
  NatsMsgPtr msg(RawMessage(nullptr));
  ASSERT_EQ(natsMsgHeader_Set(msg.get(), "Natsgw-Timeout-Us", "-5"), NATS_OK);
  const absl::Time now = absl::Now();
  EXPECT_EQ(ReadNatsMsg(msg.get(), now, 1.0, nullptr).deadline, now);
}

// The nats.c this is built with takes natsgw's encoded header block (see
// BuildNatsMsg); if a nats.c release stops doing so, natsgw falls back to the
// public header API, and this test says so instead of the speed quietly
// going.
TEST(NatsMessageTest, NatsCTakesTheEncodedHeaderBlock) {
  EXPECT_TRUE(EncodedHeadersInUse());
}

// Both ways of building a message carry the same headers, values, payload,
// subject and reply. (Not an empty value: nats.c encodes one as "Key: " on
// both paths, and its parser then reads the next line as the value, so on
// the wire the two agree, but not when the public path is read back from
// nats.c's in-memory table as here.)
TEST(NatsMessageTest, EncodedAndPublicHeaderPathsAgree) {
  Stamp stamp = MakeStamp();
  stamp.timeout = absl::Milliseconds(5);
  stamp.reply = "_INBOX.abc.1";
  Headers app{{"Tenant", "acme"}, {"Tenant", "beta"}, {"X-Other", "x"}};
  Headers extra{{"Nats-Service-Error-Code", "503"}};
  std::vector<Message> read;
  for (bool encoded : {true, false}) {
    UseEncodedHeadersForTesting(encoded);
    auto msg = BuildNatsMsg("orders.Create", std::string("p\0q", 3), app,
                            &extra, stamp, 1 << 20);
    UseEncodedHeadersForTesting(true);
    ASSERT_TRUE(msg.ok()) << msg.status();
    EXPECT_STREQ(natsMsg_GetReply(msg->get()), "_INBOX.abc.1");
    read.push_back(
        ReadNatsMsg(msg->get(), absl::UnixEpoch(), 1.0, /*origin=*/nullptr));
  }
  const Message& encoded = read[0];
  const Message& public_api = read[1];
  EXPECT_EQ(encoded.subject, public_api.subject);
  EXPECT_EQ(encoded.data, std::string("p\0q", 3));
  EXPECT_EQ(encoded.data, public_api.data);
  EXPECT_EQ(encoded.trace, public_api.trace);
  EXPECT_EQ(encoded.trace.trace_state(), "k=v");
  EXPECT_EQ(encoded.message_id, public_api.message_id);
  EXPECT_EQ(encoded.sent_at, public_api.sent_at);
  EXPECT_EQ(encoded.deadline, public_api.deadline);
  for (absl::string_view key :
       {"traceparent", "tracestate", "Nats-Msg-Id", "Natsgw-Sent-At-Ns",
        "Natsgw-Timeout-Us", "Tenant", "X-Other", "Nats-Service-Error-Code"}) {
    EXPECT_EQ(encoded.headers.GetAll(key), public_api.headers.GetAll(key))
        << key;
    EXPECT_FALSE(encoded.headers.GetAll(key).empty()) << key;
  }
  EXPECT_EQ(encoded.headers.size(), public_api.headers.size());
  // The size check counts the block the encoded path really writes.
  EXPECT_EQ(
      HeaderBlockBytes(app, &extra, stamp),
      std::string("NATS/1.0\r\n").size() + [&] {
        size_t n = 2;
        for (const HeaderField& f : encoded.headers) {
          n += f.key.size() + 2 + f.value.size() + 2;
        }
        return n;
      }());
}

// A Message read into again takes every field of the new message: nothing
// of a previous, richer one survives.
TEST(NatsMessageTest, ReadingIntoAReusedMessageOverwritesEveryField) {
  Stamp stamp = MakeStamp();
  stamp.timeout = absl::Milliseconds(250);
  Headers app{{"A", "1"}, {"B", "2"}, {"C", "3"}};
  auto rich = BuildNatsMsg("s.rich", "rich payload", app, nullptr, stamp, 0);
  ASSERT_TRUE(rich.ok());
  Message m;
  ReadNatsMsgInto(rich->get(), absl::UnixEpoch(), 1.0, nullptr, m);
  ASSERT_EQ(m.message_id, "MSGID1234567890");
  ASSERT_TRUE(m.deadline.has_value());

  natsMsg* bare = nullptr;
  ASSERT_EQ(natsMsg_Create(&bare, "s.bare", nullptr, nullptr, 0), NATS_OK);
  NatsMsgPtr owned(bare);
  TraceOrigin origin;
  ReadNatsMsgInto(bare, absl::UnixEpoch(), 1.0, &origin, m);
  EXPECT_EQ(origin, TraceOrigin::kMissing);
  EXPECT_EQ(m.subject, "s.bare");
  EXPECT_EQ(m.data, "");
  EXPECT_TRUE(m.headers.empty());
  EXPECT_EQ(m.message_id, "");
  EXPECT_FALSE(m.sent_at.has_value());
  EXPECT_FALSE(m.deadline.has_value());
  EXPECT_TRUE(m.trace_replaced);
  EXPECT_NE(m.trace, stamp.trace);
}

// Threads retiring messages at once: every message is destroyed exactly
// once and no batch overflows (a full batch is taken by the thread that
// filled it, under the lock that filled it).
TEST(NatsMessageTest, ConcurrentRetiresAreAllDestroyed) {
  constexpr int kThreads = 4;
  constexpr int kPerThread = 5000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([] {
      for (int i = 0; i < kPerThread; ++i) {
        natsMsg* msg = nullptr;
        ASSERT_EQ(natsMsg_Create(&msg, "s.retire", nullptr, "x", 1), NATS_OK);
        RetireNatsMsg(msg);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  FlushRetiredNatsMsgs();
}

}  // namespace
}  // namespace natsgw::internal
