// Fuzz target: the NATS Services API side of natsgw::Service: checking a
// ServiceConfig (ValidateServiceConfig, IsSemVer) and answering $SRV.PING,
// $SRV.INFO and $SRV.STATS requests (PingJson, InfoJson, StatsJson,
// FormatRfc3339Nano; gateway/src/service_json.h). The control handlers
// ignore the request's payload and headers, so what a hostile party can
// steer is what these documents carry: names, versions, metadata,
// descriptions, and handler error messages (EndpointStats::last_error),
// which may hold any bytes.
//
// Input layout: a ServiceConfig, its instance ID, start time and endpoint
// statistics, read field by field (strings are a length byte and bytes; see
// ReadConfig).
//
// Checked:
//   - IsSemVer agrees with the official SemVer 2.0.0 regular expression
//     (semver.org), run with std::regex on short versions;
//   - a rejected config is INVALID_ARGUMENT with a bounded message free of
//     raw control bytes; an accepted one has valid control and endpoint
//     subjects;
//   - every document is produced, parses as JSON, has the right type and
//     carries each field unchanged when it is valid UTF-8 (with U+FFFD in
//     place of invalid bytes otherwise), counters and durations as integer
//     nanoseconds;
//   - the start time is RFC 3339 with a trimmed fraction and parses back to
//     the same instant.
#include <cstddef>
#include <cstdint>
#include <map>
#include <regex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "fuzz_support.h"
#include "natsgw/endpoint_stats.h"
#include "natsgw/message_id.h"
#include "natsgw/service.h"
#include "natsgw/validation.h"
#include "nlohmann/json.hpp"
#include "service_json.h"

namespace natsgw::fuzz {
namespace {

using Json = nlohmann::json;

// --- Reference rules -------------------------------------------------------

// semver.org's suggested regular expression (ECMAScript flavour).
bool RefSemVer(const std::string& version) {
  static const std::regex* const kSemVer =
      new std::regex(R"(^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*))"
                     R"((?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))"
                     R"((?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?)"
                     R"((?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$)");
  return std::regex_match(version, *kSemVer);
}

// Well-formed UTF-8 (RFC 3629: shortest form, no surrogates, at most
// U+10FFFF).
bool IsUtf8(absl::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto b = static_cast<unsigned char>(s[i]);
    size_t n;
    uint32_t cp;
    if (b < 0x80) {
      ++i;
      continue;
    } else if (b >= 0xc2 && b <= 0xdf) {
      n = 1;
      cp = b & 0x1f;
    } else if (b >= 0xe0 && b <= 0xef) {
      n = 2;
      cp = b & 0x0f;
    } else if (b >= 0xf0 && b <= 0xf4) {
      n = 3;
      cp = b & 0x07;
    } else {
      return false;
    }
    if (i + n >= s.size()) return false;  // truncated sequence
    for (size_t k = 1; k <= n; ++k) {
      const auto c = static_cast<unsigned char>(s[i + k]);
      if ((c & 0xc0) != 0x80) return false;
      cp = cp << 6 | (c & 0x3f);
    }
    if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10ffff ||
        (cp >= 0xd800 && cp <= 0xdfff)) {
      return false;
    }
    i += n + 1;
  }
  return true;
}

// --- Input -----------------------------------------------------------------

// Years 0000-9999, as FormatRfc3339Nano requires.
constexpr int64_t kMinSeconds = -62'167'219'200;  // 0000-01-01T00:00:00Z
constexpr int64_t kMaxSeconds = 253'402'300'799;  // 9999-12-31T23:59:59Z

absl::Duration Nanos(Input& in) {
  return absl::Nanoseconds(static_cast<int64_t>(in.U64() >> 14));
}

std::map<std::string, std::string> ReadMetadata(Input& in, int max) {
  std::map<std::string, std::string> metadata;
  for (int n = in.Byte() % (max + 1); n > 0; --n) {
    std::string key(in.ShortString());
    metadata[key] = std::string(in.ShortString());
  }
  return metadata;
}

struct Case {
  ServiceConfig config;
  std::string id;
  absl::Time started;
  std::vector<EndpointStats> stats;
};

Case ReadConfig(Input& in) {
  Case c;
  const uint8_t flags = in.Byte();
  c.config.name = std::string(in.ShortString());
  c.config.version = std::string(in.ShortString());
  c.config.description = std::string(in.ShortString());
  c.config.queue_group = std::string(in.ShortString());
  c.config.metadata = ReadMetadata(in, 3);
  if (flags & 1) {
    c.config.serve.workers = static_cast<int8_t>(in.Byte());
    c.config.serve.max_in_flight = static_cast<int8_t>(in.Byte());
  }
  c.id = std::string(in.ShortString());
  const uint64_t range = static_cast<uint64_t>(kMaxSeconds - kMinSeconds) + 1;
  const int64_t seconds = kMinSeconds + static_cast<int64_t>(in.U64() % range);
  const int64_t nanos = static_cast<int64_t>(in.U64() % 1'000'000'000);
  c.started = absl::FromUnixSeconds(seconds) + absl::Nanoseconds(nanos);
  for (int n = in.Byte() % 4; n > 0; --n) {
    EndpointConfig e;
    e.name = std::string(in.ShortString());
    e.subject = std::string(in.ShortString());
    if (in.Byte() & 1) e.queue_group = std::string(in.ShortString());
    e.metadata = ReadMetadata(in, 2);
    e.handler = [](const Message&) -> absl::StatusOr<Reply> { return Reply{}; };
    c.config.endpoints.push_back(std::move(e));
    EndpointStats s;
    s.num_requests = in.U16();
    s.num_errors = in.Byte();
    s.last_error = std::string(in.ShortString());
    s.processing_time = Nanos(in);
    s.shed = in.Byte();
    s.expired = in.Byte();
    s.p50 = Nanos(in);
    s.p90 = Nanos(in);
    s.p99 = Nanos(in);
    s.p999 = Nanos(in);
    // One endpoint may lack statistics: it reports zeros.
    if ((flags & 2) == 0 || c.config.endpoints.size() > 1) {
      c.stats.push_back(std::move(s));
    }
  }
  return c;
}

// --- Checks ----------------------------------------------------------------

// `value` as a JSON string must carry `expected`, exactly when it is valid
// UTF-8.
void ExpectString(const Json& value, absl::string_view expected,
                  absl::string_view what) {
  FUZZ_CHECK(value.is_string(), what, " is not a JSON string");
  if (!IsUtf8(expected)) return;
  FUZZ_CHECK(value.get<std::string>() == expected, what, " \"",
             absl::CHexEscape(value.get<std::string>()), "\" should be \"",
             absl::CHexEscape(expected), "\"");
}

void ExpectMetadata(const Json& value,
                    const std::map<std::string, std::string>& metadata,
                    absl::string_view what) {
  FUZZ_CHECK(value.is_object(), what, " metadata is not an object");
  bool all_utf8 = true;
  for (const auto& [key, v] : metadata) all_utf8 &= IsUtf8(key) && IsUtf8(v);
  if (!all_utf8) return;
  FUZZ_CHECK(value.size() == metadata.size(), what, " metadata has ",
             value.size(), " entries, not ", metadata.size());
  for (const auto& [key, v] : metadata) {
    FUZZ_CHECK(value.contains(key), what, " metadata lost \"",
               absl::CHexEscape(key), "\"");
    ExpectString(value[key], v, what);
  }
}

Json Parse(const absl::StatusOr<std::string>& document,
           absl::string_view type) {
  FUZZ_CHECK(document.ok(), type, " failed: ", document.status().ToString());
  Json doc = Json::parse(*document, nullptr, /*allow_exceptions=*/false);
  FUZZ_CHECK(!doc.is_discarded() && doc.is_object(), type,
             " is not a JSON object: ", absl::CHexEscape(*document));
  FUZZ_CHECK(doc.value("type", "") == type, "type ", doc.value("type", ""),
             " instead of ", type);
  return doc;
}

void CheckIdentity(const Json& doc, const Case& c) {
  ExpectString(doc["name"], c.config.name, "name");
  ExpectString(doc["id"], c.id, "id");
  ExpectString(doc["version"], c.config.version, "version");
  ExpectMetadata(doc["metadata"], c.config.metadata, "service");
}

void CheckEndpoint(const Json& e, const Case& c, size_t i) {
  const EndpointConfig& endpoint = c.config.endpoints[i];
  ExpectString(e["name"], endpoint.name, "endpoint name");
  ExpectString(e["subject"], internal::EndpointSubject(endpoint),
               "endpoint subject");
  ExpectString(e["queue_group"],
               internal::ResolveQueueGroup(c.config, endpoint),
               "endpoint queue_group");
}

void CheckDocuments(const Case& c) {
  using internal::kInfoResponseType;
  using internal::kPingResponseType;
  using internal::kStatsResponseType;
  const std::string ping_type(kPingResponseType);
  const std::string info_type(kInfoResponseType);
  const std::string stats_type(kStatsResponseType);
  const Json ping = Parse(internal::PingJson(c.config, c.id), ping_type);
  CheckIdentity(ping, c);

  const Json info = Parse(internal::InfoJson(c.config, c.id), info_type);
  CheckIdentity(info, c);
  ExpectString(info["description"], c.config.description, "description");
  FUZZ_CHECK(info["endpoints"].is_array() &&
                 info["endpoints"].size() == c.config.endpoints.size(),
             "INFO lists the wrong number of endpoints");
  for (size_t i = 0; i < c.config.endpoints.size(); ++i) {
    CheckEndpoint(info["endpoints"][i], c, i);
    ExpectMetadata(info["endpoints"][i]["metadata"],
                   c.config.endpoints[i].metadata, "endpoint");
  }

  const Json stats = Parse(
      internal::StatsJson(c.config, c.id, c.started, c.stats), stats_type);
  CheckIdentity(stats, c);
  const std::string started = internal::FormatRfc3339Nano(c.started);
  ExpectString(stats["started"], started, "started");
  FUZZ_CHECK(stats["endpoints"].is_array() &&
                 stats["endpoints"].size() == c.config.endpoints.size(),
             "STATS lists the wrong number of endpoints");
  for (size_t i = 0; i < c.config.endpoints.size(); ++i) {
    const Json& e = stats["endpoints"][i];
    CheckEndpoint(e, c, i);
    const EndpointStats s = i < c.stats.size() ? c.stats[i] : EndpointStats{};
    auto integer = [&](const Json& v, int64_t want, absl::string_view what) {
      FUZZ_CHECK(v.is_number_integer() && v.get<int64_t>() == want, what,
                 " is ", v.dump(), ", not ", want);
    };
    integer(e["num_requests"], s.num_requests, "num_requests");
    integer(e["num_errors"], s.num_errors, "num_errors");
    ExpectString(e["last_error"], s.last_error, "last_error");
    integer(e["processing_time"], absl::ToInt64Nanoseconds(s.processing_time),
            "processing_time");
    integer(e["average_processing_time"],
            absl::ToInt64Nanoseconds(s.average_processing_time()),
            "average_processing_time");
    integer(e["data"]["p50_ns"], absl::ToInt64Nanoseconds(s.p50), "p50_ns");
    integer(e["data"]["p999_ns"], absl::ToInt64Nanoseconds(s.p999), "p999_ns");
    integer(e["data"]["shed"], s.shed, "shed");
    integer(e["data"]["expired"], s.expired, "expired");
  }
}

void CheckStarted(absl::Time t) {
  const std::string s = internal::FormatRfc3339Nano(t);
  static const std::regex* const kRfc3339 = new std::regex(
      R"(^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{0,8}[1-9])?Z$)");
  FUZZ_CHECK(std::regex_match(s, *kRfc3339), "started \"", s,
             "\" is not RFC 3339 with a trimmed fraction");
  absl::Time back;
  std::string error;
  FUZZ_CHECK(absl::ParseTime(absl::RFC3339_full, s, &back, &error) && back == t,
             "started \"", s, "\" does not parse back: ", error);
}

void CheckConfig(const Case& c) {
  const absl::Status valid = ValidateServiceConfig(c.config);
  if (!valid.ok()) {
    FUZZ_CHECK(IsCleanInvalidArgument(valid, 2048),
               "rejection is not a clean, bounded INVALID_ARGUMENT: ",
               absl::CHexEscape(valid.ToString()));
    return;
  }
  FUZZ_CHECK(internal::IsSemVer(c.config.version), "accepted version \"",
             absl::CHexEscape(c.config.version), "\" is no SemVer");
  const std::string instance(kMessageIdLength, 'x');
  for (absl::string_view verb : {"PING", "INFO", "STATS"}) {
    for (const std::string& subject :
         {internal::ControlSubject(verb, "", ""),
          internal::ControlSubject(verb, c.config.name, ""),
          internal::ControlSubject(verb, c.config.name, instance)}) {
      FUZZ_CHECK(ValidateSubscribeSubject(subject).ok(),
                 "accepted config, invalid control subject ",
                 absl::CHexEscape(subject));
    }
  }
  for (const EndpointConfig& e : c.config.endpoints) {
    const std::string subject = internal::EndpointSubject(e);
    FUZZ_CHECK(ValidateSubscribeSubject(subject).ok() &&
                   !absl::StartsWith(subject, "$SRV."),
               "accepted endpoint subject ", absl::CHexEscape(subject));
    FUZZ_CHECK(
        ValidateQueueGroup(internal::ResolveQueueGroup(c.config, e)).ok(),
        "accepted an invalid queue group");
  }
}

}  // namespace
}  // namespace natsgw::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace natsgw;        // NOLINT(build/namespaces)
  using namespace natsgw::fuzz;  // NOLINT(build/namespaces)
  Input in(data, size);
  const Case c = ReadConfig(in);

  // std::regex matches recursively; short versions keep it bounded.
  if (c.config.version.size() <= 64) {
    FUZZ_CHECK(
        internal::IsSemVer(c.config.version) == RefSemVer(c.config.version),
        "IsSemVer(\"", absl::CHexEscape(c.config.version), "\") is ",
        internal::IsSemVer(c.config.version));
  }
  CheckConfig(c);
  CheckDocuments(c);
  CheckStarted(c.started);
  return 0;
}
