// Hostile input on every public entry point, against a real nats-server.
//
// The promise (README.md "Errors", schemas/README.md sections 3 and 4): bad
// input gets a specific status whose message names the rule it broke,
// nothing of it reaches the wire, the connection stays up and keeps working,
// a counter moves, and nothing accepted before it is lost. Each test below
// checks all of that for one entry point, from a table of hostile cases:
//
//   sends      Connection::Publish, Request, RequestAsync, the typed client
//              (RpcChannel), TypedPublisher, StreamPublisher: invalid
//              subjects of every kind, header keys and values with control
//              characters, reserved headers, invalid message IDs, payloads
//              over the server's max_payload, bad timeouts and policies;
//   receivers  Subscribe, Serve, SubscribeTyped, Service, StreamConsumer:
//              invalid patterns, queue groups and options;
//   handlers   replies with hostile headers or sizes;
//   peers      a plain nats.c client (raw_nats_client.h) sending what natsgw
//              never would: forged reserved headers on requests, events,
//              replies and stored messages, invalid trace contexts, hostile
//              budgets, malformed, truncated, deeply nested and oversized
//              FlatBuffers;
//   queues     served endpoints, subscriptions and asynchronous stream
//              publishes flooded beyond their bounds.
//
// "Nothing reaches the wire" is checked with a plain nats.c subscriber on
// '>' (WireTap): it sees everything published on the server.
//
// What the typed layer refuses of its caller's input before the Connection
// sees it (SubscribeTyped's arguments, a typed publish's subject or prebuilt
// buffer, a negative call timeout, an empty builder) is counted in the same
// natsgw_errors_total series, once; so is inbound data it rejects
// (requests, events, replies).
#include <prometheus/registry.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <functional>
#include <future>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gateway_test_fixture.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "harness/capturing_logger.h"
#include "harness/http_client.h"
#include "harness/metric_value.h"
#include "harness/sync_points.h"
#include "natsgw/connection.h"
#include "natsgw/event_topic.h"
#include "natsgw/jetstream.h"
#include "natsgw/rpc_client.h"
#include "natsgw/schemas/echo_natsgw.h"
#include "natsgw/schemas/users_generated.h"
#include "natsgw/service.h"
#include "natsgw/service_error.h"
#include "natsgw/stream_consumer.h"
#include "natsgw/stream_publisher.h"
#include "natsgw/testdata/nested_generated.h"
#include "natsgw/typed_publisher.h"
#include "natsgw/typed_service.h"
#include "natsgw/typed_subscriber.h"
#include "natsgw/wire_headers.h"
#include "nlohmann/json.hpp"
#include "raw_nats_client.h"

namespace natsgw {
namespace {

using ::natsgw::echo::EchoClient;
using ::natsgw::echo::EchoReply;
using ::natsgw::echo::EchoRequest;
using ::natsgw::testdata::Node;
using ::natsgw::testing::Eventually;
using ::natsgw::testing::Gate;
using ::natsgw::testing::GatewayTest;
using ::natsgw::testing::Latch;
using ::natsgw::testing::MetricValue;
using ::natsgw::testing::RawMessage;
using ::natsgw::testing::RawNatsClient;
using ::natsgw::users::UserRegistered;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

// Bounds every wait of the test thread; never reached when things work.
constexpr absl::Duration kWait = absl::Seconds(20);

// The server's max_payload in these tests: small, so that oversized
// payloads are cheap to make.
constexpr int64_t kMaxPayload = 64 * 1024;

// Every hostile payload, subject or header carries this, so that a leak is
// recognisable on the wire tap whatever else happened to it.
constexpr absl::string_view kMarker = "HOSTILE";

// A valid subject nothing subscribes to, for cases whose fault is elsewhere.
constexpr absl::string_view kQuietSubject = "quiet.subject";

std::string BytesOf(const flatbuffers::FlatBufferBuilder& fbb) {
  return std::string(reinterpret_cast<const char*>(fbb.GetBufferPointer()),
                     fbb.GetSize());
}

bool ContainsMarker(absl::string_view text) {
  return absl::StrContains(absl::AsciiStrToLower(text),
                           absl::AsciiStrToLower(kMarker));
}

// An endpoint of a ServiceConfig.
EndpointConfig Endpoint(std::string name, std::string subject,
                        RequestHandler handler) {
  EndpointConfig endpoint;
  endpoint.name = std::move(name);
  endpoint.subject = std::move(subject);
  endpoint.handler = std::move(handler);
  return endpoint;
}

absl::StatusOr<Reply> EmptyReply(const Message&) { return Reply{}; }

StreamPublishOptions WithMessageId(std::string message_id) {
  StreamPublishOptions options;
  options.message_id = std::move(message_id);
  return options;
}

// A worker pool of `workers` threads for at most `max_in_flight` requests.
ServeOptions Pool(int workers, int max_in_flight) {
  ServeOptions options;
  options.workers = workers;
  options.max_in_flight = max_in_flight;
  return options;
}

// ---------------------------------------------------------------------------
// The wire tap, and what was accepted before the hostile input.

// Everything published on the server, seen by a plain nats.c subscriber on
// '>'. Thread-safety: as RawNatsClient (thread-safe).
class WireTap {
 public:
  static std::unique_ptr<WireTap> Start(const std::string& url) {
    absl::StatusOr<std::unique_ptr<RawNatsClient>> raw =
        RawNatsClient::Connect(url);
    EXPECT_TRUE(raw.ok()) << raw.status();
    if (!raw.ok()) return nullptr;
    EXPECT_TRUE((*raw)->Tap(">").ok());
    EXPECT_TRUE((*raw)->Flush().ok());
    return std::unique_ptr<WireTap>(new WireTap(*std::move(raw)));
  }

  // Publishes a sentinel through `conn` (after everything `conn` sent
  // before it, on both of its NATS connections), waits until the tap has it
  // and returns everything tapped so far.
  std::vector<RawMessage> Settle(Connection& conn) {
    const std::string sentinel = absl::StrCat("sentinel.", ++sentinels_);
    EXPECT_TRUE(conn.Flush(kWait).ok());
    EXPECT_TRUE(conn.Publish(sentinel, "sentinel").ok());
    EXPECT_TRUE(conn.Flush(kWait).ok());
    EXPECT_TRUE(Eventually(
        [&] {
          for (const RawMessage& m : raw_->received()) {
            if (m.subject == sentinel) return true;
          }
          return false;
        },
        kWait))
        << "the sentinel " << sentinel << " never reached the tap";
    // A message sent on the other lane (requests) before the sentinel may
    // still be on its way through the server.
    absl::SleepFor(absl::Milliseconds(100));
    return raw_->received();
  }

  // Messages tapped so far that carry the hostile marker: in the subject,
  // the payload or a header. An error reply's description is natsgw's own
  // text, which may quote the offending input (escaped) to name it.
  std::vector<std::string> Leaks(Connection& conn) {
    std::vector<std::string> leaks;
    for (const RawMessage& m : Settle(conn)) {
      bool leaked = ContainsMarker(m.subject) || ContainsMarker(m.data);
      for (const auto& [key, value] : m.headers) {
        leaked |= ContainsMarker(key) ||
                  (key != kServiceErrorHeader && ContainsMarker(value));
      }
      if (leaked) leaks.push_back(absl::CHexEscape(m.subject.substr(0, 80)));
    }
    return leaks;
  }

  // Subjects tapped so far that start with none of `allowed`.
  std::vector<std::string> Unexpected(Connection& conn,
                                      std::vector<std::string> allowed) {
    allowed.push_back("sentinel.");
    std::vector<std::string> out;
    for (const RawMessage& m : Settle(conn)) {
      if (std::none_of(allowed.begin(), allowed.end(),
                       [&](const std::string& prefix) {
                         return absl::StartsWith(m.subject, prefix);
                       })) {
        out.push_back(absl::CHexEscape(m.subject.substr(0, 80)));
      }
    }
    return out;
  }

  std::vector<RawMessage> received() const { return raw_->received(); }

 private:
  explicit WireTap(std::unique_ptr<RawNatsClient> raw) : raw_(std::move(raw)) {}

  std::unique_ptr<RawNatsClient> raw_;
  int sentinels_ = 0;
};

// Messages the connection under test published before the hostile input,
// and a natsgw subscriber (on a connection of its own) that must receive
// every one of them, intact and in order. Thread-safety: the handler runs
// on the subscription's thread; the rest on the test's.
class AcceptedBefore {
 public:
  static constexpr int kCount = 25;

  // Subscribes `observer` to accepted.<tag>.> and publishes kCount messages
  // through `conn`.
  void Start(Connection& observer, Connection& conn, absl::string_view tag) {
    prefix_ = absl::StrCat("accepted.", tag, ".");
    auto sub = observer.Subscribe(absl::StrCat(prefix_, ">"), "",
                                  [this](const Message& m) {
                                    std::lock_guard<std::mutex> lock(mu_);
                                    got_.push_back(m.data);
                                    cv_.notify_all();
                                  });
    ASSERT_TRUE(sub.ok()) << sub.status();
    sub_ = *std::move(sub);
    for (int i = 0; i < kCount; ++i) {
      ASSERT_TRUE(
          conn.Publish(absl::StrCat(prefix_, i), absl::StrCat("accepted-", i))
              .ok());
    }
  }

  // Every message published by Start() arrived, once, in order.
  void ExpectAllDelivered() {
    std::unique_lock<std::mutex> lock(mu_);
    ASSERT_TRUE(cv_.wait_for(lock, absl::ToChronoNanoseconds(kWait),
                             [&] { return got_.size() >= kCount; }))
        << "only " << got_.size() << " of " << kCount
        << " accepted messages arrived";
    std::vector<std::string> expected;
    for (int i = 0; i < kCount; ++i) {
      expected.push_back(absl::StrCat("accepted-", i));
    }
    EXPECT_EQ(got_, expected);
  }

 private:
  std::string prefix_;
  std::unique_ptr<Subscription> sub_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::string> got_ ABSL_GUARDED_BY(mu_);
};

// ---------------------------------------------------------------------------
// The table of hostile sends.

// One hostile input to a send path: what the send is given, and the words
// the status must contain (the rule it breaks).
struct HostileSend {
  HostileSend(std::string what, std::string rule)
      : what(std::move(what)), rule(std::move(rule)) {}

  std::string what;
  // Unset: a valid subject of the path's choosing.
  std::optional<std::string> subject;
  Headers headers;
  std::optional<std::string> message_id;
  // Payload size; the payload is kMarker repeated.
  size_t payload_bytes = kMarker.size();
  std::string rule;
};

HostileSend WithSubject(std::string what, std::string subject,
                        std::string rule) {
  HostileSend c(std::move(what), std::move(rule));
  c.subject = std::move(subject);
  return c;
}

std::string Payload(size_t bytes) {
  std::string out;
  out.reserve(bytes + kMarker.size());
  while (out.size() < bytes) out.append(kMarker.data(), kMarker.size());
  out.resize(bytes);
  return out;
}

// Invalid subjects to send to: every kind of byte and token rule. Each
// contains the marker (when it has any content).
std::vector<HostileSend> HostileSubjects() {
  std::vector<HostileSend> v;
  auto add = [&v](std::string what, std::string subject, std::string rule) {
    v.push_back(
        WithSubject(std::move(what), std::move(subject), std::move(rule)));
  };
  add("empty subject", "", "subject is empty");
  add("space", "HOSTILE.a b", "byte 0x20");
  add("tab", "HOSTILE.a\tb", "byte 0x09");
  add("CR LF protocol injection", "HOSTILE.a\r\nPUB HOSTILE.b 1\r\nx",
      "byte 0x0d");
  add("LF", "HOSTILE.a\nb", "byte 0x0a");
  add("NUL", std::string("HOSTILE.a\0b", 11), "byte 0x00");
  add("DEL", "HOSTILE.a\x7f", "byte 0x7f");
  add("non-ASCII (UTF-8)", "HOSTILE.caf\xc3\xa9", "byte 0xc3");
  add("leading dot", ".HOSTILE", "empty token 1");
  add("trailing dot", "HOSTILE.", "empty token 2");
  add("empty middle token", "HOSTILE..a", "empty token 2");
  add("wildcard *", "HOSTILE.*", "wildcard '*'");
  add("wildcard >", "HOSTILE.>", "wildcard '>'");
  add("wildcard inside a token", "HOSTILE.a*b", "mixes a wildcard");
  add("257 bytes", absl::StrCat("HOSTILE.", std::string(249, 'a')),
      "max_subject_bytes");
  add("1 MiB", absl::StrCat("HOSTILE.", std::string(1 << 20, 'a')),
      "max_subject_bytes");
  return v;
}

// Invalid headers, reserved headers, invalid message IDs and oversized
// payloads, sent to a valid subject.
std::vector<HostileSend> HostileOptions() {
  std::vector<HostileSend> v;
  auto header = [&v](std::string what, std::string key, std::string value,
                     std::string rule) {
    HostileSend c(std::move(what), std::move(rule));
    c.headers.Add(key, value);
    v.push_back(std::move(c));
  };
  header("key with a space", "HOSTILE Key", "v", "RFC 7230");
  header("key with a colon", "HOSTILE:Key", "v", "byte 0x3a");
  header("key with CR LF", "HOSTILE\r\nInjected", "v", "byte 0x0d");
  header("key with NUL", std::string("HOSTILE\0", 8), "v", "byte 0x00");
  header("empty key", "", "HOSTILE", "header key is empty");
  header("key of 129 bytes", absl::StrCat("HOSTILE", std::string(122, 'k')),
         "v", "max_header_key_bytes");
  header("non-ASCII key", "HOSTILE-caf\xc3\xa9", "v", "byte 0xc3");
  header("value with CR LF (header injection)", "X-Evil",
         "HOSTILE\r\nNatsgw-Status: 0", "control byte 0x0d");
  header("value with LF", "X-Evil", "HOSTILE\nx", "control byte 0x0a");
  header("value with NUL", "X-Evil", std::string("HOSTILE\0x", 9),
         "control byte 0x00");
  header("value with ESC (terminal escape)", "X-Evil", "HOSTILE\x1b[31m",
         "control byte 0x1b");
  header("value with DEL", "X-Evil", "HOSTILE\x7f", "control byte 0x7f");
  header("value with a leading space", "X-Evil", " HOSTILE", "whitespace");
  header("value with a trailing tab", "X-Evil", "HOSTILE\t", "whitespace");
  header("value of 4097 bytes", "X-Evil", Payload(4097),
         "max_header_value_bytes");
  {
    HostileSend c("65 headers", "max_header_count");
    for (int i = 0; i < 65; ++i) {
      c.headers.Add(absl::StrFormat("X-H%02d", i), std::string(kMarker));
    }
    v.push_back(std::move(c));
  }
  // natsgw's own headers, in any case: an untrusted caller must not forge a
  // trace, an ID, a deadline, an error or a server status.
  for (const char* key :
       {"traceparent", "TraceParent", "tracestate", "Nats-Msg-Id",
        "nats-msg-id", "Natsgw-Status", "NATSGW-TIMEOUT-US",
        "Natsgw-Sent-At-Ns", "Natsgw-Anything", "Nats-Service-Error",
        "Nats-Service-Error-Code", "Status", "description"}) {
    header(absl::StrCat("reserved header ", key), key, "HOSTILE", "reserved");
  }
  auto id = [&v](std::string what, std::string message_id, std::string rule) {
    HostileSend c(std::move(what), std::move(rule));
    c.message_id = std::move(message_id);
    v.push_back(std::move(c));
  };
  id("empty message ID", "", "message ID is empty");
  id("message ID with a space", "HOSTILE id", "byte 0x20");
  id("message ID with CR LF", "HOSTILE\r\nNatsgw-Status: 0", "byte 0x0d");
  id("message ID with NUL", std::string("HOSTILE\0", 8), "byte 0x00");
  id("message ID of 129 bytes", Payload(129), "the limit is 128");
  id("non-ASCII message ID", "HOSTILE-caf\xc3\xa9", "byte 0xc3");
  HostileSend over("payload over max_payload", "max_payload");
  over.payload_bytes = kMaxPayload + 1;
  v.push_back(std::move(over));
  // The payload alone fits: natsgw's headers push the message over.
  HostileSend with_headers("payload plus headers over max_payload",
                           "max_payload");
  with_headers.payload_bytes = kMaxPayload - 16;
  v.push_back(std::move(with_headers));
  return v;
}

std::vector<HostileSend> AllHostileSends() {
  std::vector<HostileSend> v = HostileSubjects();
  for (HostileSend& c : HostileOptions()) v.push_back(std::move(c));
  return v;
}

// Checks one refusal: INVALID_ARGUMENT (or `code`) naming the rule.
void ExpectRefused(const absl::Status& status, const HostileSend& c,
                   absl::StatusCode code = absl::StatusCode::kInvalidArgument) {
  EXPECT_EQ(status.code(), code) << c.what << ": " << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr(c.rule))
      << c.what << ": " << status;
  // The message quotes hostile input only escaped: it is safe to log.
  EXPECT_EQ(status.message().find_first_of(absl::string_view("\r\n\0", 3)),
            absl::string_view::npos)
      << c.what << ": " << absl::CHexEscape(status.message().substr(0, 200));
}

// ---------------------------------------------------------------------------
// FlatBuffers of natsgw's test-only recursive schema (tests/unit/testdata/
// nested.fbs), which can nest as deep as a hostile peer likes.

// A typed method serving and returning Nodes.
constexpr MethodDescriptor kWalk{.service = "Nodes",
                                 .method = "Walk",
                                 .full_service_name = "natsgw.testdata.Nodes",
                                 .request_type = "natsgw.testdata.Node",
                                 .response_type = "natsgw.testdata.Node",
                                 .file_identifier = "NGTN",
                                 .default_prefix = "nodes",
                                 .schema_file = "nested.fbs"};

constexpr EventTopic<Node> kNodeEvents{.subject = "nodes.events",
                                       .file_identifier = "NGTN",
                                       .type_name = "natsgw.testdata.Node"};

// The limits every typed receiver below verifies Nodes under.
VerifyLimits NodeLimits() {
  return VerifyLimits{
      .max_depth = 16, .max_tables = 1000, .max_size_bytes = 16 * 1024};
}

// A chain of `depth` Nodes, each the child of the previous one.
std::string NodeChain(int depth) {
  flatbuffers::FlatBufferBuilder fbb;
  flatbuffers::Offset<Node> node = testdata::CreateNode(fbb, 0, 0, depth);
  for (int i = depth - 1; i > 0; --i) {
    node = testdata::CreateNode(fbb, node, 0, i);
  }
  fbb.Finish(node, "NGTN");
  return BytesOf(fbb);
}

// A root whose children vector names one leaf `refs` times: small on the
// wire, `refs` tables for the verifier.
std::string NodeDag(int refs) {
  flatbuffers::FlatBufferBuilder fbb;
  flatbuffers::Offset<Node> leaf = testdata::CreateNode(fbb, 0, 0, 7);
  std::vector<flatbuffers::Offset<Node>> children(refs, leaf);
  fbb.Finish(testdata::CreateNode(fbb, 0, fbb.CreateVector(children), 0),
             "NGTN");
  return BytesOf(fbb);
}

std::string NodeNamed(const std::string& name, uint64_t value = 1) {
  flatbuffers::FlatBufferBuilder fbb;
  fbb.Finish(testdata::CreateNodeDirect(fbb, 0, nullptr, value, name.c_str()),
             "NGTN");
  return BytesOf(fbb);
}

struct HostileBuffer {
  std::string what;
  std::string bytes;
  std::string rule;
};

// Buffers a hostile peer sends where a Node is expected. Each breaks the
// named rule of natsgw/verified.h under NodeLimits().
std::vector<HostileBuffer> HostileNodeBuffers() {
  std::vector<HostileBuffer> v;
  v.push_back({"nested 40 deep", NodeChain(40), "(depth limit)"});
  // Deeper than FlatBuffers' own limit (64), where natsgw stops telling a
  // deep buffer from a malformed one: it says it may be either.
  v.push_back({"nested 800 deep", NodeChain(800), "deeper than 64"});
  v.push_back({"2000 references to one table", NodeDag(2000), "table limit"});
  v.push_back(
      {"20 KB over a 16 KiB limit", NodeNamed(Payload(20000)), "size limit"});
  {
    flatbuffers::FlatBufferBuilder fbb;
    fbb.Finish(echo::CreateEchoRequest(fbb, 0, 7), "NGEC");
    v.push_back({"another contract's buffer", BytesOf(fbb), "file identifier"});
  }
  v.push_back({"no FlatBuffer at all", "HOSTILE garbage, not a flatbuffer",
               "file identifier"});
  v.push_back({"empty", "", "malformed"});
  v.push_back({"7 bytes", "HOSTILE", "malformed"});
  {
    std::string root_out_of_range(16, '\0');
    root_out_of_range.replace(0, 4, "\xf0\xff\x00\x00", 4);
    root_out_of_range.replace(4, 4, "NGTN");
    v.push_back(
        {"root offset outside the buffer", root_out_of_range, "malformed"});
  }
  {
    const std::string whole = NodeChain(4);
    v.push_back({"truncated", whole.substr(0, whole.size() / 2), "malformed"});
  }
  {
    // A string whose length field claims almost 4 GiB.
    std::string lying = NodeNamed("HOSTILE-NAME");
    const size_t at = lying.find("HOSTILE-NAME");
    lying.replace(at - 4, 4, "\xf0\xff\xff\xff", 4);
    v.push_back({"string length beyond the buffer", lying, "malformed"});
  }
  return v;
}

// ---------------------------------------------------------------------------
// The fixture.

// A server whose max_payload is kMaxPayload, connections recording into the
// test's registry and logging into logger_. Thread-safety: as any gtest
// fixture, used by the test's thread (logger_ is thread-safe).
class HostileInputTest : public GatewayTest {
 protected:
  testing::NatsServerOptions ServerOptions() const override {
    testing::NatsServerOptions options;
    options.extra_config = absl::StrCat("max_payload: ", kMaxPayload, "\n");
    return options;
  }

  ConnectionOptions Options() override {
    ConnectionOptions options = GatewayTest::Options();
    // Warnings are expected here by the dozen; they are kept for the
    // assertions that read them instead of flooding the test log.
    options.logger = logger_;
    return options;
  }

  // One series of the test's registry; 0 if it does not exist (yet).
  double Metric(const std::string& family,
                const std::map<std::string, std::string>& labels) {
    return MetricValue(*registry_, family, labels).value_or(0);
  }
  double Errors(absl::string_view operation, absl::StatusCode code) {
    return Metric("natsgw_errors_total",
                  {{"operation", std::string(operation)},
                   {"code", absl::StatusCodeToString(code)}});
  }

  // Subscriptions the server holds for all its clients (monitoring /subsz).
  int ServerSubscriptions() {
    absl::StatusOr<testing::HttpResponse> r =
        testing::HttpGet("127.0.0.1", server().monitor_port(), "/subsz");
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok()) return -1;
    return nlohmann::json::parse(r->body).value("num_subscriptions", -1);
  }

  std::unique_ptr<WireTap> Tap() { return WireTap::Start(server().url()); }

  std::unique_ptr<RawNatsClient> Raw() {
    absl::StatusOr<std::unique_ptr<RawNatsClient>> raw =
        RawNatsClient::Connect(server().url());
    EXPECT_TRUE(raw.ok()) << raw.status();
    return raw.ok() ? *std::move(raw) : nullptr;
  }

  // An endpoint on `conn` answering every request to `subject` with its
  // payload.
  std::unique_ptr<Subscription> EchoEndpoint(Connection& conn,
                                             absl::string_view subject) {
    auto sub =
        conn.Serve(subject, "q", [](const Message& m) -> absl::StatusOr<Reply> {
          return Reply{m.data, {}};
        });
    EXPECT_TRUE(sub.ok()) << sub.status();
    return sub.ok() ? *std::move(sub) : nullptr;
  }

  // The connection still does its work: connected, and a request round
  // trip through a fresh endpoint succeeds.
  void ExpectStillWorking(Connection& conn, Connection& other) {
    EXPECT_EQ(conn.state(), ConnectionState::kConnected);
    EXPECT_TRUE(conn.Readiness().ok()) << conn.Readiness();
    const std::string subject = absl::StrCat("still.working.", ++probes_);
    auto endpoint = EchoEndpoint(other, subject);
    absl::StatusOr<Message> reply = conn.Request(subject, "ping", kWait);
    ASSERT_TRUE(reply.ok()) << reply.status();
    EXPECT_EQ(reply->data, "ping");
  }

  std::shared_ptr<testing::CapturingLogger> logger_ =
      std::make_shared<testing::CapturingLogger>();
  int probes_ = 0;
};

// ---------------------------------------------------------------------------
// Sends through the untyped core.

TEST_F(HostileInputTest, PublishRefusesEveryHostileSendBeforeTheWire) {
  auto conn = Connect();
  auto observer = Connect();
  ASSERT_TRUE(conn && observer);
  auto tap = Tap();
  AcceptedBefore accepted;
  accepted.Start(*observer, *conn, "publish");

  const std::vector<HostileSend> cases = AllHostileSends();
  const double before = Errors("publish", absl::StatusCode::kInvalidArgument);
  for (const HostileSend& c : cases) {
    PublishOptions options;
    options.headers = c.headers;
    options.message_id = c.message_id;
    ExpectRefused(conn->Publish(c.subject.value_or(std::string(kQuietSubject)),
                                Payload(c.payload_bytes), options)
                      .status(),
                  c);
  }

  EXPECT_THAT(tap->Unexpected(*conn, {"accepted."}), IsEmpty());
  EXPECT_EQ(Errors("publish", absl::StatusCode::kInvalidArgument) - before,
            static_cast<double>(cases.size()));
  accepted.ExpectAllDelivered();
  ExpectStillWorking(*conn, *observer);
  std::cout << "[ measured ] " << cases.size()
            << " hostile publishes refused\n";
}

TEST_F(HostileInputTest, RequestAndRequestAsyncRefuseEveryHostileSend) {
  auto conn = Connect();
  auto observer = Connect();
  ASSERT_TRUE(conn && observer);
  // Something answers the valid subject: a refused request is not a
  // request that found no responder.
  auto endpoint = EchoEndpoint(*observer, kQuietSubject);
  auto tap = Tap();
  AcceptedBefore accepted;
  accepted.Start(*observer, *conn, "request");

  // Every hostile send, with a valid timeout and policies; then deadlines
  // and policies no request can have.
  struct RequestCase {
    HostileSend send;
    absl::Duration timeout = absl::Seconds(5);
    RequestOptions options = {};
  };
  std::vector<RequestCase> cases;
  for (HostileSend& c : AllHostileSends()) {
    RequestCase r{std::move(c)};
    r.options.headers = r.send.headers;
    r.options.message_id = r.send.message_id;
    cases.push_back(std::move(r));
  }
  for (absl::Duration timeout :
       {absl::ZeroDuration(), absl::Seconds(-1), -absl::InfiniteDuration()}) {
    RequestCase r{
        HostileSend(absl::StrCat("timeout ", absl::FormatDuration(timeout)),
                    "timeout must be positive")};
    r.timeout = timeout;
    cases.push_back(std::move(r));
  }
  {
    RequestCase r{
        HostileSend("retry policy with negative attempts", "max_attempts")};
    r.options.retry.max_attempts = -3;
    cases.push_back(std::move(r));
  }
  {
    RequestCase r{
        HostileSend("hedging policy with negative delay", "hedging.delay")};
    r.options.hedging.delay = absl::Milliseconds(-5);
    cases.push_back(std::move(r));
  }

  const double before = Errors("request", absl::StatusCode::kInvalidArgument);
  std::atomic<int> callbacks{0};
  for (const RequestCase& r : cases) {
    const HostileSend& c = r.send;
    const std::string subject = c.subject.value_or(std::string(kQuietSubject));
    std::optional<SendInfo> sent;
    ExpectRefused(conn->Request(subject, Payload(c.payload_bytes), r.timeout,
                                r.options, &sent)
                      .status(),
                  c);
    EXPECT_FALSE(sent.has_value()) << c.what;
    ExpectRefused(
        conn->RequestAsync(subject, Payload(c.payload_bytes), r.timeout,
                           r.options,
                           [&](absl::StatusOr<Message>) { ++callbacks; })
            .status(),
        c);
  }

  EXPECT_THAT(tap->Unexpected(*conn, {"accepted."}), IsEmpty());
  // A refused RequestAsync never calls back.
  EXPECT_EQ(callbacks.load(), 0);
  EXPECT_EQ(Errors("request", absl::StatusCode::kInvalidArgument) - before,
            2.0 * static_cast<double>(cases.size()));
  accepted.ExpectAllDelivered();
  ExpectStillWorking(*conn, *observer);
}

// Deadlines a caller cannot meet are refused before sending; absurdly long
// ones are honoured as "very long"; hostile budgets from a peer end in a
// defined answer.
TEST_F(HostileInputTest, ExpiredAndAbsurdDeadlinesGetDefinedOutcomes) {
  auto conn = Connect();
  auto observer = Connect();
  ASSERT_TRUE(conn && observer);
  auto js = JetStream::Create(*conn);
  ASSERT_TRUE(js.ok()) << js.status();
  StreamConfig orders;
  orders.name = "ORDERS";
  orders.subjects = {"orders.>"};
  ASSERT_TRUE((*js)->EnsureStream(orders).ok());
  auto publisher = StreamPublisher::Create(**js, {.stream = "ORDERS"});
  ASSERT_TRUE(publisher.ok()) << publisher.status();
  auto echo_client = EchoClient::Create(*conn);
  ASSERT_TRUE(echo_client.ok());
  auto tap = Tap();
  AcceptedBefore accepted;
  accepted.Start(*observer, *conn, "deadlines");

  // A handler that outlives its caller's budget, then tries to call on: its
  // calls inherit a deadline that has passed, and must not be sent.
  std::mutex mu;
  std::vector<absl::Status> inner;
  std::atomic<int> async_callbacks{0};
  auto outer = conn->Serve(
      "outer.Op", "q", [&](const Message& m) -> absl::StatusOr<Reply> {
        if (!m.deadline.has_value()) return absl::InternalError("no deadline");
        absl::SleepFor(*m.deadline - absl::Now() + absl::Milliseconds(20));
        std::vector<absl::Status> got;
        got.push_back(
            conn->Request("HOSTILE.downstream", "HOSTILE", absl::Hours(1))
                .status());
        got.push_back(
            conn->RequestAsync(
                    "HOSTILE.downstream", "HOSTILE", absl::Hours(1), {},
                    [&](absl::StatusOr<Message>) { ++async_callbacks; })
                .status());
        got.push_back(
            echo_client
                ->Echo([](flatbuffers::FlatBufferBuilder& fbb) {
                  const std::string payload(kMarker);
                  return echo::CreateEchoRequest(
                      fbb,
                      fbb.CreateVector(
                          reinterpret_cast<const uint8_t*>(payload.data()),
                          payload.size()),
                      1);
                })
                .status());
        got.push_back(
            (*publisher)->Publish("orders.HOSTILE", "HOSTILE").status());
        std::lock_guard<std::mutex> lock(mu);
        inner = std::move(got);
        return Reply{"done", {}};
      });
  ASSERT_TRUE(outer.ok()) << outer.status();
  auto downstream = EchoEndpoint(*observer, "HOSTILE.downstream");
  auto echo_endpoint = EchoEndpoint(*observer, "echo.Echo");

  const double request_expired_before =
      Errors("request", absl::StatusCode::kDeadlineExceeded);
  const double js_failed_before =
      Metric("natsgw_js_published_total",
             {{"stream", "ORDERS"}, {"result", "failed"}});
  auto raw = Raw();
  absl::StatusOr<RawMessage> done =
      raw->Request("outer.Op", "x", {{"Natsgw-Timeout-Us", "300000"}}, kWait);
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_EQ(done->data, "done");
  {
    std::lock_guard<std::mutex> lock(mu);
    ASSERT_EQ(inner.size(), 4u);
    for (const absl::Status& s : inner) {
      EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded) << s;
    }
    EXPECT_THAT(std::string(inner[0].message()),
                HasSubstr("deadline inherited from the request being handled "
                          "has already passed"));
    EXPECT_THAT(std::string(inner[3].message()),
                HasSubstr("deadline of the request being handled has passed"));
  }
  EXPECT_EQ(async_callbacks.load(), 0);
  // Request, RequestAsync and the typed call; the stream publish is counted
  // as a failed JetStream publish.
  EXPECT_EQ(Errors("request", absl::StatusCode::kDeadlineExceeded) -
                request_expired_before,
            3.0);
  EXPECT_EQ(Metric("natsgw_js_published_total",
                   {{"stream", "ORDERS"}, {"result", "failed"}}) -
                js_failed_before,
            1.0);

  // Absurdly long deadlines are "no hurry", not an overflow: the server
  // sees a deadline years away and answers.
  std::optional<absl::Time> seen;
  auto far = observer->Serve("far.Op", "q",
                             [&](const Message& m) -> absl::StatusOr<Reply> {
                               std::lock_guard<std::mutex> lock(mu);
                               seen = m.deadline;
                               return Reply{"far", {}};
                             });
  ASSERT_TRUE(far.ok());
  for (absl::Duration t :
       {absl::InfiniteDuration(), absl::Hours(24 * 365 * 1000)}) {
    absl::StatusOr<Message> reply = conn->Request("far.Op", "x", t);
    ASSERT_TRUE(reply.ok())
        << absl::FormatDuration(t) << ": " << reply.status();
    std::lock_guard<std::mutex> lock(mu);
    ASSERT_TRUE(seen.has_value());
    EXPECT_GT(*seen, absl::Now() + absl::Hours(24 * 365));
  }
  Latch async_done(1);
  absl::StatusOr<Message> async_reply;
  ASSERT_TRUE(conn->RequestAsync("far.Op", "x", absl::InfiniteDuration(), {},
                                 [&](absl::StatusOr<Message> r) {
                                   async_reply = std::move(r);
                                   async_done.CountDown();
                                 })
                  .ok());
  ASSERT_TRUE(async_done.Wait(kWait));
  EXPECT_TRUE(async_reply.ok()) << async_reply.status();

  // Budgets a peer says are already spent: answered DEADLINE_EXCEEDED
  // without running the handler, and counted.
  std::atomic<int> handled{0};
  auto budget = conn->Serve("budget.Op", "q",
                            [&](const Message&) -> absl::StatusOr<Reply> {
                              ++handled;
                              return Reply{};
                            });
  ASSERT_TRUE(budget.ok());
  for (const char* spent : {"0", "-1", "-9223372036854775808"}) {
    absl::StatusOr<RawMessage> reply =
        raw->Request("budget.Op", "x", {{"Natsgw-Timeout-Us", spent}}, kWait);
    ASSERT_TRUE(reply.ok()) << spent << ": " << reply.status();
    auto status = reply->headers.find("Natsgw-Status");
    ASSERT_NE(status, reply->headers.end()) << spent;
    EXPECT_EQ(
        status->second,
        absl::StrCat(static_cast<int>(absl::StatusCode::kDeadlineExceeded)));
  }
  EXPECT_EQ(handled.load(), 0);
  EXPECT_EQ(Metric("natsgw_server_expired_total", {{"subject", "budget.Op"}}),
            3.0);

  // Nothing the expired handler tried to send left the process.
  EXPECT_THAT(tap->Leaks(*conn), IsEmpty());
  accepted.ExpectAllDelivered();
  ExpectStillWorking(*conn, *observer);
}

// ---------------------------------------------------------------------------
// Receivers: subscriptions, endpoints, services, consumers.

TEST_F(HostileInputTest, SubscribeServeAndSubscribeTypedRefuseHostilePatterns) {
  auto conn = Connect();
  auto observer = Connect();
  ASSERT_TRUE(conn && observer);
  auto tap = Tap();
  AcceptedBefore accepted;
  accepted.Start(*observer, *conn, "subscribe");
  ASSERT_TRUE(conn->Flush(kWait).ok());
  const int subscriptions_before = ServerSubscriptions();

  struct Case {
    std::string what;
    std::string subject;
    std::string queue_group = {};
    SubscribeOptions subscribe = {};
    ServeOptions serve = {};
    std::string rule;
  };
  std::vector<Case> cases;
  auto pattern = [&](std::string what, std::string subject, std::string rule) {
    Case c;
    c.what = std::move(what);
    c.subject = std::move(subject);
    c.rule = std::move(rule);
    cases.push_back(std::move(c));
  };
  pattern("empty pattern", "", "subject is empty");
  pattern("'>' not last", "HOSTILE.>.b", "only allowed as the last token");
  pattern("wildcard inside a token", "HOSTILE.a*", "mixes a wildcard");
  pattern("'>' inside a token", "HOSTILE.>b", "mixes a wildcard");
  pattern("empty token", "HOSTILE..b", "empty token 2");
  pattern("space", "HOSTILE. b", "byte 0x20");
  pattern("CR LF protocol injection", "HOSTILE.a\r\nUNSUB 1", "byte 0x0d");
  pattern("NUL", std::string("HOSTILE.a\0", 10), "byte 0x00");
  pattern("non-ASCII", "HOSTILE.\xe2\x80\xa8", "byte 0xe2");
  pattern("257 bytes", absl::StrCat("HOSTILE.", std::string(249, 'a')),
          "max_subject_bytes");
  auto group = [&](std::string what, std::string queue_group,
                   std::string rule) {
    Case c;
    c.what = std::move(what);
    c.subject = "HOSTILE.queue";
    c.queue_group = std::move(queue_group);
    c.rule = std::move(rule);
    cases.push_back(std::move(c));
  };
  group("queue group with a space", "HOSTILE q", "byte 0x20");
  group("queue group with CR LF", "HOSTILE\r\nPUB a 1", "byte 0x0d");
  group("queue group with '*'", "HOSTILE*", "wildcard character");
  group("queue group with '>'", "HOSTILE>", "wildcard character");
  group("queue group of 257 bytes", Payload(257), "max_subject_bytes");
  group("non-ASCII queue group", "HOSTILE\xc3\xa9", "byte 0xc3");
  {
    Case c;
    c.what = "negative workers";
    c.subject = "HOSTILE.opts";
    c.subscribe.workers = -1;
    c.serve.workers = -1;
    c.rule = "must not be negative";
    cases.push_back(std::move(c));
    c = Case();
    c.what = "negative block timeout";
    c.subject = "HOSTILE.opts";
    c.subscribe.workers = 1;
    c.subscribe.block_timeout = absl::Milliseconds(-1);
    c.serve.workers = 1;
    c.serve.block_timeout = absl::Milliseconds(-1);
    c.rule = "block_timeout";
    cases.push_back(std::move(c));
  }

  const double before = Errors("subscribe", absl::StatusCode::kInvalidArgument);
  for (const Case& c : cases) {
    const HostileSend named(c.what, c.rule);
    ExpectRefused(
        conn->Subscribe(
                c.subject, c.queue_group, [](const Message&) {}, c.subscribe)
            .status(),
        named);
    ExpectRefused(
        conn->Serve(
                c.subject, c.queue_group,
                [](const Message&) -> absl::StatusOr<Reply> { return Reply{}; },
                c.serve)
            .status(),
        named);
    const EventTopic<Node> topic{.subject = c.subject,
                                 .file_identifier = "NGTN"};
    SubscriberOptions typed;
    typed.subscribe = c.subscribe;
    ExpectRefused(SubscribeTyped(
                      *conn, topic, c.queue_group, [](Event<Node>) {}, typed)
                      .status(),
                  named);
  }
  // Empty handlers, and topics whose contract is broken.
  const HostileSend empty("empty handler", "empty");
  ExpectRefused(conn->Subscribe("HOSTILE.ok", "", nullptr).status(), empty);
  ExpectRefused(conn->Serve("HOSTILE.ok", "", nullptr).status(), empty);
  ExpectRefused(SubscribeTyped(*conn, kNodeEvents, "", nullptr).status(),
                empty);
  for (absl::string_view identifier : {"", "NGT", "NGTNX"}) {
    const HostileSend bad_id(absl::StrCat("file identifier '", identifier, "'"),
                             "file identifier");
    const EventTopic<Node> topic{.subject = "nodes.events",
                                 .file_identifier = identifier};
    ExpectRefused(SubscribeTyped(*conn, topic, "", [](Event<Node>) {}).status(),
                  bad_id);
  }
  SubscriberOptions zero_depth;
  zero_depth.verify.max_depth = 0;
  ExpectRefused(SubscribeTyped(
                    *conn, kNodeEvents, "", [](Event<Node>) {}, zero_depth)
                    .status(),
                HostileSend("verify limits", "max_depth"));

  // Every refusal is counted once, by whichever layer made it: Subscribe's,
  // Serve's and SubscribeTyped's for each case, the three empty handlers,
  // the three broken identifiers and the verify limits.
  EXPECT_EQ(Errors("subscribe", absl::StatusCode::kInvalidArgument) - before,
            3.0 * static_cast<double>(cases.size()) + 3 + 3 + 1);
  // None subscribed anything on the server.
  EXPECT_EQ(ServerSubscriptions(), subscriptions_before);
  EXPECT_THAT(tap->Unexpected(*conn, {"accepted."}), IsEmpty());
  accepted.ExpectAllDelivered();
  ExpectStillWorking(*conn, *observer);
}

TEST_F(HostileInputTest, ServiceConfigsBreakingARuleSubscribeNothing) {
  auto conn = Connect();
  auto observer = Connect();
  ASSERT_TRUE(conn && observer);
  auto tap = Tap();
  AcceptedBefore accepted;
  accepted.Start(*observer, *conn, "service");
  ASSERT_TRUE(conn->Flush(kWait).ok());
  const int subscriptions_before = ServerSubscriptions();

  auto valid = [] {
    ServiceConfig config;
    config.name = "orders";
    config.version = "1.0.0";
    config.endpoints.push_back(Endpoint("Op", "orders.Op", EmptyReply));
    return config;
  };
  struct Case {
    std::string what;
    std::function<void(ServiceConfig&)> mutate;
    std::string rule;
  };
  const std::vector<Case> cases = {
      {"service name with a space",
       [](ServiceConfig& c) { c.name = "HOSTILE name"; }, "service name"},
      {"service name with a dot (a subject token)",
       [](ServiceConfig& c) { c.name = "HOSTILE.x"; }, "service name"},
      {"service name of 300 bytes",
       [](ServiceConfig& c) { c.name = std::string(300, 'h'); },
       "too long for its control subjects"},
      {"version that is not SemVer",
       [](ServiceConfig& c) { c.version = "1.0"; }, "SemVer"},
      {"version with CR LF",
       [](ServiceConfig& c) { c.version = "1.0.0\r\nHOSTILE"; }, "SemVer"},
      {"reserved metadata key",
       [](ServiceConfig& c) { c.metadata["_nats.HOSTILE"] = "x"; },
       "reserved for NATS"},
      {"metadata over 128 KiB",
       [](ServiceConfig& c) { c.metadata["HOSTILE"] = Payload(129 * 1024); },
       "128 KiB"},
      {"queue group with a wildcard",
       [](ServiceConfig& c) { c.queue_group = "HOSTILE*"; }, "queue_group"},
      {"negative workers", [](ServiceConfig& c) { c.serve.workers = -1; },
       "serve.workers"},
      {"endpoint name with a space",
       [](ServiceConfig& c) { c.endpoints[0].name = "HOSTILE Op"; },
       "endpoint 0"},
      {"endpoint subject with '>' not last",
       [](ServiceConfig& c) { c.endpoints[0].subject = "HOSTILE.>.x"; },
       "only allowed as the last token"},
      {"endpoint subject with CR LF",
       [](ServiceConfig& c) { c.endpoints[0].subject = "HOSTILE\r\nSUB x 1"; },
       "byte 0x0d"},
      {"endpoint on a Services API control subject",
       [](ServiceConfig& c) { c.endpoints[0].subject = "$SRV.PING"; },
       "reserved for the Services API"},
      {"duplicate endpoint",
       [](ServiceConfig& c) {
         c.endpoints.push_back(
             Endpoint("Again", c.endpoints[0].subject, EmptyReply));
       },
       "duplicates endpoint 0"},
      {"endpoint without a handler",
       [](ServiceConfig& c) { c.endpoints[0].handler = nullptr; }, "handler"},
  };
  const double before = Errors("subscribe", absl::StatusCode::kInvalidArgument);
  for (const Case& c : cases) {
    ServiceConfig config = valid();
    c.mutate(config);
    ExpectRefused(Service::Start(*conn, std::move(config)).status(),
                  HostileSend(c.what, c.rule));
  }
  EXPECT_EQ(Errors("subscribe", absl::StatusCode::kInvalidArgument) - before,
            static_cast<double>(cases.size()));
  EXPECT_EQ(ServerSubscriptions(), subscriptions_before);
  EXPECT_THAT(tap->Unexpected(*conn, {"accepted."}), IsEmpty());
  accepted.ExpectAllDelivered();
  // The valid configuration still starts on the same connection.
  auto service = Service::Start(*conn, valid());
  ASSERT_TRUE(service.ok()) << service.status();
  ExpectStillWorking(*conn, *observer);
}

// ---------------------------------------------------------------------------
// Handlers whose replies break the rules.

TEST_F(HostileInputTest, HandlerRepliesBreakingARuleBecomeInternalErrors) {
  auto server_conn = Connect();
  auto client = Connect();
  ASSERT_TRUE(server_conn && client);
  auto tap = Tap();
  AcceptedBefore accepted;
  accepted.Start(*client, *server_conn, "replies");

  // The request's payload says which hostile reply to return.
  std::vector<HostileSend> cases = HostileOptions();
  // A message ID is not part of a Reply.
  cases.erase(std::remove_if(cases.begin(), cases.end(),
                             [](const HostileSend& c) {
                               return c.message_id.has_value();
                             }),
              cases.end());
  auto endpoint = server_conn->Serve(
      "replies.Op", "q", [&cases](const Message& m) -> absl::StatusOr<Reply> {
        const HostileSend& c = cases.at(std::stoul(m.data));
        return Reply{Payload(c.payload_bytes), c.headers};
      });
  ASSERT_TRUE(endpoint.ok());

  const double before = Errors("serve", absl::StatusCode::kInternal);
  for (size_t i = 0; i < cases.size(); ++i) {
    absl::StatusOr<Message> reply =
        client->Request("replies.Op", absl::StrCat(i), kWait);
    ExpectRefused(reply.status(), cases[i], absl::StatusCode::kInternal);
    EXPECT_THAT(std::string(reply.status().message()),
                HasSubstr("the handler's reply was rejected"))
        << cases[i].what;
  }
  // A typed handler's reply headers are checked the same way.
  class ForgingEcho : public echo::EchoServiceBase {
   public:
    absl::StatusOr<flatbuffers::Offset<EchoReply>> Echo(
        const EchoRequest& request, ServerContext& ctx) override {
      ctx.reply_headers().Add("Natsgw-Status", "0");
      ctx.reply_headers().Add("X-Evil", "HOSTILE\r\nInjected: 1");
      return echo::CreateEchoReply(ctx.builder(), 0, request.tag());
    }
  } forging;
  auto typed = forging.Start(*server_conn);
  ASSERT_TRUE(typed.ok()) << typed.status();
  auto echo_client = EchoClient::Create(*client);
  ASSERT_TRUE(echo_client.ok());
  CallOptions once;
  once.retry = RetryPolicy{};  // one attempt: INTERNAL is not retried anyway
  auto typed_reply = echo_client->Echo(
      [](flatbuffers::FlatBufferBuilder& fbb) {
        return echo::CreateEchoRequest(fbb, 0, 1);
      },
      once);
  EXPECT_EQ(typed_reply.status().code(), absl::StatusCode::kInternal)
      << typed_reply.status();
  EXPECT_THAT(std::string(typed_reply.status().message()),
              HasSubstr("reserved"));

  EXPECT_EQ(Errors("serve", absl::StatusCode::kInternal) - before,
            static_cast<double>(cases.size()) + 1);
  EXPECT_EQ((*endpoint)->stats().num_errors,
            static_cast<int64_t>(cases.size()));
  // On the wire: the requests and natsgw's error replies, never the
  // handler's hostile headers or payloads.
  EXPECT_THAT(tap->Leaks(*server_conn), IsEmpty());
  for (const RawMessage& m : tap->received()) {
    if (!absl::StartsWith(m.subject, "_INBOX.")) continue;
    auto status = m.headers.find("Natsgw-Status");
    ASSERT_NE(status, m.headers.end()) << m.subject;
    EXPECT_EQ(status->second,
              absl::StrCat(static_cast<int>(absl::StatusCode::kInternal)));
    EXPECT_EQ(m.headers.count("X-Evil"), 0u);
    EXPECT_EQ(m.headers.count("Injected"), 0u);
  }
  accepted.ExpectAllDelivered();
  ExpectStillWorking(*server_conn, *client);
  ExpectStillWorking(*client, *server_conn);
}

// ---------------------------------------------------------------------------
// The typed layer's sends.

TEST_F(HostileInputTest, TypedCallsRefuseEveryHostileSend) {
  auto conn = Connect();
  auto observer = Connect();
  ASSERT_TRUE(conn && observer);
  auto echo_endpoint = EchoEndpoint(*observer, "echo.Echo");
  auto tap = Tap();
  AcceptedBefore accepted;
  accepted.Start(*observer, *conn, "typed-call");

  auto client = EchoClient::Create(*conn);
  ASSERT_TRUE(client.ok());
  auto build = [](size_t payload_bytes) {
    return [payload =
                Payload(payload_bytes)](flatbuffers::FlatBufferBuilder& fbb) {
      return echo::CreateEchoRequest(
          fbb,
          fbb.CreateVector(reinterpret_cast<const uint8_t*>(payload.data()),
                           payload.size()),
          1);
    };
  };
  const double before = Errors("request", absl::StatusCode::kInvalidArgument);
  int refused = 0;
  std::atomic<int> async_ok{0};
  for (const HostileSend& c : HostileOptions()) {
    CallOptions options;
    options.headers = c.headers;
    options.message_id = c.message_id;
    ExpectRefused(client->Echo(build(c.payload_bytes), options).status(), c);
    auto future = client->EchoAsync(build(c.payload_bytes), options);
    ASSERT_EQ(future.wait_for(absl::ToChronoNanoseconds(kWait)),
              std::future_status::ready);
    ExpectRefused(future.get().status(), c);
    refused += 2;
  }
  // Subjects come from the method and the channel's prefix.
  for (const HostileSend& c : HostileSubjects()) {
    // An empty prefix means the method's default one.
    if (!c.subject->empty()) {
      ClientOptions prefix;
      prefix.subject_prefix = *c.subject;
      auto prefixed = EchoClient::Create(*conn, prefix);
      ASSERT_TRUE(prefixed.ok()) << c.what;
      ExpectRefused(prefixed->Echo(build(4)).status(), c);
      ++refused;
    }
  }
  // Timeouts and builders only the typed layer sees (and counts).
  CallOptions negative;
  negative.timeout = absl::Milliseconds(-1);
  ExpectRefused(client->Echo(build(4), negative).status(),
                HostileSend("negative call timeout", "negative"));
  auto null_root = [](flatbuffers::FlatBufferBuilder&) {
    return flatbuffers::Offset<EchoRequest>();
  };
  ExpectRefused(client->Echo(null_root).status(),
                HostileSend("builder returning no table", "null"));
  refused += 2;

  EXPECT_EQ(Errors("request", absl::StatusCode::kInvalidArgument) - before,
            static_cast<double>(refused));
  EXPECT_THAT(tap->Leaks(*conn), IsEmpty());
  accepted.ExpectAllDelivered();
  ExpectStillWorking(*conn, *observer);
  auto fine = client->Echo(build(4));
  EXPECT_TRUE(fine.ok()) << fine.status();
}

TEST_F(HostileInputTest, TypedPublisherRefusesEveryHostileSendAndBuffer) {
  auto conn = Connect();
  auto observer = Connect();
  ASSERT_TRUE(conn && observer);
  auto tap = Tap();
  AcceptedBefore accepted;
  accepted.Start(*observer, *conn, "typed-publish");

  // A template topic: the concrete subject is the caller's input.
  constexpr EventTopic<UserRegistered> kRegional{
      .subject = "users.*.events.UserRegistered",
      .file_identifier = "NGUS",
      .type_name = "natsgw.users.UserRegistered"};
  auto publisher = TypedPublisher<UserRegistered>::Create(*conn, kRegional);
  ASSERT_TRUE(publisher.ok()) << publisher.status();
  auto user = [](size_t bytes) {
    return [id = Payload(bytes)](flatbuffers::FlatBufferBuilder& fbb) {
      return users::CreateUserRegisteredDirect(fbb, id.c_str(),
                                               "x@example.com");
    };
  };
  const std::string good_subject = "users.eu.events.UserRegistered";

  const double before = Errors("publish", absl::StatusCode::kInvalidArgument);
  // Every refused publish is counted once, by whichever layer refused it
  // (the typed layer: subjects and buffers; the Connection: the rest).
  // A topic refused at Create is no publish.
  int refused = 0;
  for (const HostileSend& c : AllHostileSends()) {
    PublishOptions options;
    options.headers = c.headers;
    options.message_id = c.message_id;
    HostileSend expected = c;
    // An empty subject means "the topic's own", which is a template.
    if (c.subject && c.subject->empty()) expected.rule = "is a template";
    ExpectRefused(publisher
                      ->PublishTo(c.subject.value_or(good_subject),
                                  user(c.payload_bytes), options)
                      .status(),
                  expected);
    ++refused;
  }
  ExpectRefused(
      publisher->PublishTo("users.HOSTILE.x.events.UserRegistered", user(4))
          .status(),
      HostileSend("subject outside the topic", "does not match"));
  ++refused;
  // Prebuilt buffers are verified first.
  auto nodes = TypedPublisher<Node>::Create(*conn, kNodeEvents,
                                            {.verify = NodeLimits()});
  ASSERT_TRUE(nodes.ok()) << nodes.status();
  for (const HostileBuffer& b : HostileNodeBuffers()) {
    ExpectRefused(nodes->PublishBuffer(b.bytes).status(),
                  HostileSend(b.what, b.rule));
    ++refused;
  }
  // Topics that are no contract at all.
  for (const EventTopic<UserRegistered>& topic :
       {EventTopic<UserRegistered>{.subject = "HOSTILE topic",
       .file_identifier = "NGUS"},
        EventTopic<UserRegistered>{.subject = "users.events",
        .file_identifier = "HOSTILE"}}) {
    EXPECT_EQ(
        TypedPublisher<UserRegistered>::Create(*conn, topic).status().code(),
        absl::StatusCode::kInvalidArgument)
        << topic.subject;
  }

  EXPECT_EQ(Errors("publish", absl::StatusCode::kInvalidArgument) - before,
            static_cast<double>(refused));
  EXPECT_THAT(tap->Unexpected(*conn, {"accepted."}), IsEmpty());
  accepted.ExpectAllDelivered();
  ExpectStillWorking(*conn, *observer);
  EXPECT_TRUE(publisher->PublishTo(good_subject, user(4)).ok());
}

// ---------------------------------------------------------------------------
// JetStream.

// Adds a connection with JetStream and the streams ORDERS (orders.>) and DLQ
// (dlq.>). Thread-safety: as HostileInputTest.
class HostileJetStreamTest : public HostileInputTest {
 protected:
  void SetUp() override {
    HostileInputTest::SetUp();
    if (HasFatalFailure()) return;
    conn_ = Connect();
    ASSERT_NE(conn_, nullptr);
    auto js = JetStream::Create(*conn_);
    ASSERT_TRUE(js.ok()) << js.status();
    js_ = *std::move(js);
    StreamConfig orders;
    orders.name = "ORDERS";
    orders.subjects = {"orders.>"};
    ASSERT_TRUE(js_->EnsureStream(orders).ok());
    StreamConfig dlq;
    dlq.name = "DLQ";
    dlq.subjects = {"dlq.>"};
    ASSERT_TRUE(js_->EnsureStream(dlq).ok());
  }
  void TearDown() override {
    js_.reset();
    conn_.reset();
    HostileInputTest::TearDown();
  }

  double JsFailed() {
    return Metric("natsgw_js_published_total",
                  {{"stream", "ORDERS"}, {"result", "failed"}});
  }

  std::unique_ptr<Connection> conn_;
  std::unique_ptr<JetStream> js_;
};

TEST_F(HostileJetStreamTest, StreamPublisherRefusesEveryHostileSend) {
  auto observer = Connect();
  ASSERT_NE(observer, nullptr);
  auto publisher = StreamPublisher::Create(*js_, {.stream = "ORDERS"});
  ASSERT_TRUE(publisher.ok()) << publisher.status();
  auto tap = Tap();
  AcceptedBefore accepted;
  accepted.Start(*observer, *conn_, "stream");
  // Stored before the hostile input.
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE((*publisher)
                    ->Publish("orders.created", absl::StrCat("order-", i),
                              WithMessageId(absl::StrCat("order-", i)))
                    .ok());
  }

  struct Case {
    HostileSend send;
    StreamPublishOptions extra;
  };
  std::vector<Case> cases;
  for (const HostileSend& c : AllHostileSends()) {
    HostileSend s = c;
    if (s.subject && !s.subject->empty()) {
      s.subject = absl::StrCat("orders.", *s.subject);
      if (c.what == "leading dot") s.rule = "empty token 2";
      if (c.what == "trailing dot" || c.what == "empty middle token") {
        s.rule = "empty token 3";
      }
    }
    cases.push_back({s, {}});
  }
  for (const char* key :
       {"Nats-Expected-Stream", "Nats-Expected-Last-Sequence",
        "Nats-Expected-Last-Subject-Sequence", "Nats-Expected-Last-Msg-Id"}) {
    Case c{HostileSend(absl::StrCat("caller sets ", key),
                       "set by StreamPublisher"),
           {}};
    c.extra.headers.Add(key, "HOSTILE");
    cases.push_back(std::move(c));
  }
  {
    Case c{
        HostileSend("expected last message ID with CR LF", "control byte 0x0d"),
        {}};
    c.extra.expected_last_message_id = "HOSTILE\r\nNats-Expected-Stream: X";
    cases.push_back(std::move(c));
  }
  {
    Case c{HostileSend("caller sets a reply subject", "reply_to must be empty"),
           {}};
    c.extra.reply_to = "_INBOX.hijack";
    cases.push_back(std::move(c));
  }

  const double failed_before = JsFailed();
  for (const Case& c : cases) {
    StreamPublishOptions options = c.extra;
    for (const HeaderField& h : c.send.headers) {
      options.headers.Add(h.key, h.value);
    }
    options.message_id = c.send.message_id;
    const std::string subject =
        c.send.subject.value_or(std::string("orders.created"));
    ExpectRefused((*publisher)
                      ->Publish(subject, Payload(c.send.payload_bytes), options)
                      .status(),
                  c.send);
    std::atomic<int> callbacks{0};
    ExpectRefused(
        (*publisher)
            ->PublishAsync(subject, Payload(c.send.payload_bytes), options,
                           [&](absl::StatusOr<PublishAck>) { ++callbacks; }),
        c.send);
    EXPECT_EQ(callbacks.load(), 0) << c.send.what;
  }
  EXPECT_EQ(JsFailed() - failed_before,
            2.0 * static_cast<double>(cases.size()));
  EXPECT_EQ((*publisher)->pending(), 0u);

  EXPECT_THAT(tap->Leaks(*conn_), IsEmpty());
  auto state = js_->GetStream("ORDERS");
  ASSERT_TRUE(state.ok());
  EXPECT_EQ(state->messages, 10u);
  accepted.ExpectAllDelivered();
  ExpectStillWorking(*conn_, *observer);
  EXPECT_TRUE((*publisher)->Publish("orders.created", "after").ok());
}

TEST_F(HostileJetStreamTest, StreamConsumerRefusesHostileOptions) {
  auto observer = Connect();
  ASSERT_NE(observer, nullptr);
  auto tap = Tap();
  AcceptedBefore accepted;
  accepted.Start(*observer, *conn_, "consumer");
  auto valid = [] {
    StreamConsumerOptions o;
    o.consumer.stream = "ORDERS";
    o.consumer.durable = "refusals";
    o.consumer.ack_wait = absl::Seconds(5);
    o.fetch_wait = absl::Milliseconds(100);
    return o;
  };
  struct Case {
    std::string what;
    std::function<void(StreamConsumerOptions&)> mutate;
    std::string rule;
    absl::StatusCode code = absl::StatusCode::kInvalidArgument;
  };
  const std::vector<Case> cases = {
      {"durable name with a dot",
       [](StreamConsumerOptions& o) { o.consumer.durable = "HOSTILE.x"; },
       "durable"},
      {"durable name with a wildcard",
       [](StreamConsumerOptions& o) { o.consumer.durable = "HOSTILE*"; },
       "durable"},
      {"stream name with CR LF",
       [](StreamConsumerOptions& o) { o.consumer.stream = "HOSTILE\r\nPUB"; },
       "stream"},
      {"filter subject with CR LF",
       [](StreamConsumerOptions& o) {
         o.consumer.filter_subject = "orders.\r\nHOSTILE";
       },
       "byte 0x0d"},
      {"zero workers", [](StreamConsumerOptions& o) { o.workers = 0; },
       "workers"},
      {"negative prefetch", [](StreamConsumerOptions& o) { o.prefetch = -1; },
       "prefetch"},
      {"zero max_deliveries",
       [](StreamConsumerOptions& o) { o.max_deliveries = 0; },
       "max_deliveries"},
      {"fetch_wait of 1ms",
       [](StreamConsumerOptions& o) { o.fetch_wait = absl::Milliseconds(1); },
       "fetch_wait"},
      {"server max_deliver below natsgw's",
       [](StreamConsumerOptions& o) { o.consumer.max_deliver = 2; },
       "max_deliver"},
      {"dead letters to a wildcard",
       [](StreamConsumerOptions& o) { o.dead_letter_subject = "dlq.>"; },
       "wildcard"},
      {"dead letters to a subject with CR LF",
       [](StreamConsumerOptions& o) {
         o.dead_letter_subject = "dlq.\r\nHOSTILE";
       },
       "byte 0x0d"},
      {"idempotency TTL too short",
       [](StreamConsumerOptions& o) {
         o.idempotency =
             std::make_shared<InMemoryIdempotencyStore>(absl::Seconds(1));
       },
       "idempotency store keeps keys for",
       absl::StatusCode::kFailedPrecondition},
  };
  std::atomic<int> handled{0};
  const double invalid_before =
      Errors("subscribe", absl::StatusCode::kInvalidArgument);
  const double precondition_before =
      Errors("subscribe", absl::StatusCode::kFailedPrecondition);
  for (const Case& c : cases) {
    StreamConsumerOptions options = valid();
    c.mutate(options);
    auto consumer = StreamConsumer::Create(
        *js_, options, [&](const Delivery&) -> DeliveryOutcome {
          ++handled;
          return DeliveryOutcome::Ack();
        });
    ExpectRefused(consumer.status(), HostileSend(c.what, c.rule), c.code);
  }
  EXPECT_EQ(
      Errors("subscribe", absl::StatusCode::kInvalidArgument) - invalid_before,
      static_cast<double>(cases.size()) - 1);
  EXPECT_EQ(Errors("subscribe", absl::StatusCode::kFailedPrecondition) -
                precondition_before,
            1.0);
  // No consumer was made on the server.
  EXPECT_EQ(js_->GetConsumer("ORDERS", "refusals").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(handled.load(), 0);
  EXPECT_THAT(tap->Leaks(*conn_), IsEmpty());
  accepted.ExpectAllDelivered();
  ExpectStillWorking(*conn_, *observer);
}

// Messages a plain client stored in the stream, which natsgw's publisher
// would have refused: a forged server status header, an invalid message ID,
// headers that break natsgw's rules. Each is handled (or dead-lettered) once,
// like any other message, and the ones stored before them all arrive.
TEST_F(HostileJetStreamTest, HostileStoredMessagesAreHandledLikeAnyOther) {
  auto publisher = StreamPublisher::Create(*js_, {.stream = "ORDERS"});
  ASSERT_TRUE(publisher.ok()) << publisher.status();
  constexpr int kGood = 10;
  for (int i = 0; i < kGood; ++i) {
    ASSERT_TRUE((*publisher)
                    ->Publish("orders.created", absl::StrCat("good-", i),
                              WithMessageId(absl::StrCat("good-", i)))
                    .ok());
  }
  auto raw = Raw();
  struct Stored {
    std::string what;
    std::multimap<std::string, std::string> headers;
  };
  const std::vector<Stored> stored = {
      {"a forged pull status 404", {{"Status", "404"}}},
      {"a forged pull status 408 with a description",
       {{"Status", "408"}, {"Description", "Request Timeout"}}},
      {"a forged pull status 409", {{"Status", "409"}}},
      {"a forged natsgw error",
       {{"Natsgw-Status", "13"},
        {"Nats-Service-Error", "HOSTILE"},
        {"Nats-Service-Error-Code", "500"}}},
      {"a message ID with spaces", {{"Nats-Msg-Id", "HOSTILE id 1"}}},
      {"a message ID of 300 bytes", {{"Nats-Msg-Id", Payload(300)}}},
      {"header keys one a prefix of the other",
       {{"X-Hostile", "a"}, {"X-Hostile-Longer", "b"}}},
  };
  for (size_t i = 0; i < stored.size(); ++i) {
    // The body says which case it is; handled ones are terminated (a
    // permanent error) so that each also goes through the dead letter path.
    ASSERT_TRUE(raw->Publish("orders.hostile", absl::StrCat("hostile-", i),
                             stored[i].headers)
                    .ok());
  }
  ASSERT_TRUE(raw->Flush().ok());
  ASSERT_TRUE(Eventually(
      [&] {
        auto state = js_->GetStream("ORDERS");
        return state.ok() && state->messages == kGood + stored.size();
      },
      kWait));

  std::mutex mu;
  std::map<std::string, int> handled;
  StreamConsumerOptions options;
  options.consumer.stream = "ORDERS";
  options.consumer.durable = "hostile";
  options.consumer.ack_wait = absl::Seconds(3);
  options.fetch_wait = absl::Milliseconds(100);
  options.max_deliveries = 2;
  options.nak_backoff.initial_backoff = absl::Milliseconds(20);
  options.nak_backoff.max_backoff = absl::Milliseconds(50);
  options.dead_letter_subject = "dlq.hostile";
  options.dead_letter_stream = "DLQ";
  auto consumer = StreamConsumer::Create(
      *js_, options, [&](const Delivery& d) -> DeliveryOutcome {
        {
          std::lock_guard<std::mutex> lock(mu);
          ++handled[d.message().data];
        }
        if (absl::StartsWith(d.message().data, "hostile-")) {
          return DeliveryOutcome::Term(
              absl::InvalidArgumentError("refused by the test"));
        }
        return DeliveryOutcome::Ack();
      });
  ASSERT_TRUE(consumer.ok()) << consumer.status();
  const size_t total = kGood + stored.size();
  EXPECT_TRUE(Eventually(
      [&] {
        std::lock_guard<std::mutex> lock(mu);
        return handled.size() == total;
      },
      kWait));
  // Every dead letter was stored once.
  EXPECT_TRUE(Eventually(
      [&] {
        auto dlq = js_->GetStream("DLQ");
        return dlq.ok() && dlq->messages == stored.size();
      },
      kWait))
      << "dead letters: " << js_->GetStream("DLQ")->messages;
  // Settled: no redelivery follows within an ack wait.
  absl::SleepFor(absl::Milliseconds(500));
  ASSERT_TRUE((*consumer)->Stop(kWait).ok());
  std::lock_guard<std::mutex> lock(mu);
  for (int i = 0; i < kGood; ++i) {
    EXPECT_EQ(handled[absl::StrCat("good-", i)], 1) << i;
  }
  for (size_t i = 0; i < stored.size(); ++i) {
    EXPECT_EQ(handled[absl::StrCat("hostile-", i)], 1) << stored[i].what;
  }
  const StreamConsumerStats stats = (*consumer)->stats();
  EXPECT_EQ(stats.acked, kGood);
  EXPECT_EQ(stats.dead_lettered, static_cast<int64_t>(stored.size()));
  EXPECT_EQ(stats.redelivered, 0);
  EXPECT_EQ(Metric("natsgw_js_dead_lettered_total", {}),
            static_cast<double>(stored.size()));
  EXPECT_EQ(conn_->state(), ConnectionState::kConnected);
}

// ---------------------------------------------------------------------------
// Hostile peers: what a plain NATS client can send that natsgw never would.

// Reserved headers forged by an untrusted publisher or caller are data, not
// instructions: a request is still handled and answered with success, an
// event still delivered, and none of the forged values is echoed.
TEST_F(HostileInputTest, ForgedReservedHeadersFromAPeerAreNotHonoured) {
  auto conn = Connect();
  auto observer = Connect();
  ASSERT_TRUE(conn && observer);
  AcceptedBefore accepted;
  accepted.Start(*observer, *conn, "forged");
  const std::multimap<std::string, std::string> forged = {
      {"Natsgw-Status", "13"},
      {"Nats-Service-Error", "HOSTILE forged error"},
      {"Nats-Service-Error-Code", "500"},
      {"Status", "503"},
      {"Description", "No Responders"},
      {"Natsgw-Sent-At-Ns", "-1"},
      {"Nats-Msg-Id", "HOSTILE id with spaces"},
      {"traceparent", "00-HOSTILE"},
      {"tracestate", "HOSTILE=1"},
  };

  // A request, to an untyped endpoint and to a Services API endpoint.
  std::mutex mu;
  std::vector<Message> requests;
  auto endpoint = conn->Serve("forged.Op", "q",
                              [&](const Message& m) -> absl::StatusOr<Reply> {
                                std::lock_guard<std::mutex> lock(mu);
                                requests.push_back(m);
                                return Reply{"handled", {}};
                              });
  ASSERT_TRUE(endpoint.ok());
  ServiceConfig config;
  config.name = "forged";
  config.version = "1.0.0";
  config.endpoints.push_back(Endpoint(
      "Svc", "forged.Svc", [](const Message&) -> absl::StatusOr<Reply> {
        return Reply{"handled", {}};
      }));
  auto service = Service::Start(*conn, std::move(config));
  ASSERT_TRUE(service.ok()) << service.status();
  auto raw = Raw();
  const double replaced_before =
      Metric("natsgw_trace_context_replaced_total", {{"reason", "invalid"}});
  for (const char* subject : {"forged.Op", "forged.Svc"}) {
    absl::StatusOr<RawMessage> reply =
        raw->Request(subject, "payload", forged, kWait);
    ASSERT_TRUE(reply.ok()) << subject << ": " << reply.status();
    EXPECT_EQ(reply->data, "handled") << subject;
    for (const char* key :
         {"Natsgw-Status", "Nats-Service-Error", "Nats-Service-Error-Code",
          "Status", "tracestate"}) {
      EXPECT_EQ(reply->headers.count(key), 0u) << subject << " " << key;
    }
    for (const auto& [key, value] : reply->headers) {
      EXPECT_FALSE(ContainsMarker(value)) << subject << " " << key;
    }
  }
  {
    std::lock_guard<std::mutex> lock(mu);
    ASSERT_EQ(requests.size(), 1u);
    const Message& m = requests[0];
    // The forged values are visible as what they are, and interpreted as
    // nothing: no send time, a trace of natsgw's own.
    EXPECT_EQ(m.headers.Get("Natsgw-Status"), "13");
    EXPECT_FALSE(m.sent_at.has_value());
    EXPECT_TRUE(m.trace_replaced);
    EXPECT_EQ(m.message_id, "HOSTILE id with spaces");
  }
  EXPECT_EQ((*service)->stats()[0].num_errors, 0);

  // An event, to an untyped and a typed subscriber.
  Latch events(2);
  auto sub = observer->Subscribe("forged.event", "", [&](const Message& m) {
    EXPECT_EQ(m.data, "event");
    events.CountDown();
  });
  ASSERT_TRUE(sub.ok());
  auto typed = SubscribeTyped(*observer, kNodeEvents, "", [&](Event<Node> e) {
    EXPECT_EQ(e->value(), 42u);
    EXPECT_TRUE(e.trace_replaced);
    events.CountDown();
  });
  ASSERT_TRUE(typed.ok()) << typed.status();
  ASSERT_TRUE(raw->Publish("forged.event", "event", forged).ok());
  ASSERT_TRUE(raw->Publish("nodes.events", NodeNamed("n", 42), forged).ok());
  ASSERT_TRUE(events.Wait(kWait));
  // Two requests and two events came with an invalid traceparent.
  EXPECT_EQ(
      Metric("natsgw_trace_context_replaced_total", {{"reason", "invalid"}}) -
          replaced_before,
      4.0);
  EXPECT_EQ(
      Metric("natsgw_messages_invalid_total", {{"subject", "nodes.events"}}),
      0.0);

  // A payload over max_payload never leaves a well-behaved client, so it
  // cannot reach natsgw; natsgw's connections are not disturbed.
  EXPECT_FALSE(raw->Publish("forged.event", Payload(kMaxPayload + 1), {}).ok());
  accepted.ExpectAllDelivered();
  ExpectStillWorking(*conn, *observer);
}

// Replies from whoever answers are untrusted too: every forged or garbled
// status ends the call with a defined code, counted, and the caller's
// connection keeps working.
TEST_F(HostileInputTest, HostileRepliesFromAPeerGetDefinedStatuses) {
  auto conn = Connect();
  auto observer = Connect();
  ASSERT_TRUE(conn && observer);
  AcceptedBefore accepted;
  accepted.Start(*observer, *conn, "replies-from-peer");
  struct Case {
    std::string what;
    std::string data;
    std::multimap<std::string, std::string> headers;
    absl::StatusCode code;
    std::string says;
  };
  const std::vector<Case> cases = {
      {"Natsgw-Status 0 (OK) on an error",
       "",
       {{"Natsgw-Status", "0"}, {"Nats-Service-Error", "HOSTILE"}},
       absl::StatusCode::kUnknown,
       "HOSTILE"},
      {"Natsgw-Status out of range",
       "",
       {{"Natsgw-Status", "17"}},
       absl::StatusCode::kUnknown,
       ""},
      {"negative Natsgw-Status",
       "",
       {{"Natsgw-Status", "-3"}, {"Nats-Service-Error-Code", "404"}},
       absl::StatusCode::kNotFound,
       "service error 404"},
      {"Natsgw-Status not a number",
       "",
       {{"Natsgw-Status", "HOSTILE"}},
       absl::StatusCode::kUnknown,
       ""},
      {"Natsgw-Status beyond int",
       "",
       {{"Natsgw-Status", "99999999999999999999"}},
       absl::StatusCode::kUnknown,
       ""},
      {"service error code out of range",
       "",
       {{"Nats-Service-Error-Code", "999"}, {"Nats-Service-Error", "HOSTILE"}},
       absl::StatusCode::kUnknown,
       "HOSTILE"},
      {"error headers on a non-empty body",
       "HOSTILE body",
       {{"Natsgw-Status", "7"}, {"Nats-Service-Error", "denied"}},
       absl::StatusCode::kPermissionDenied,
       "denied"},
      {"a 60 KB error message",
       "",
       {{"Natsgw-Status", "9"}, {"Nats-Service-Error", Payload(60000)}},
       absl::StatusCode::kFailedPrecondition,
       "HOSTILE"},
      {"a forged no-responders status",
       "",
       {{"Status", "503"}},
       absl::StatusCode::kUnavailable,
       "no responders"},
  };
  std::vector<std::unique_ptr<RawNatsClient>> rogues;
  std::map<absl::StatusCode, double> before;
  std::map<absl::StatusCode, double> expected;
  for (size_t i = 0; i < cases.size(); ++i) {
    rogues.push_back(Raw());
    ASSERT_TRUE(rogues.back()
                    ->Respond(absl::StrCat("rogue.", i), cases[i].data,
                              cases[i].headers)
                    .ok());
    ASSERT_TRUE(rogues.back()->Flush().ok());
    before[cases[i].code] = Errors("request", cases[i].code);
    expected[cases[i].code] += 2;
  }
  for (size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    const std::string subject = absl::StrCat("rogue.", i);
    absl::StatusOr<Message> reply = conn->Request(subject, "x", kWait);
    EXPECT_EQ(reply.status().code(), c.code)
        << c.what << ": " << reply.status();
    EXPECT_THAT(std::string(reply.status().message()), HasSubstr(c.says))
        << c.what;
    Latch done(1);
    absl::Status async_status;
    ASSERT_TRUE(conn->RequestAsync(subject, "x", kWait, {},
                                   [&](absl::StatusOr<Message> r) {
                                     async_status = r.status();
                                     done.CountDown();
                                   })
                    .ok());
    ASSERT_TRUE(done.Wait(kWait));
    EXPECT_EQ(async_status.code(), c.code) << c.what;
  }
  for (const auto& [code, n] : expected) {
    EXPECT_EQ(Errors("request", code) - before[code], n)
        << absl::StatusCodeToString(code);
  }
  accepted.ExpectAllDelivered();
  ExpectStillWorking(*conn, *observer);
}

// Every traceparent W3C calls invalid is replaced by a new trace, counted,
// and never forwarded, nor is the tracestate that came with it.
TEST_F(HostileInputTest, InvalidTraceContextsFromAPeerAreReplaced) {
  auto conn = Connect();
  auto observer = Connect();
  ASSERT_TRUE(conn && observer);
  auto tap = Tap();
  AcceptedBefore accepted;
  accepted.Start(*observer, *conn, "trace");
  // The subscriber forwards each event: what it forwards shows which trace
  // it continued.
  auto forwarder = conn->Subscribe("trace.in", "", [&](const Message& m) {
    EXPECT_TRUE(conn->Publish("trace.out", m.data).ok());
  });
  ASSERT_TRUE(forwarder.ok());
  const std::string good_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
  const std::string good_span = "00f067aa0ba902b7";
  const std::vector<std::pair<std::string, std::string>> invalid = {
      {"upper-case hex", absl::StrCat("00-", absl::AsciiStrToUpper(good_trace),
                                      "-", good_span, "-01")},
      {"version ff", absl::StrCat("ff-", good_trace, "-", good_span, "-01")},
      {"all-zero trace ID",
       absl::StrCat("00-", std::string(32, '0'), "-", good_span, "-01")},
      {"all-zero parent ID",
       absl::StrCat("00-", good_trace, "-", std::string(16, '0'), "-01")},
      {"too short", absl::StrCat("00-", good_trace, "-", good_span, "-1")},
      {"wrong separators",
       absl::StrCat("00_", good_trace, "_", good_span, "_01")},
      {"version 00 with extra fields",
       absl::StrCat("00-", good_trace, "-", good_span, "-01-HOSTILE")},
      {"non-hex trace ID",
       absl::StrCat("00-", std::string(31, 'a'), "g-", good_span, "-01")},
      {"8 KB of garbage", Payload(8000)},
  };
  const double invalid_before =
      Metric("natsgw_trace_context_replaced_total", {{"reason", "invalid"}});
  auto raw = Raw();
  for (size_t i = 0; i < invalid.size(); ++i) {
    ASSERT_TRUE(raw->Publish("trace.in", absl::StrCat(i),
                             {{"traceparent", invalid[i].second},
                              {"tracestate", "HOSTILE=1"}})
                    .ok());
  }
  // A valid traceparent with a hostile tracestate: the trace continues, the
  // state is dropped.
  const std::vector<std::string> bad_states = {Payload(600), "HOSTILE=\x01\x02",
                                               "HOSTILE=caf\xc3\xa9"};
  for (size_t i = 0; i < bad_states.size(); ++i) {
    ASSERT_TRUE(
        raw->Publish("trace.in", absl::StrCat("state-", i),
                     {{"traceparent",
                       absl::StrCat("00-", good_trace, "-", good_span, "-01")},
                      {"tracestate", bad_states[i]}})
            .ok());
  }
  ASSERT_TRUE(raw->Flush().ok());
  const size_t total = invalid.size() + bad_states.size();
  ASSERT_TRUE(Eventually(
      [&] {
        size_t out = 0;
        for (const RawMessage& m : tap->received()) {
          out += m.subject == "trace.out";
        }
        return out == total;
      },
      kWait));
  for (const RawMessage& m : tap->received()) {
    if (m.subject != "trace.out") continue;
    auto tp = m.headers.find("traceparent");
    ASSERT_NE(tp, m.headers.end()) << m.data;
    absl::StatusOr<TraceContext> parsed = TraceContext::Parse(tp->second);
    ASSERT_TRUE(parsed.ok()) << m.data << ": " << tp->second;
    EXPECT_EQ(m.headers.count("tracestate"), 0u) << m.data;
    if (absl::StartsWith(m.data, "state-")) {
      EXPECT_EQ(parsed->TraceIdHex(), good_trace) << m.data;
    } else {
      EXPECT_NE(parsed->TraceIdHex(), good_trace) << m.data;
    }
  }
  EXPECT_EQ(
      Metric("natsgw_trace_context_replaced_total", {{"reason", "invalid"}}) -
          invalid_before,
      static_cast<double>(invalid.size()));
  // Only what natsgw itself published carries on: the forwarded events.
  for (const RawMessage& m : tap->received()) {
    if (m.subject == "trace.out") {
      for (const auto& [key, value] : m.headers) {
        EXPECT_FALSE(ContainsMarker(value)) << key;
      }
    }
  }
  accepted.ExpectAllDelivered();
  ExpectStillWorking(*conn, *observer);
}

// Malformed, truncated, hostile, deeply nested and oversized FlatBuffers
// from a peer never reach a typed handler or caller, on any of the three
// typed receive paths; each names its rule and is counted.
TEST_F(HostileInputTest, HostileFlatBuffersNeverReachTypedCode) {
  auto conn = Connect();
  auto observer = Connect();
  ASSERT_TRUE(conn && observer);
  AcceptedBefore accepted;
  accepted.Start(*observer, *conn, "flatbuffers");
  const std::vector<HostileBuffer> buffers = HostileNodeBuffers();
  auto raw = Raw();

  // 1. A typed endpoint: the request is refused with INVALID_ARGUMENT.
  std::atomic<int> handled{0};
  TypedServiceOptions typed;
  typed.verify = NodeLimits();
  ServiceConfig config;
  config.name = "nodes";
  config.version = "1.0.0";
  config.endpoints.push_back(MakeTypedEndpoint<Node, Node>(
      kWalk,
      [&](const Node& request,
          ServerContext& ctx) -> absl::StatusOr<flatbuffers::Offset<Node>> {
        ++handled;
        return testdata::CreateNode(ctx.builder(), 0, 0, request.value() + 1);
      },
      typed));
  auto service = Service::Start(*conn, std::move(config));
  ASSERT_TRUE(service.ok()) << service.status();
  const double serve_before =
      Errors("serve", absl::StatusCode::kInvalidArgument);
  for (const HostileBuffer& b : buffers) {
    absl::StatusOr<RawMessage> reply =
        raw->Request("nodes.Walk", b.bytes, {}, kWait);
    ASSERT_TRUE(reply.ok()) << b.what << ": " << reply.status();
    EXPECT_TRUE(reply->data.empty()) << b.what;
    auto status = reply->headers.find("Natsgw-Status");
    ASSERT_NE(status, reply->headers.end()) << b.what;
    EXPECT_EQ(
        status->second,
        absl::StrCat(static_cast<int>(absl::StatusCode::kInvalidArgument)))
        << b.what;
    EXPECT_THAT(reply->headers.find("Nats-Service-Error")->second,
                HasSubstr(b.rule))
        << b.what;
  }
  EXPECT_EQ(handled.load(), 0);
  EXPECT_EQ(Errors("serve", absl::StatusCode::kInvalidArgument) - serve_before,
            static_cast<double>(buffers.size()));
  EXPECT_EQ((*service)->stats()[0].num_errors,
            static_cast<int64_t>(buffers.size()));
  // The endpoint still serves valid requests.
  ClientOptions client_options;
  client_options.verify = NodeLimits();
  auto channel = RpcChannel::Create(*conn, client_options);
  ASSERT_TRUE(channel.ok()) << channel.status();
  auto walked =
      channel->Call<Node, Node>(kWalk, [](flatbuffers::FlatBufferBuilder& fbb) {
        return testdata::CreateNode(fbb, 0, 0, 41);
      });
  ASSERT_TRUE(walked.ok()) << walked.status();
  EXPECT_EQ((*walked)->value(), 42u);
  EXPECT_EQ(handled.load(), 1);

  // 2. A typed subscription: dropped before the handler and counted.
  std::atomic<int> delivered{0};
  Latch valid_event(1);
  SubscriberOptions subscriber;
  subscriber.verify = NodeLimits();
  auto sub = SubscribeTyped(
      *observer, kNodeEvents, "",
      [&](Event<Node> e) {
        ++delivered;
        if (e->value() == 99) valid_event.CountDown();
      },
      subscriber);
  ASSERT_TRUE(sub.ok()) << sub.status();
  for (const HostileBuffer& b : buffers) {
    ASSERT_TRUE(raw->Publish("nodes.events", b.bytes, {}).ok()) << b.what;
  }
  ASSERT_TRUE(raw->Publish("nodes.events", NodeNamed("ok", 99), {}).ok());
  ASSERT_TRUE(valid_event.Wait(kWait));
  EXPECT_EQ(delivered.load(), 1);
  EXPECT_EQ(
      Metric("natsgw_messages_invalid_total", {{"subject", "nodes.events"}}),
      static_cast<double>(buffers.size()));
  EXPECT_FALSE(
      logger_->Matching("dropped a message on 'nodes.events'").empty());

  // 3. A typed caller: a hostile responder's reply is refused.
  ASSERT_TRUE((*service)->Drain(kWait).ok());
  const double request_before =
      Errors("request", absl::StatusCode::kInvalidArgument);
  for (size_t i = 0; i < buffers.size(); ++i) {
    auto rogue = Raw();
    ASSERT_TRUE(rogue->Respond("nodes.Walk", buffers[i].bytes, {}).ok());
    ASSERT_TRUE(rogue->Flush().ok());
    auto reply = channel->Call<Node, Node>(
        kWalk, [](flatbuffers::FlatBufferBuilder& fbb) {
          return testdata::CreateNode(fbb, 0, 0, 1);
        });
    EXPECT_EQ(reply.status().code(), absl::StatusCode::kInvalidArgument)
        << buffers[i].what << ": " << reply.status();
    EXPECT_THAT(std::string(reply.status().message()),
                HasSubstr("reply of natsgw.testdata.Nodes.Walk is not a valid "
                          "natsgw.testdata.Node"))
        << buffers[i].what;
    EXPECT_THAT(std::string(reply.status().message()),
                HasSubstr(buffers[i].rule))
        << buffers[i].what;
  }
  EXPECT_EQ(
      Errors("request", absl::StatusCode::kInvalidArgument) - request_before,
      static_cast<double>(buffers.size()));
  accepted.ExpectAllDelivered();
  ExpectStillWorking(*conn, *observer);
}

// ---------------------------------------------------------------------------
// Full queues.

// A worker pool flooded far beyond max_in_flight: the overflow is answered
// RESOURCE_EXHAUSTED at once (while the accepted requests are still
// blocked), counted, and every accepted request is handled and answered.
TEST_F(HostileInputTest, FloodedEndpointShedsPromptlyAndFinishesAcceptedWork) {
  auto server_conn = Connect();
  auto client = Connect();
  ASSERT_TRUE(server_conn && client);
  Gate gate;
  std::atomic<int> handled{0};
  constexpr int kWorkers = 2;
  constexpr int kInFlight = 4;
  auto endpoint = server_conn->Serve(
      "flood.Op", "q",
      [&](const Message& m) -> absl::StatusOr<Reply> {
        gate.Wait(kWait);
        ++handled;
        return Reply{m.data, {}};
      },
      Pool(kWorkers, kInFlight));
  ASSERT_TRUE(endpoint.ok());

  constexpr int kFlood = 200;
  std::mutex mu;
  std::vector<std::string> ok_replies;
  int shed = 0, other = 0;
  Latch shed_all(kFlood - kInFlight);
  Latch all(kFlood);
  const absl::Time start = absl::Now();
  absl::Duration last_shed_after;
  for (int i = 0; i < kFlood; ++i) {
    ASSERT_TRUE(client
                    ->RequestAsync(
                        "flood.Op", absl::StrCat("req-", i), kWait, {},
                        [&, i](absl::StatusOr<Message> r) {
                          {
                            std::lock_guard<std::mutex> lock(mu);
                            if (r.ok()) {
                              ok_replies.push_back(r->data);
                            } else if (r.status().code() ==
                                       absl::StatusCode::kResourceExhausted) {
                              ++shed;
                              last_shed_after = absl::Now() - start;
                              EXPECT_THAT(std::string(r.status().message()),
                                          HasSubstr("overloaded"));
                            } else {
                              ++other;
                              ADD_FAILURE() << i << ": " << r.status();
                            }
                          }
                          if (!r.ok()) shed_all.CountDown();
                          all.CountDown();
                        })
                    .ok());
  }
  // The overflow is answered while the accepted requests are still held:
  // promptly, not when their handlers finish.
  ASSERT_TRUE(shed_all.Wait(kWait));
  EXPECT_FALSE(gate.is_open());
  EXPECT_EQ(handled.load(), 0);
  gate.Open();
  ASSERT_TRUE(all.Wait(kWait));
  std::lock_guard<std::mutex> lock(mu);
  EXPECT_EQ(shed, kFlood - kInFlight);
  EXPECT_EQ(other, 0);
  EXPECT_EQ(ok_replies.size(), static_cast<size_t>(kInFlight));
  EXPECT_EQ(handled.load(), kInFlight);
  EXPECT_EQ(Metric("natsgw_server_shed_total", {{"subject", "flood.Op"}}),
            kFlood - kInFlight);
  EXPECT_EQ(Metric("natsgw_task_queue_tasks_total",
                   {{"queue", "flood.Op"}, {"outcome", "rejected"}}),
            kFlood - kInFlight);
  // A worker counts its task completed once the task (which sends the
  // reply) has returned: shortly after the caller has the reply.
  EXPECT_TRUE(Eventually(
      [&] {
        return Metric("natsgw_task_queue_tasks_total",
                      {{"queue", "flood.Op"}, {"outcome", "completed"}}) ==
               kInFlight;
      },
      kWait));
  EXPECT_EQ((*endpoint)->stats().shed, kFlood - kInFlight);
  std::cout << "[ measured ] " << kFlood - kInFlight
            << " shed replies, the last "
            << absl::FormatDuration(last_shed_after)
            << " after the first request\n";
  ExpectStillWorking(*client, *server_conn);
}

// A subscription's task queue flooded beyond capacity with kReject: the
// overflow is discarded at once and counted (RESOURCE_EXHAUSTED), and every
// message accepted into the queue is handled.
TEST_F(HostileInputTest, FloodedSubscriptionQueueCountsOverflowKeepsAccepted) {
  auto conn = Connect();
  auto publisher = Connect();
  ASSERT_TRUE(conn && publisher);
  Gate gate;
  std::mutex mu;
  std::vector<std::string> handled;
  constexpr size_t kCapacity = 3;
  SubscribeOptions bounded;
  bounded.workers = 1;
  bounded.queue_capacity = kCapacity;
  bounded.overflow = OverflowPolicy::kReject;
  auto sub = conn->Subscribe(
      "flood.events", "",
      [&](const Message& m) {
        gate.Wait(kWait);
        std::lock_guard<std::mutex> lock(mu);
        handled.push_back(m.data);
      },
      bounded);
  ASSERT_TRUE(sub.ok());
  constexpr int kFlood = 100;
  for (int i = 0; i < kFlood; ++i) {
    ASSERT_TRUE(publisher->Publish("flood.events", absl::StrCat(i)).ok());
  }
  ASSERT_TRUE(publisher->Flush(kWait).ok());
  // One running, kCapacity waiting, the rest discarded while the handler is
  // still blocked.
  const int64_t overflow = kFlood - 1 - static_cast<int64_t>(kCapacity);
  ASSERT_TRUE(Eventually([&] { return (*sub)->dropped() == overflow; }, kWait))
      << (*sub)->dropped();
  EXPECT_EQ(Errors("subscribe", absl::StatusCode::kResourceExhausted),
            static_cast<double>(overflow));
  EXPECT_EQ(Metric("natsgw_task_queue_tasks_total",
                   {{"queue", "flood.events"}, {"outcome", "rejected"}}),
            static_cast<double>(overflow));
  gate.Open();
  ASSERT_TRUE(Eventually(
      [&] {
        std::lock_guard<std::mutex> lock(mu);
        return handled.size() == kCapacity + 1;
      },
      kWait));
  {
    std::lock_guard<std::mutex> lock(mu);
    // The first arrivals were the ones accepted, and all ran.
    EXPECT_EQ(handled, (std::vector<std::string>{"0", "1", "2", "3"}));
  }
  EXPECT_FALSE(logger_->Matching("flood.events").empty());
  ExpectStillWorking(*conn, *publisher);
}

// Asynchronous stream publishes beyond max_pending wait pending_wait, then
// are refused RESOURCE_EXHAUSTED and counted; every accepted one completes.
TEST_F(HostileJetStreamTest, StreamPublisherBeyondMaxPendingIsRefused) {
  // A responder that holds the acks: publishes stay pending.
  Gate gate;
  auto slow_acks = conn_->Serve(
      "held.acks", "",
      [&](const Message&) -> absl::StatusOr<Reply> {
        gate.Wait(kWait);
        return Reply{R"({"stream":"ORDERS","seq":1})", {}};
      },
      Pool(4, 8));
  ASSERT_TRUE(slow_acks.ok());
  auto publisher =
      StreamPublisher::Create(*js_, {.stream = "ORDERS",
                                     .attempt_timeout = absl::Seconds(10),
                                     .retry = {.max_attempts = 1},
                                     .max_pending = 2,
                                     .pending_wait = absl::Milliseconds(50)});
  ASSERT_TRUE(publisher.ok()) << publisher.status();
  Latch acked(2);
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE((*publisher)
                    ->PublishAsync("held.acks", "x", {},
                                   [&](absl::StatusOr<PublishAck> ack) {
                                     EXPECT_TRUE(ack.ok()) << ack.status();
                                     acked.CountDown();
                                   })
                    .ok());
  }
  const double failed_before = JsFailed();
  const absl::Time start = absl::Now();
  absl::Status third = (*publisher)
                           ->PublishAsync("held.acks", "HOSTILE", {},
                                          [](absl::StatusOr<PublishAck>) {
                                            ADD_FAILURE() << "called back";
                                          });
  const absl::Duration refused_after = absl::Now() - start;
  EXPECT_EQ(third.code(), absl::StatusCode::kResourceExhausted) << third;
  EXPECT_THAT(std::string(third.message()), HasSubstr("max_pending"));
  EXPECT_LT(refused_after, absl::Seconds(5));
  EXPECT_EQ(JsFailed() - failed_before, 1.0);
  gate.Open();
  ASSERT_TRUE(acked.Wait(kWait));
  EXPECT_TRUE((*publisher)->WaitForAcks(kWait).ok());
  std::cout << "[ measured ] refused after "
            << absl::FormatDuration(refused_after) << " (pending_wait 50ms)\n";
  EXPECT_EQ(conn_->state(), ConnectionState::kConnected);
}

}  // namespace
}  // namespace natsgw
