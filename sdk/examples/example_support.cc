#include "example_support.h"

#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <random>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "natsgw/json_logger.h"
#include "natsgw/json_span_exporter.h"
#include "natsgw/logger.h"
#include "natsgw/redact.h"

namespace natsgw::examples {
namespace {

// The values of --log_format and --log_level (parsed by Abseil through
// AbslParseFlag, so a wrong value stops the program with a usage error).
enum class LogFormat { kJson, kText };

struct LogLevel {
  absl::LogSeverity severity = absl::LogSeverity::kInfo;
};

bool AbslParseFlag(absl::string_view text, LogFormat* format,
                   std::string* error) {
  if (absl::EqualsIgnoreCase(text, "json")) {
    *format = LogFormat::kJson;
  } else if (absl::EqualsIgnoreCase(text, "text")) {
    *format = LogFormat::kText;
  } else {
    *error = "expected json or text";
    return false;
  }
  return true;
}

std::string AbslUnparseFlag(LogFormat format) {
  return format == LogFormat::kJson ? "json" : "text";
}

bool AbslParseFlag(absl::string_view text, LogLevel* level,
                   std::string* error) {
  if (absl::EqualsIgnoreCase(text, "debug")) {
    level->severity = kDebugSeverity;
  } else if (absl::EqualsIgnoreCase(text, "info")) {
    level->severity = absl::LogSeverity::kInfo;
  } else if (absl::EqualsIgnoreCase(text, "warning")) {
    level->severity = absl::LogSeverity::kWarning;
  } else if (absl::EqualsIgnoreCase(text, "error")) {
    level->severity = absl::LogSeverity::kError;
  } else {
    *error = "expected debug, info, warning or error";
    return false;
  }
  return true;
}

std::string AbslUnparseFlag(LogLevel level) {
  if (level.severity < absl::LogSeverity::kInfo) return "debug";
  switch (level.severity) {
    case absl::LogSeverity::kInfo:
      return "info";
    case absl::LogSeverity::kWarning:
      return "warning";
    default:
      return "error";
  }
}

}  // namespace
}  // namespace natsgw::examples

ABSL_FLAG(std::string, trace_file, "",
          "Append every span of a sampled trace to this file as one JSON line "
          "(several processes may share one file); empty: no spans");
ABSL_FLAG(double, trace_sample_ratio, 1.0,
          "Share (0..1) of the traces this program starts whose spans are "
          "recorded; incoming traces keep their sender's decision");
ABSL_FLAG(std::string, nats_url, "",
          "NATS server URL(s), comma-separated. Default: $NATS_URL, else "
          "nats://127.0.0.1:4222");
ABSL_FLAG(std::string, nats_user, "",
          "NATS user name (with --nats_password). Default: $NATS_USER");
ABSL_FLAG(std::string, nats_password, "",
          "NATS password. Default: $NATS_PASSWORD (prefer the environment: "
          "flags show in the process list)");
ABSL_FLAG(std::string, nats_token, "",
          "NATS authentication token. Default: $NATS_TOKEN");
ABSL_FLAG(std::string, nats_creds, "",
          "Path of a NATS credentials file (user JWT + NKey seed). Default: "
          "$NATS_CREDS");
ABSL_FLAG(std::string, nats_nkey, "",
          "Public NKey of the NATS user (U..., with --nats_nkey_seed). "
          "Default: $NATS_NKEY");
ABSL_FLAG(std::string, nats_nkey_seed, "",
          "Path of the file holding the NATS user's NKey seed (SU...). "
          "Default: $NATS_NKEY_SEED");
ABSL_FLAG(std::string, nats_ca, "",
          "PEM file of the CA that signed the NATS servers' certificates; "
          "turns on TLS. Default: $NATS_CA");
ABSL_FLAG(std::string, nats_cert, "",
          "Client certificate (PEM) for NATS servers that verify clients, "
          "with --nats_key; turns on TLS. Default: $NATS_CERT");
ABSL_FLAG(std::string, nats_key, "",
          "Private key (PEM) of --nats_cert. Default: $NATS_KEY");
ABSL_FLAG(int, stream_replicas, 1,
          "Replicas (1..5) of the JetStream streams and KV bucket the example "
          "services declare; 3 on a 3-node cluster, so that one server may be "
          "down. Every service must use the same value");
ABSL_FLAG(natsgw::examples::LogFormat, log_format,
          natsgw::examples::LogFormat::kJson,
          "Format of the diagnostics on stderr: json (one JSON object per "
          "line, with trace_id and span_id) or text");
ABSL_FLAG(natsgw::examples::LogLevel, log_level, natsgw::examples::LogLevel{},
          "Least severe diagnostics written to stderr: debug, info, warning "
          "or error");

namespace natsgw::examples {
namespace {

std::mutex g_print_mu;

// The flag's value if set, else the environment variable's, else "".
std::string FlagOrEnv(const absl::Flag<std::string>& flag, const char* env) {
  std::string value = absl::GetFlag(flag);
  if (value.empty()) {
    const char* from_env = std::getenv(env);
    if (from_env != nullptr) value = from_env;
  }
  return value;
}

sigset_t ShutdownSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  return set;
}

}  // namespace

void InitProgram(int argc, char** argv, absl::string_view usage) {
  absl::SetProgramUsageMessage(usage);
  absl::FlagsUsageConfig config;
  // --help lists the flags defined by the examples (not Abseil's internals).
  config.contains_help_flags = [](absl::string_view file) {
    return absl::StrContains(file, "sdk/examples/");
  };
  config.contains_helpshort_flags = config.contains_help_flags;
  absl::SetFlagsUsageConfig(config);
  absl::ParseCommandLine(argc, argv);
  sigset_t set = ShutdownSignals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

int ExitStatus(absl::string_view program, const absl::Status& status) {
  if (status.ok()) return 0;
  // natsgw's messages are already free of credentials; the example's own
  // may not be.
  const std::string message = RedactSecrets(status.message());
  if (absl::GetFlag(FLAGS_log_format) == LogFormat::kJson) {
    const std::string code = absl::StatusCodeToString(status.code());
    const LogField fields[] = {{"code", code}};
    LoggerFromFlags(program)->LogStructured(
        {.severity = absl::LogSeverity::kError,
         .message = message,
         .fields = fields});
    return 1;
  }
  std::fprintf(stderr, "%s: %s: %s\n", std::string(program).c_str(),
               absl::StatusCodeToString(status.code()).c_str(),
               message.c_str());
  return 1;
}

std::string WaitForShutdown() {
  sigset_t set = ShutdownSignals();
  int signal = 0;
  sigwait(&set, &signal);
  return signal == SIGINT ? "SIGINT" : "SIGTERM";
}

absl::StatusOr<ConnectionOptions> ConnectionOptionsFromFlags(
    absl::string_view name) {
  std::string urls = FlagOrEnv(FLAGS_nats_url, "NATS_URL");
  if (urls.empty()) urls = "nats://127.0.0.1:4222";
  ConnectionOptions options;
  options.servers = absl::StrSplit(urls, ',', absl::SkipEmpty());
  options.name = std::string(name);
  // Connection::Create rejects a mix of kinds and names the rule.
  options.credentials = {
      .user = FlagOrEnv(FLAGS_nats_user, "NATS_USER"),
      .password = FlagOrEnv(FLAGS_nats_password, "NATS_PASSWORD"),
      .token = FlagOrEnv(FLAGS_nats_token, "NATS_TOKEN"),
      .creds_file = FlagOrEnv(FLAGS_nats_creds, "NATS_CREDS"),
      .nkey = FlagOrEnv(FLAGS_nats_nkey, "NATS_NKEY"),
      .nkey_seed_file = FlagOrEnv(FLAGS_nats_nkey_seed, "NATS_NKEY_SEED"),
  };
  options.tls.ca_file = FlagOrEnv(FLAGS_nats_ca, "NATS_CA");
  options.tls.cert_file = FlagOrEnv(FLAGS_nats_cert, "NATS_CERT");
  options.tls.key_file = FlagOrEnv(FLAGS_nats_key, "NATS_KEY");
  options.logger = LoggerFromFlags(name);
  // Connection::Create checks the ratio and names the rule.
  options.trace_sample_ratio = absl::GetFlag(FLAGS_trace_sample_ratio);
  if (const std::string path = absl::GetFlag(FLAGS_trace_file); !path.empty()) {
    absl::StatusOr<std::unique_ptr<JsonLinesSpanExporter>> spans =
        JsonLinesSpanExporter::Create(path, name);
    if (!spans.ok()) return spans.status();
    options.span_sink = *std::move(spans);
  }
  return options;
}

std::shared_ptr<Logger> LoggerFromFlags(absl::string_view name) {
  const absl::LogSeverity level = absl::GetFlag(FLAGS_log_level).severity;
  if (absl::GetFlag(FLAGS_log_format) == LogFormat::kText) {
    return std::make_shared<StderrLogger>(level);
  }
  JsonLoggerOptions options;
  options.name = std::string(name);
  options.min_severity = level;
  return std::make_shared<JsonLogger>(std::move(options), stderr);
}

void PrintLine(absl::string_view component, absl::string_view trace_id,
               absl::string_view text) {
  // Components padded to one width so the trace IDs line up.
  std::string line =
      absl::StrFormat("%-13s trace=%s %s\n", component, trace_id, text);
  std::lock_guard<std::mutex> lock(g_print_mu);
  std::fwrite(line.data(), 1, line.size(), stdout);
  std::fflush(stdout);
}

std::string FormatLatency(absl::Duration d) {
  const double us = absl::ToDoubleMicroseconds(d);
  if (us < 10000) return absl::StrFormat("%.0f us", us);
  return absl::StrFormat("%.1f ms", us / 1000);
}

std::string RandomHex(int digits) {
  thread_local std::mt19937_64 gen{std::random_device{}()};
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(digits, '0');
  for (char& c : out) c = kHex[gen() & 0x0f];
  return out;
}

int StreamReplicas() { return absl::GetFlag(FLAGS_stream_replicas); }

StreamConfig UsersEventsStream() {
  StreamConfig stream;
  stream.name = "USERS";
  stream.description = "User events (natsgw example services)";
  stream.subjects = {"users.events.>"};
  stream.storage = StorageType::kFile;
  // Re-published events (same Nats-Msg-Id) within this window are stored
  // once; the e-mail service's idempotency store covers what comes later.
  stream.duplicate_window = absl::Minutes(2);
  stream.replicas = StreamReplicas();
  return stream;
}

}  // namespace natsgw::examples
