// EdgeServer in-process against a real nats-server, spoken to over raw HTTP
// sockets: its metrics agree with monitoring/METRICS.md (the natsgw-edge
// section) and pass promtool's lint; a client that reads too slowly loses
// messages only as counted, reported drops; Drain waits for calls in
// progress, ends event streams and refuses new work; the option checks; and
// hostile request lines. Also prints the latency of a call through the edge
// next to the same call made directly.
#include "edge_server.h"

#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "harness/socket.h"
#include "harness/subprocess.h"
#include "integration/gateway_test_fixture.h"
#include "natsgw/jetstream.h"
#include "natsgw/schemas/echo_natsgw.h"
#include "natsgw/stream_config.h"

#ifndef NATSGW_SOURCE_DIR
#error "NATSGW_SOURCE_DIR must be defined (the checkout's absolute path)"
#endif

namespace natsgw::edge {
namespace {

using ::testing::HasSubstr;
namespace net = ::natsgw::testing::internal;

constexpr char kToken[] = "tok-edge-server-test-0123456789";

struct HttpReply {
  int status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
  std::string raw;
};

HttpReply Parse(const std::string& raw) {
  HttpReply r;
  r.raw = raw;
  const size_t end = raw.find("\r\n\r\n");
  if (end == std::string::npos) return r;
  std::vector<std::string> lines = absl::StrSplit(raw.substr(0, end), "\r\n");
  if (lines.empty()) return r;
  std::vector<std::string> status_line = absl::StrSplit(lines[0], ' ');
  if (status_line.size() >= 2)
    (void)absl::SimpleAtoi(status_line[1], &r.status);
  for (size_t i = 1; i < lines.size(); ++i) {
    const size_t colon = lines[i].find(':');
    if (colon == std::string::npos) continue;
    r.headers[absl::AsciiStrToLower(lines[i].substr(0, colon))] =
        std::string(absl::StripAsciiWhitespace(lines[i].substr(colon + 1)));
  }
  r.body = raw.substr(end + 4);
  return r;
}

// Sends `request` as is and reads until the server closes (every edge
// response closes its connection) or `timeout` passes.
std::string Exchange(int port, const std::string& request,
                     absl::Duration timeout = absl::Seconds(10)) {
  const absl::Time deadline = absl::Now() + timeout;
  absl::StatusOr<net::ScopedFd> fd =
      net::TcpConnect("127.0.0.1", port, deadline);
  if (!fd.ok()) return "";
  if (!net::SendAll(fd->get(), request, deadline).ok()) return "";
  std::string out;
  char buf[65536];
  while (true) {
    absl::StatusOr<size_t> n =
        net::RecvSome(fd->get(), buf, sizeof(buf), deadline);
    if (!n.ok() || *n == 0) break;
    out.append(buf, *n);
  }
  return out;
}

std::string Request(absl::string_view method, absl::string_view path,
                    absl::string_view body = "",
                    absl::string_view extra_headers = "") {
  return absl::StrCat(method, " ", path, " HTTP/1.1\r\nHost: test\r\n",
                      "Authorization: Bearer ", kToken, "\r\n",
                      "Content-Type: application/json\r\n",
                      "Content-Length: ", body.size(), "\r\n", extra_headers,
                      "\r\n", body);
}

class EdgeServerTest : public testing::GatewayTest {
 protected:
  EdgeOptions EdgeDefaults() {
    EdgeOptions options;
    options.listen_address = "127.0.0.1";
    options.port = 0;
    options.http_threads = 8;
    options.max_streams = 2;
    options.schema_paths = {NATSGW_SOURCE_DIR "/schemas"};
    options.allow_call = *SubjectAllowList::Parse("echo.*");
    options.allow_publish = *SubjectAllowList::Parse("edge.>");
    options.allow_subscribe = *SubjectAllowList::Parse("edge.>");
    options.tokens = *TokenSet::Parse(kToken, "test");
    options.discovery_wait = absl::Milliseconds(100);
    return options;
  }

  std::unique_ptr<EdgeServer> Start(EdgeOptions options) {
    absl::StatusOr<std::unique_ptr<EdgeServer>> edge =
        EdgeServer::Create(std::move(options), *conn_, registry_);
    EXPECT_TRUE(edge.ok()) << edge.status();
    return edge.ok() ? *std::move(edge) : nullptr;
  }

  void SetUp() override {
    GatewayTest::SetUp();
    if (HasFatalFailure()) return;
    conn_ = Connect();
    ASSERT_NE(conn_, nullptr);
  }
  // The connection goes before the server it talks to.
  void TearDown() override {
    conn_.reset();
    GatewayTest::TearDown();
  }

  void SlowReaderCase(EdgeOptions options, size_t min_delivered);

  std::unique_ptr<Connection> conn_;
};

// The echo service of echo.fbs, typed: the tag plus one.
class EchoImpl : public echo::EchoServiceBase {
 public:
  absl::StatusOr<flatbuffers::Offset<echo::EchoReply>> Echo(
      const echo::EchoRequest& request, ServerContext& ctx) override {
    flatbuffers::FlatBufferBuilder& fbb = ctx.builder();
    return echo::CreateEchoReply(fbb, 0, request.tag() + 1);
  }
};

// METRICS.md rows of the natsgw-edge section: name -> (type, labels).
std::map<std::string, std::pair<std::string, std::set<std::string>>>
EdgeCatalogue() {
  std::ifstream in(NATSGW_SOURCE_DIR "/monitoring/METRICS.md");
  std::map<std::string, std::pair<std::string, std::set<std::string>>> out;
  std::string line;
  while (std::getline(in, line)) {
    if (!absl::StartsWith(line, "| `natsgw_edge_")) continue;
    std::vector<std::string> cells = absl::StrSplit(line, '|');
    if (cells.size() < 4) continue;
    std::string name(absl::StripAsciiWhitespace(cells[1]));
    name = std::string(absl::StripSuffix(absl::StripPrefix(name, "`"), "`"));
    std::set<std::string> labels;
    for (absl::string_view label : absl::StrSplit(cells[3], ',')) {
      label = absl::StripAsciiWhitespace(label);
      label = absl::StripSuffix(absl::StripPrefix(label, "`"), "`");
      if (!label.empty() && label != "—") labels.insert(std::string(label));
    }
    out[name] = {std::string(absl::StripAsciiWhitespace(cells[2])), labels};
  }
  return out;
}

TEST_F(EdgeServerTest, MetricsMatchTheCatalogueAndPassPromtool) {
  EchoImpl echo;
  auto service = echo.Start(*conn_);
  ASSERT_TRUE(service.ok()) << service.status();
  EdgeOptions options = EdgeDefaults();
  options.max_streams = 1;
  auto edge = Start(options);
  ASSERT_NE(edge, nullptr);
  const int port = edge->port();

  // One of each: a call, a publish, refusals, a stream and one too many.
  HttpReply r = Parse(
      Exchange(port, Request("POST", "/v1/call/echo.Echo", R"({"tag": 41})")));
  EXPECT_EQ(r.status, 200) << r.raw;
  EXPECT_THAT(r.body, HasSubstr("42"));
  r = Parse(Exchange(
      port, Request("POST", "/v1/publish/edge.x?type=natsgw.echo.EchoRequest",
                    R"({"tag": 1})")));
  EXPECT_EQ(r.status, 202) << r.raw;
  r = Parse(Exchange(port, "GET /v1/call/echo.Echo HTTP/1.1\r\n\r\n"));
  EXPECT_EQ(r.status, 405) << r.raw;
  r = Parse(Exchange(port, Request("POST", "/v1/call/other.Echo", "{}")));
  EXPECT_EQ(r.status, 403) << r.raw;
  std::atomic<bool> stream_done{false};
  std::string stream_text;
  std::thread stream([&] {
    stream_text = Exchange(port, Request("GET", "/v1/subscribe/edge.>"),
                           absl::Seconds(20));
    stream_done = true;
  });
  const absl::Time until = absl::Now() + absl::Seconds(10);
  while (Scrape().find("natsgw_edge_sse_streams 1") == std::string::npos &&
         absl::Now() < until) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  r = Parse(Exchange(port, Request("GET", "/v1/subscribe/edge.y")));
  EXPECT_EQ(r.status, 429) << r.raw;
  EXPECT_TRUE(edge->Drain(absl::Seconds(10)).ok());
  stream.join();
  EXPECT_THAT(stream_text, HasSubstr("event: shutdown"));

  // What the code exports under natsgw_edge_, against the catalogue.
  const auto catalogue = EdgeCatalogue();
  ASSERT_FALSE(catalogue.empty())
      << "no natsgw_edge_ rows in monitoring/METRICS.md";
  std::map<std::string, std::pair<std::string, std::set<std::string>>> exported;
  for (const prometheus::MetricFamily& family : registry_->Collect()) {
    if (!absl::StartsWith(family.name, "natsgw_edge_")) continue;
    auto& e = exported[family.name];
    switch (family.type) {
      case prometheus::MetricType::Counter:
        e.first = "counter";
        break;
      case prometheus::MetricType::Gauge:
        e.first = "gauge";
        break;
      case prometheus::MetricType::Histogram:
        e.first = "histogram";
        break;
      default:
        e.first = "other";
    }
    for (const prometheus::ClientMetric& metric : family.metric) {
      for (const prometheus::ClientMetric::Label& label : metric.label) {
        e.second.insert(label.name);
      }
    }
  }
  EXPECT_EQ(exported, catalogue);

  // Served as Prometheus scrapes it, promtool's lint passes.
  const absl::Status lint = testing::PromtoolCheckMetrics(Scrape());
  EXPECT_TRUE(lint.ok()) << lint;
}

// A client that does not read: the stream's queue fills (by message count
// or by bytes), new messages are dropped, counted and reported; every
// published message is either delivered or reported as dropped.
void EdgeServerTest::SlowReaderCase(EdgeOptions options, size_t min_delivered) {
  options.sse_keepalive = absl::Milliseconds(100);
  auto edge = Start(options);
  ASSERT_NE(edge, nullptr);

  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  absl::StatusOr<net::ScopedFd> fd =
      net::TcpConnect("127.0.0.1", edge->port(), deadline);
  ASSERT_TRUE(fd.ok()) << fd.status();
  ASSERT_TRUE(net::SendAll(fd->get(), Request("GET", "/v1/subscribe/edge.slow"),
                           deadline)
                  .ok());
  std::string text;
  char buf[65536];
  while (text.find(": subscribed to edge.slow") == std::string::npos) {
    absl::StatusOr<size_t> n =
        net::RecvSome(fd->get(), buf, sizeof(buf), deadline);
    ASSERT_TRUE(n.ok() && *n > 0) << text;
    text.append(buf, *n);
  }
  // Far more than the socket buffers hold, while nobody reads.
  constexpr int kMessages = 400;
  const std::string payload(48 * 1024, 'x');
  for (int i = 0; i < kMessages; ++i) {
    ASSERT_TRUE(conn_->Publish("edge.slow", payload).ok());
  }
  ASSERT_TRUE(conn_->Flush(absl::Seconds(10)).ok());
  absl::SleepFor(absl::Milliseconds(300));

  // Now read: delivered + reported drops must add up to what was sent.
  int delivered = 0;
  int64_t reported = 0;
  size_t parsed = 0;
  while (delivered + reported < kMessages && absl::Now() < deadline) {
    absl::StatusOr<size_t> n =
        net::RecvSome(fd->get(), buf, sizeof(buf), deadline);
    if (!n.ok() || *n == 0) break;
    text.append(buf, *n);
    size_t end;
    while ((end = text.find("\n\n", parsed)) != std::string::npos) {
      const absl::string_view event(text.data() + parsed, end - parsed);
      parsed = end + 2;
      if (absl::StrContains(event, "event: message")) ++delivered;
      if (absl::StrContains(event, "event: dropped")) {
        const size_t at = event.find("\"dropped\":");
        int64_t n_dropped = 0;
        ASSERT_NE(at, absl::string_view::npos) << event;
        const absl::string_view digits = event.substr(at + 10);
        ASSERT_TRUE(absl::SimpleAtoi(
            digits.substr(0, digits.find_first_not_of("0123456789")),
            &n_dropped))
            << event;
        reported += n_dropped;
      }
    }
  }
  std::printf(
      "[figures] slow reader: %d of %d messages delivered, %lld "
      "dropped and reported (queue of %d messages, %zu bytes)\n",
      delivered, kMessages, static_cast<long long>(reported), options.sse_queue,
      options.sse_queue_bytes);
  EXPECT_EQ(delivered + reported, kMessages);
  EXPECT_GT(reported, 0) << "the reader was never slow enough to drop";
  EXPECT_GE(static_cast<size_t>(delivered), min_delivered);
  const std::string scrape = Scrape();
  EXPECT_THAT(scrape, HasSubstr(absl::StrCat("natsgw_edge_sse_dropped_total ",
                                             reported)));
}

TEST_F(EdgeServerTest, SlowReaderLosesOnlyReportedMessages) {
  EdgeOptions options = EdgeDefaults();
  options.sse_queue = 4;
  SlowReaderCase(options, 4);
}

// The byte budget: 400 messages of 48 KiB fit the message count, not the
// 256 KiB; the overflow is handled as the count's is.
TEST_F(EdgeServerTest, SlowReaderQueueIsBoundedInBytes) {
  EdgeOptions options = EdgeDefaults();
  options.sse_queue = 1000;
  options.sse_queue_bytes = 256 << 10;
  SlowReaderCase(options, 4);
}

// Drain: a call in progress finishes (200), an open stream ends with event:
// shutdown, Drain returns once both are done, and from then on readiness is
// 503 and new requests are refused with 503 "draining" (liveness stays 200).
TEST_F(EdgeServerTest, DrainFinishesCallsEndsStreamsAndRefusesNewWork) {
  std::atomic<bool> handling{false};
  // echo.Echo's bytes back (request and reply have the same layout), slowly.
  auto slow = conn_->Serve("echo.Echo", "q", [&](const Message& m) {
    handling = true;
    absl::SleepFor(absl::Milliseconds(500));
    return absl::StatusOr<Reply>(Reply{m.data, {}});
  });
  ASSERT_TRUE(slow.ok()) << slow.status();
  auto edge = Start(EdgeDefaults());
  ASSERT_NE(edge, nullptr);
  const int port = edge->port();

  std::string stream_text;
  std::thread stream([&] {
    stream_text = Exchange(port, Request("GET", "/v1/subscribe/edge.>"),
                           absl::Seconds(20));
  });
  HttpReply call;
  std::thread caller([&] {
    call = Parse(
        Exchange(port, Request("POST", "/v1/call/echo.Echo", R"({"tag": 7})")));
  });
  const absl::Time until = absl::Now() + absl::Seconds(10);
  while ((!handling ||
          Scrape().find("natsgw_edge_sse_streams 1") == std::string::npos) &&
         absl::Now() < until) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  ASSERT_TRUE(handling);
  const absl::Time start = absl::Now();
  EXPECT_TRUE(edge->Drain(absl::Seconds(10)).ok());
  const absl::Duration took = absl::Now() - start;
  caller.join();
  stream.join();
  EXPECT_EQ(call.status, 200) << call.raw;
  EXPECT_THAT(call.body, HasSubstr("\"tag\": 7"));
  EXPECT_THAT(stream_text, HasSubstr("event: shutdown"));
  EXPECT_GT(took, absl::Milliseconds(100)) << "Drain did not wait for the call";
  EXPECT_TRUE(edge->draining());
  EXPECT_EQ(edge->Readiness().code(), absl::StatusCode::kUnavailable);

  HttpReply r = Parse(
      Exchange(port, Request("POST", "/v1/call/echo.Echo", R"({"tag": 1})")));
  EXPECT_EQ(r.status, 503) << r.raw;
  EXPECT_THAT(r.body, HasSubstr("draining"));
  r = Parse(Exchange(port, "GET /readyz HTTP/1.1\r\n\r\n"));
  EXPECT_EQ(r.status, 503) << r.raw;
  EXPECT_THAT(r.body, HasSubstr("\"draining\":true"));
  r = Parse(Exchange(port, "GET /healthz HTTP/1.1\r\n\r\n"));
  EXPECT_EQ(r.status, 200) << r.raw;
  EXPECT_THAT(Scrape(),
              HasSubstr("natsgw_edge_rejected_total{reason=\"draining\"} 1"));
}

// Request lines and headers no honest client sends.
TEST_F(EdgeServerTest, HostileRequestsAreRefusedBeforeNats) {
  EchoImpl echo;
  auto service = echo.Start(*conn_);
  ASSERT_TRUE(service.ok()) << service.status();
  auto edge = Start(EdgeDefaults());
  ASSERT_NE(edge, nullptr);
  const int port = edge->port();
  struct Case {
    std::string request;
    int status;
    // The connection must close at once (the edge reads no body it does
    // not want), well before read_timeout (10 s) would end it.
    bool quick_close = false;
  };
  const std::string long_subject = absl::StrCat("echo.", std::string(300, 'a'));
  const std::vector<Case> cases = {
      {Request("POST", "/v1/call/echo.Echo%0d%0aX-Injected:%20yes", "{}"), 400},
      {Request("POST", "/v1/call/echo.Echo%00", "{}"), 400},
      {Request("POST", "/v1/call/echo.Echo%20x", "{}"), 400},
      {Request("POST", absl::StrCat("/v1/call/", long_subject), "{}"), 400},
      {Request("POST", "/v1/call/echo.*", "{}"), 400},
      {Request("POST", "/v1/call/echo.>", "{}"), 400},
      {Request("POST", "/v1/call/", "{}"), 400},
      {Request("POST", "/v1/call/echo.Echo", std::string(100, '[')), 400},
      {Request("POST", "/v1/call/echo.Echo", "{\"tag\": 1}",
               "Natsgw-Header-Natsgw-Status: 0\r\n"),
       400},
      {Request("POST", "/v1/call/echo.Echo", "{\"tag\": 1}",
               "Natsgw-Header-A: x\r\nNatsgw-Header-Ab: y\r\n"),
       400},
      {Request("POST", "/v1/call/echo.Echo?timeout_ms=0", "{\"tag\": 1}"), 400},
      // Declared larger than the limit: refused before the body is read,
      // and the body never read.
      {absl::StrCat(
           "POST /v1/call/echo.Echo HTTP/1.1\r\nAuthorization: Bearer ", kToken,
           "\r\nContent-Type: application/json\r\nContent-Length: "
           "999999999999\r\n\r\n{}"),
       413, true},
      // Waiting for "100 Continue" without a token: 401, and no wait for a
      // body that will not come.
      {"POST /v1/call/echo.Echo HTTP/1.1\r\nContent-Type: application/json\r\n"
       "Content-Length: 100\r\nExpect: 100-continue\r\n\r\n",
       401, true},
      // A chunked body past the limit: refused as soon as it is; the rest
      // (less than the 64 KiB the edge drains after a refusal) read and
      // dropped so the client sees the answer.
      {absl::StrCat(
           "POST /v1/call/echo.Echo HTTP/1.1\r\nAuthorization: Bearer ", kToken,
           "\r\nContent-Type: application/json\r\nTransfer-Encoding: "
           "chunked\r\n\r\n",
           absl::StrFormat("%x\r\n", 520 * 1024), std::string(520 * 1024, ' '),
           "\r\n", absl::StrFormat("%x\r\n", 520 * 1024),
           std::string(520 * 1024, ' '), "\r\n0\r\n\r\n"),
       413, true},
  };
  for (const Case& c : cases) {
    const absl::Time start = absl::Now();
    HttpReply r = Parse(Exchange(port, c.request));
    if (c.quick_close) {
      EXPECT_LT(absl::Now() - start, absl::Seconds(3))
          << c.request.substr(0, 120);
    }
    EXPECT_EQ(r.status, c.status) << c.request.substr(0, 120) << "\n" << r.raw;
    EXPECT_THAT(r.headers["content-type"], HasSubstr("application/json"));
    EXPECT_FALSE(r.headers.contains("x-injected"));
  }
  // None of them reached the service.
  EXPECT_EQ(Scrape().find("natsgw_server_request_duration_seconds_count{"
                          "code=\"OK\",subject=\"echo.Echo\"}"),
            std::string::npos);
}

// Clients that send a body a byte now and then (never waiting as long as
// read_timeout between two) hold no worker for long, refused or not: with
// more of them than there are worker threads, /healthz still answers
// within a few seconds; a refused one (no token) gets its 401 and loses
// its connection after a short drain; an admitted one gets 408 once
// read_timeout has passed for its body as a whole.
TEST_F(EdgeServerTest, TricklingClientsCannotHoldTheWorkers) {
  EdgeOptions options = EdgeDefaults();  // 8 worker threads
  options.read_timeout = absl::Seconds(2);
  auto edge = Start(options);
  ASSERT_NE(edge, nullptr);
  const int port = edge->port();
  constexpr int kRefused = 10;
  constexpr int kAdmitted = 4;
  ASSERT_GT(kRefused + kAdmitted, options.http_threads);
  struct Slow {
    net::ScopedFd fd;
    bool admitted = false;
    std::string got;
    bool closed = false;
  };
  std::vector<Slow> slow;
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  for (int i = 0; i < kRefused + kAdmitted; ++i) {
    const bool admitted = i >= kRefused;
    absl::StatusOr<net::ScopedFd> fd =
        net::TcpConnect("127.0.0.1", port, deadline);
    ASSERT_TRUE(fd.ok()) << fd.status();
    const std::string head = absl::StrCat(
        "POST /v1/call/echo.Echo HTTP/1.1\r\nHost: test\r\n",
        admitted ? absl::StrCat("Authorization: Bearer ", kToken, "\r\n") : "",
        "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{");
    ASSERT_TRUE(net::SendAll(fd->get(), head, deadline).ok());
    slow.push_back({*std::move(fd), admitted, "", false});
  }
  std::atomic<int> health_status{0};
  std::atomic<int64_t> health_ms{-1};
  std::thread health([&] {
    absl::SleepFor(absl::Milliseconds(500));  // every worker is busy by now
    const absl::Time asked = absl::Now();
    HttpReply r = Parse(
        Exchange(port, "GET /healthz HTTP/1.1\r\n\r\n", absl::Seconds(5)));
    health_status = r.status;
    health_ms = absl::ToInt64Milliseconds(absl::Now() - asked);
  });
  // A byte every 400 ms on every connection still open, reading what comes
  // back; at most 10 s.
  const absl::Time start = absl::Now();
  const absl::Time end = start + absl::Seconds(10);
  while (absl::Now() < end) {
    bool all_closed = true;
    for (Slow& s : slow) {
      if (s.closed) continue;
      char buf[4096];
      while (true) {
        const ssize_t n = recv(s.fd.get(), buf, sizeof(buf), MSG_DONTWAIT);
        if (n > 0) {
          s.got.append(buf, static_cast<size_t>(n));
          continue;
        }
        if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
          s.closed = true;
        }
        break;
      }
      if (s.closed) continue;
      all_closed = false;
      (void)send(s.fd.get(), " ", 1, MSG_NOSIGNAL | MSG_DONTWAIT);
    }
    if (all_closed) break;
    absl::SleepFor(absl::Milliseconds(400));
  }
  const absl::Duration took = absl::Now() - start;
  health.join();
  std::printf(
      "[figures] %d trickling clients on %d workers: /healthz answered in %lld "
      "ms; all connections ended after %lld ms\n",
      kRefused + kAdmitted, options.http_threads,
      static_cast<long long>(health_ms.load()),
      static_cast<long long>(absl::ToInt64Milliseconds(took)));
  EXPECT_EQ(health_status.load(), 200)
      << "/healthz did not answer within 5 s while clients trickled";
  for (const Slow& s : slow) {
    EXPECT_TRUE(s.closed) << "a trickling client kept its connection";
    EXPECT_EQ(Parse(s.got).status, s.admitted ? 408 : 401) << s.got;
  }
  // Nothing left that Drain would wait for.
  EXPECT_TRUE(edge->Drain(absl::Seconds(3)).ok());
}

// NATS hands a JetStream push consumer's deliveries to a subscription under
// the subject each message was published to. A stream on "*.*" that
// matches another client's deliver subject ("dlv.x") must not receive
// "secret.events.x", which neither "*.*" nor the allow-list covers.
TEST_F(EdgeServerTest, SubscriptionsGetOnlyWhatTheirPatternCovers) {
  EdgeOptions options = EdgeDefaults();
  options.allow_subscribe = *SubjectAllowList::Parse("*.*");
  options.sse_keepalive = absl::Milliseconds(100);
  auto edge = Start(options);
  ASSERT_NE(edge, nullptr);

  auto js = JetStream::Create(*conn_);
  ASSERT_TRUE(js.ok()) << js.status();
  StreamConfig stream;
  stream.name = "SECRET";
  stream.subjects = {"secret.>"};
  stream.storage = StorageType::kMemory;
  ASSERT_TRUE((*js)->EnsureStream(stream).ok());
  ASSERT_TRUE(conn_->Publish("secret.events.x", "classified").ok());
  ASSERT_TRUE(conn_->Flush(absl::Seconds(5)).ok());

  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  absl::StatusOr<net::ScopedFd> fd =
      net::TcpConnect("127.0.0.1", edge->port(), deadline);
  ASSERT_TRUE(fd.ok()) << fd.status();
  ASSERT_TRUE(
      net::SendAll(fd->get(), Request("GET", "/v1/subscribe/*.*"), deadline)
          .ok());
  std::string text;
  char buf[65536];
  auto read_until = [&](const std::string& needle, absl::Time until) {
    while (text.find(needle) == std::string::npos && absl::Now() < until) {
      absl::StatusOr<size_t> n =
          net::RecvSome(fd->get(), buf, sizeof(buf), until);
      if (!n.ok() || *n == 0) return false;
      text.append(buf, *n);
    }
    return text.find(needle) != std::string::npos;
  };
  ASSERT_TRUE(read_until(": subscribed to *.*", deadline)) << text;

  // The test's own look at the deliver subject: the consumer delivers.
  std::mutex mu;
  std::condition_variable cv;
  int delivered = 0;
  auto watch = conn_->Subscribe("dlv.x", "", [&](const Message& m) {
    std::lock_guard<std::mutex> lock(mu);
    if (m.subject == "secret.events.x") ++delivered;
    cv.notify_all();
  });
  ASSERT_TRUE(watch.ok()) << watch.status();
  absl::StatusOr<Message> created = conn_->Request(
      "$JS.API.CONSUMER.CREATE.SECRET",
      R"({"stream_name":"SECRET","config":{"deliver_subject":"dlv.x",)"
      R"("deliver_policy":"all","ack_policy":"none"}})",
      absl::Seconds(5));
  ASSERT_TRUE(created.ok()) << created.status();
  ASSERT_THAT(created->data, HasSubstr("\"deliver_subject\":\"dlv.x\""))
      << created->data;
  {
    std::unique_lock<std::mutex> lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(10), [&] {
      return delivered > 0;
    })) << "the push consumer delivered nothing";
  }
  // A message the stream may carry, published after the delivery: once it
  // is there, so would the delivery be.
  ASSERT_TRUE(conn_->Publish("ok.marker", "visible").ok());
  ASSERT_TRUE(read_until("\"subject\":\"ok.marker\"", deadline)) << text;
  absl::SleepFor(absl::Milliseconds(300));
  read_until("never sent", absl::Now() + absl::Milliseconds(200));
  EXPECT_THAT(text, ::testing::Not(HasSubstr("secret.events.x"))) << text;
  (*watch)->Unsubscribe().IgnoreError();
}

// However many subjects an allow-list pattern admits, one $SRV.INFO
// discovery runs at a time: concurrent calls to subjects nobody serves ask
// the bus one after the other (each waiting discovery_wait for answers that
// never come), not all at once.
TEST_F(EdgeServerTest, OneDiscoveryAtATime) {
  std::mutex mu;
  std::vector<absl::Time> asked;
  auto watch = conn_->Subscribe("$SRV.INFO", "", [&](const Message&) {
    std::lock_guard<std::mutex> lock(mu);
    asked.push_back(absl::Now());
  });
  ASSERT_TRUE(watch.ok()) << watch.status();
  EdgeOptions options = EdgeDefaults();
  options.allow_call = *SubjectAllowList::Parse("nosuch.*");
  options.discovery_wait = absl::Milliseconds(300);
  auto edge = Start(options);
  ASSERT_NE(edge, nullptr);
  constexpr int kCalls = 3;
  std::vector<int> status(kCalls);
  std::vector<std::thread> callers;
  for (int i = 0; i < kCalls; ++i) {
    callers.emplace_back([&, i] {
      status[i] =
          Parse(Exchange(edge->port(),
                         Request("POST", absl::StrCat("/v1/call/nosuch.M", i),
                                 "{}")))
              .status;
    });
  }
  for (std::thread& t : callers) t.join();
  for (int s : status) EXPECT_EQ(s, 404);
  std::lock_guard<std::mutex> lock(mu);
  ASSERT_EQ(asked.size(), static_cast<size_t>(kCalls));
  std::sort(asked.begin(), asked.end());
  for (size_t i = 1; i < asked.size(); ++i) {
    EXPECT_GE(asked[i] - asked[i - 1], absl::Milliseconds(250))
        << "two discoveries ran at once";
  }
  (*watch)->Unsubscribe().IgnoreError();
}

// A method found through $SRV.INFO is resolved without the schema files:
// they were read once at start (here they are gone by the time of the
// call), and the discovered schema comes from the service.
TEST_F(EdgeServerTest, DiscoveryReadsNoSchemaFiles) {
  EchoImpl echo;
  auto service = echo.Start(*conn_);
  ASSERT_TRUE(service.ok()) << service.status();
  // Loaded schemas that do not serve echo.Echo, in a directory removed
  // after start.
  const std::string dir = ::testing::TempDir() + "edge_discovery_schemas";
  const std::string copy = dir + "/email.fbs";
  auto setup = testing::RunProcess(
      {"/bin/sh", "-c", "mkdir -p \"$1\" && cp \"$2\" \"$3\"", "sh", dir,
       NATSGW_SOURCE_DIR "/schemas/email.fbs", copy},
      absl::Seconds(10));
  ASSERT_TRUE(setup.ok() && setup->exit_code == 0);
  EdgeOptions options = EdgeDefaults();
  options.schema_paths = {dir};
  options.discovery_wait = absl::Milliseconds(300);
  auto edge = Start(options);
  ASSERT_NE(edge, nullptr);
  ASSERT_EQ(std::remove(copy.c_str()), 0);
  ASSERT_EQ(std::remove(dir.c_str()), 0);

  HttpReply r = Parse(Exchange(
      edge->port(), Request("POST", "/v1/call/echo.Echo", R"({"tag": 41})")));
  EXPECT_EQ(r.status, 200) << r.raw;
  EXPECT_THAT(r.body, HasSubstr("42"));
}

TEST(EdgeOptionsTest, ValidateOptionsNamesTheOption) {
  EdgeOptions options;
  options.allow_unauthenticated = true;
  EXPECT_TRUE(EdgeServer::ValidateOptions(options).ok());
  struct Case {
    std::function<void(EdgeOptions&)> change;
    absl::StatusCode code;
    const char* names;
  };
  const std::vector<Case> cases = {
      {[](EdgeOptions& o) { o.port = 70000; },
       absl::StatusCode::kInvalidArgument, "port"},
      {[](EdgeOptions& o) { o.listen_address = "0.0.0.0:80"; },
       absl::StatusCode::kInvalidArgument, "listen_address"},
      {[](EdgeOptions& o) { o.max_streams = 61; },
       absl::StatusCode::kInvalidArgument, "http_threads"},
      {[](EdgeOptions& o) { o.max_body_bytes = 0; },
       absl::StatusCode::kInvalidArgument, "max_body_bytes"},
      {[](EdgeOptions& o) { o.timeout = absl::Minutes(2); },
       absl::StatusCode::kInvalidArgument, "max_timeout"},
      {[](EdgeOptions& o) { o.sse_queue = 0; },
       absl::StatusCode::kInvalidArgument, "sse_queue"},
      {[](EdgeOptions& o) { o.sse_keepalive = absl::ZeroDuration(); },
       absl::StatusCode::kInvalidArgument, "sse_keepalive"},
      {[](EdgeOptions& o) { o.allow_unauthenticated = false; },
       absl::StatusCode::kFailedPrecondition, "tokens"},
  };
  for (const Case& c : cases) {
    EdgeOptions o = options;
    c.change(o);
    absl::Status s = EdgeServer::ValidateOptions(o);
    EXPECT_EQ(s.code(), c.code) << c.names << ": " << s;
    EXPECT_THAT(s.message(), HasSubstr(c.names));
  }
}

// The edge's share of a call: raw HTTP (a new connection per call, as
// Connection: close makes it) against natsgw::Connection directly, same
// service, same process. Printed, not asserted.
TEST_F(EdgeServerTest, LatencyFigures) {
  EchoImpl echo;
  auto service = echo.Start(*conn_);
  ASSERT_TRUE(service.ok()) << service.status();
  EdgeOptions options = EdgeDefaults();
  options.tokens.reset();
  options.allow_unauthenticated = true;
  auto edge = Start(options);
  ASSERT_NE(edge, nullptr);
  const std::string request = absl::StrCat(
      "POST /v1/call/echo.Echo HTTP/1.1\r\nContent-Type: application/json\r\n"
      "Content-Length: 11\r\n\r\n{\"tag\": 41}");
  flatbuffers::FlatBufferBuilder fbb;
  fbb.Finish(echo::CreateEchoRequest(fbb, 0, 41), "NGEC");
  const std::string bytes(reinterpret_cast<const char*>(fbb.GetBufferPointer()),
                          fbb.GetSize());
  constexpr int kCalls = 300;
  std::vector<absl::Duration> via_edge, direct;
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  for (int i = 0; i < kCalls && absl::Now() < deadline; ++i) {
    absl::Time t0 = absl::Now();
    HttpReply r = Parse(Exchange(edge->port(), request));
    via_edge.push_back(absl::Now() - t0);
    ASSERT_EQ(r.status, 200) << r.raw;
    t0 = absl::Now();
    ASSERT_TRUE(conn_->Request("echo.Echo", bytes, absl::Seconds(5)).ok());
    direct.push_back(absl::Now() - t0);
  }
  auto summary = [](std::vector<absl::Duration> d) {
    std::sort(d.begin(), d.end());
    auto at = [&](double p) {
      return absl::ToInt64Microseconds(
          d[std::min(d.size() - 1, static_cast<size_t>(p * d.size()))]);
    };
    return absl::StrFormat("p50 %d us, p99 %d us", at(0.5), at(0.99));
  };
  std::printf(
      "[figures] echo.Echo, %zu calls each: through EdgeServer (raw HTTP, "
      "JSON, new connection per call) %s; directly (Connection::Request) "
      "%s\n",
      via_edge.size(), summary(via_edge).c_str(), summary(direct).c_str());
}

}  // namespace
}  // namespace natsgw::edge
