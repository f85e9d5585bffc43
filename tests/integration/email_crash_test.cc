// The seed scenario made durable: the e-mail service (the real binary) is
// killed with SIGKILL in the middle of a batch of `user registered` events
// and started again. Every user gets exactly one welcome e-mail, counted by
// the side effect (the mail spool), not by messages.
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "harness/nats_server_fixture.h"
#include "harness/subprocess.h"
#include "harness/sync_points.h"
#include "integration/user_events.h"
#include "natsgw/connection.h"
#include "natsgw/jetstream.h"
#include "natsgw/schemas/users_natsgw.h"
#include "natsgw/stream_publisher.h"

namespace natsgw {
namespace {

namespace fs = std::filesystem;

constexpr int kUsers = 200;
constexpr int kWorkers = 4;

size_t CountMails(const std::string& dir) {
  size_t n = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.path().extension() == ".eml") ++n;
  }
  return n;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

class EmailCrashTest : public testing::NatsServerTest {
 protected:
  void SetUp() override {
    NatsServerTest::SetUp();
    if (HasFatalFailure()) return;
    dir_ = fs::temp_directory_path() /
           absl::StrCat("natsgw-email-crash-", getpid(), "-",
                        absl::ToUnixNanos(absl::Now()));
    fs::create_directories(dir_ + "/mail");
  }
  void TearDown() override {
    if (HasFailure()) {
      std::cerr << "---- email-service output ----\n"
                << ReadFile(dir_ + "/email-service.log") << std::endl;
    }
    fs::remove_all(dir_);
    NatsServerTest::TearDown();
  }

  std::unique_ptr<testing::BackgroundProcess> StartEmailService() {
    const size_t ready_before = ReadyLines();
    auto p = testing::BackgroundProcess::Start(
        {NATSGW_EMAIL_SERVICE_BINARY,
         absl::StrCat("--nats_url=", server().url()), "--metrics_port=-1",
         absl::StrCat("--mail_dir=", dir_, "/mail"),
         absl::StrCat("--workers=", kWorkers), "--send_delay_ms=10",
         // What the crash left unacknowledged comes back after this.
         "--ack_wait=2s"},
        dir_ + "/email-service.log");
    EXPECT_TRUE(p.ok()) << p.status();
    if (!p.ok()) return nullptr;
    EXPECT_TRUE(testing::Eventually([&] { return ReadyLines() > ready_before; },
                                    absl::Seconds(20)));
    return *std::move(p);
  }

  size_t ReadyLines() const {
    const std::string log = ReadFile(dir_ + "/email-service.log");
    size_t n = 0;
    for (size_t at = log.find("email-service ready"); at != std::string::npos;
         at = log.find("email-service ready", at + 1)) {
      ++n;
    }
    return n;
  }

  std::string dir_;
};

TEST_F(EmailCrashTest, KilledMidBatchAndRestartedEveryUserIsWelcomedOnce) {
  auto email = StartEmailService();
  ASSERT_NE(email, nullptr);

  // The user service's side of the contract: UserRegistered events stored in
  // USERS with a message ID derived from the user.
  ConnectionOptions options;
  options.servers = {server().url()};
  auto conn = Connection::Create(options);
  ASSERT_TRUE(conn.ok()) << conn.status();
  auto js = JetStream::Create(**conn);
  ASSERT_TRUE(js.ok());
  auto publisher = StreamPublisher::Create(**js, {.stream = "USERS"});
  ASSERT_TRUE(publisher.ok()) << publisher.status();
  absl::Status published = testing::PublishUsersRegistered(**publisher, kUsers);
  ASSERT_TRUE(published.ok()) << published;

  // Crash in the middle of the batch.
  ASSERT_TRUE(testing::Eventually(
      [&] { return CountMails(dir_ + "/mail") >= 40; }, absl::Seconds(30)));
  email->Signal(SIGKILL);
  ASSERT_EQ(*email->Wait(absl::Seconds(10)), 128 + SIGKILL);
  const size_t at_crash = CountMails(dir_ + "/mail");
  ASSERT_LT(at_crash, static_cast<size_t>(kUsers)) << "not mid-batch";

  // Restarted, it finishes the batch.
  email = StartEmailService();
  ASSERT_NE(email, nullptr);
  ASSERT_TRUE(testing::Eventually(
      [&] { return CountMails(dir_ + "/mail") >= kUsers; }, absl::Seconds(60)))
      << CountMails(dir_ + "/mail");
  // Redeliveries still due would show up now.
  absl::SleepFor(absl::Milliseconds(500));
  email->Signal(SIGTERM);
  auto exit_code = email->Wait(absl::Seconds(20));
  ASSERT_TRUE(exit_code.ok()) << exit_code.status();
  EXPECT_EQ(*exit_code, 0) << "graceful shutdown must exit 0";

  // Count by side effect: one e-mail per user, none missing, none twice.
  std::map<std::string, int> per_user;
  for (const auto& entry : fs::directory_iterator(dir_ + "/mail")) {
    // A crash mid-write leaves only a temporary file, never a partial .eml.
    if (entry.path().extension() != ".eml") continue;
    const std::string mail = ReadFile(entry.path());
    const size_t at = mail.find("User-Id: ");
    ASSERT_NE(at, std::string::npos) << entry.path();
    ++per_user[mail.substr(at + 9, mail.find('\n', at) - at - 9)];
  }
  EXPECT_EQ(per_user.size(), static_cast<size_t>(kUsers));
  for (const auto& [user, n] : per_user) EXPECT_EQ(n, 1) << user;
  // The idempotency store kept every redelivery of a committed event from
  // reaching the transport; only the events in the workers' hands at the
  // moment of the crash may have reached it twice (and were refused there).
  const std::string log = ReadFile(dir_ + "/email-service.log");
  size_t refused = 0;
  for (size_t at = log.find("already had"); at != std::string::npos;
       at = log.find("already had", at + 1)) {
    ++refused;
  }
  EXPECT_LE(refused, static_cast<size_t>(kWorkers));
  std::cout << "e-mails at the crash: " << at_crash
            << "; refused by the transport after restart: " << refused
            << std::endl;
}

}  // namespace
}  // namespace natsgw
