// The pure parts of natsgw::Service: documents, timestamps, subject and queue
// group resolution, and ValidateServiceConfig (which needs no connection, so
// it lives here rather than in service.cc).
#include "service_json.h"

#include <cstddef>
#include <cstdint>
#include <exception>
#include <map>
#include <set>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "natsgw/message_id.h"
#include "natsgw/status_macros.h"
#include "natsgw/validation.h"
#include "nlohmann/json.hpp"

namespace natsgw {
namespace internal {
namespace {

// Keeps insertion order, so documents read like the spec's examples (type
// first); consumers do not depend on the order.
using Json = nlohmann::ordered_json;

Json MetadataJson(const std::map<std::string, std::string>& metadata) {
  // An empty map must be {} and never null (natscli once rejected null).
  Json out = Json::object();
  for (const auto& [key, value] : metadata) out[key] = value;
  return out;
}

absl::StatusOr<std::string> Dump(const Json& doc) {
  try {
    // `replace`: invalid UTF-8 becomes U+FFFD instead of an exception.
    return doc.dump(-1, ' ', /*ensure_ascii=*/false,
                    Json::error_handler_t::replace);
  } catch (const std::exception& e) {
    return absl::InternalError(
        absl::StrCat("cannot serialize a Services API document: ", e.what()));
  }
}

// The identity fields shared by the three documents.
Json Identity(absl::string_view type, const ServiceConfig& config,
              absl::string_view id) {
  Json doc = Json::object();
  doc["type"] = std::string(type);
  doc["name"] = config.name;
  doc["id"] = std::string(id);
  doc["version"] = config.version;
  doc["metadata"] = MetadataJson(config.metadata);
  return doc;
}

template <typename Build>
absl::StatusOr<std::string> BuildAndDump(Build build) {
  try {
    return Dump(build());
  } catch (const std::exception& e) {
    return absl::InternalError(
        absl::StrCat("cannot build a Services API document: ", e.what()));
  }
}

}  // namespace

std::string FormatRfc3339Nano(absl::Time t) {
  // %E9S always prints 9 fractional digits (zero-padded), which makes the
  // trimming below correct: 5 ms is "05.005000000" -> "05.005". %E4Y pads
  // the year to the 4 digits RFC 3339 requires (%Y prints year 1 as "1").
  std::string s =
      absl::FormatTime("%E4Y-%m-%d%ET%H:%M:%E9S", t, absl::UTCTimeZone());
  const size_t dot = s.rfind('.');
  if (dot != std::string::npos) {
    size_t end = s.find_last_not_of('0');
    if (end == dot) end = dot - 1;  // no fraction left: drop the '.' too
    s.erase(end + 1);
  }
  s.push_back('Z');
  return s;
}

std::string EndpointSubject(const EndpointConfig& endpoint) {
  return endpoint.subject.empty() ? endpoint.name : endpoint.subject;
}

std::string ResolveQueueGroup(const ServiceConfig& config,
                              const EndpointConfig& endpoint) {
  return endpoint.queue_group.value_or(config.queue_group);
}

std::string ControlSubject(absl::string_view verb, absl::string_view name,
                           absl::string_view id) {
  std::string subject = absl::StrCat(kControlSubjectPrefix, ".", verb);
  if (!name.empty()) {
    absl::StrAppend(&subject, ".", name);
    if (!id.empty()) absl::StrAppend(&subject, ".", id);
  }
  return subject;
}

absl::StatusOr<std::string> PingJson(const ServiceConfig& config,
                                     absl::string_view id) {
  return BuildAndDump([&] { return Identity(kPingResponseType, config, id); });
}

absl::StatusOr<std::string> InfoJson(const ServiceConfig& config,
                                     absl::string_view id) {
  return BuildAndDump([&] {
    Json doc = Identity(kInfoResponseType, config, id);
    doc["description"] = config.description;
    Json endpoints = Json::array();
    for (const EndpointConfig& endpoint : config.endpoints) {
      Json e = Json::object();
      e["name"] = endpoint.name;
      e["subject"] = EndpointSubject(endpoint);
      e["queue_group"] = ResolveQueueGroup(config, endpoint);
      e["metadata"] = MetadataJson(endpoint.metadata);
      endpoints.push_back(std::move(e));
    }
    doc["endpoints"] = std::move(endpoints);
    return doc;
  });
}

absl::StatusOr<std::string> StatsJson(const ServiceConfig& config,
                                      absl::string_view id, absl::Time started,
                                      absl::Span<const EndpointStats> stats) {
  return BuildAndDump([&] {
    Json doc = Identity(kStatsResponseType, config, id);
    doc["started"] = FormatRfc3339Nano(started);
    Json endpoints = Json::array();
    for (size_t i = 0; i < config.endpoints.size(); ++i) {
      const EndpointConfig& endpoint = config.endpoints[i];
      const EndpointStats s = i < stats.size() ? stats[i] : EndpointStats{};
      Json e = Json::object();
      e["name"] = endpoint.name;
      e["subject"] = EndpointSubject(endpoint);
      e["queue_group"] = ResolveQueueGroup(config, endpoint);
      e["num_requests"] = s.num_requests;
      e["num_errors"] = s.num_errors;
      e["last_error"] = s.last_error;
      // Integer nanoseconds: Go unmarshals these into time.Duration (int64).
      e["processing_time"] = absl::ToInt64Nanoseconds(s.processing_time);
      e["average_processing_time"] =
          absl::ToInt64Nanoseconds(s.average_processing_time());
      Json data = Json::object();
      data["p50_ns"] = absl::ToInt64Nanoseconds(s.p50);
      data["p90_ns"] = absl::ToInt64Nanoseconds(s.p90);
      data["p99_ns"] = absl::ToInt64Nanoseconds(s.p99);
      data["p999_ns"] = absl::ToInt64Nanoseconds(s.p999);
      data["shed"] = s.shed;
      data["expired"] = s.expired;
      e["data"] = std::move(data);
      endpoints.push_back(std::move(e));
    }
    doc["endpoints"] = std::move(endpoints);
    return doc;
  });
}

namespace {

bool IsAsciiDigit(char c) { return c >= '0' && c <= '9'; }
bool IsAsciiAlnum(char c) {
  return IsAsciiDigit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
// [0-9A-Za-z-]
bool IsIdentifierChar(char c) { return IsAsciiAlnum(c) || c == '-'; }

bool AllDigits(absl::string_view s) {
  for (char c : s) {
    if (!IsAsciiDigit(c)) return false;
  }
  return true;
}

// 0|[1-9]\d*
bool IsNumericIdentifier(absl::string_view s) {
  return !s.empty() && AllDigits(s) && (s.size() == 1 || s[0] != '0');
}

// [0-9A-Za-z-]+
bool IsIdentifier(absl::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!IsIdentifierChar(c)) return false;
  }
  return true;
}

// Pre-release identifier: 0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]* — i.e. a
// numeric identifier, or any identifier with at least one non-digit.
bool IsPreReleaseIdentifier(absl::string_view s) {
  return IsIdentifier(s) && (!AllDigits(s) || IsNumericIdentifier(s));
}

}  // namespace

bool IsSemVer(absl::string_view version) {
  // Build metadata follows the first '+'; a pre-release follows the first '-'
  // before it (the core has no '-', and the pre-release has no '+').
  absl::string_view rest = version;
  const size_t plus = rest.find('+');
  if (plus != absl::string_view::npos) {
    for (absl::string_view id : absl::StrSplit(rest.substr(plus + 1), '.')) {
      if (!IsIdentifier(id)) return false;
    }
    rest = rest.substr(0, plus);
  }
  const size_t dash = rest.find('-');
  if (dash != absl::string_view::npos) {
    for (absl::string_view id : absl::StrSplit(rest.substr(dash + 1), '.')) {
      if (!IsPreReleaseIdentifier(id)) return false;
    }
    rest = rest.substr(0, dash);
  }
  int parts = 0;
  for (absl::string_view part : absl::StrSplit(rest, '.')) {
    if (++parts > 3 || !IsNumericIdentifier(part)) return false;
  }
  return parts == 3;
}

}  // namespace internal

namespace {

// ADR-33: service and endpoint metadata, keys plus values, at most 128 KiB.
constexpr size_t kMaxMetadataBytes = 128 * 1024;
constexpr absl::string_view kReservedMetadataPrefix = "_nats";
// Offending values are quoted in error messages, escaped and cut to this.
constexpr size_t kMaxQuotedBytes = 64;

std::string Quote(absl::string_view value) {
  const bool cut = value.size() > kMaxQuotedBytes;
  return absl::StrCat("\"", absl::CHexEscape(value.substr(0, kMaxQuotedBytes)),
                      cut ? "\"..." : "\"");
}

// ^[A-Za-z0-9_-]+$ (services-api.md b.1).
bool IsServiceName(absl::string_view name) {
  if (name.empty()) return false;
  for (char c : name) {
    if (!internal::IsIdentifierChar(c) && c != '_') return false;
  }
  return true;
}

absl::Status Invalid(absl::string_view what, absl::string_view rule) {
  return absl::InvalidArgumentError(absl::StrCat(what, ": ", rule));
}

absl::Status ValidateMetadata(absl::string_view owner,
                              const std::map<std::string, std::string>& md) {
  size_t total = 0;
  for (const auto& [key, value] : md) {
    if (absl::StartsWith(key, kReservedMetadataPrefix)) {
      return Invalid(
          absl::StrCat(owner, " metadata key ", Quote(key)),
          absl::StrCat("keys starting with \"", kReservedMetadataPrefix,
                       "\" are reserved for NATS (ADR-33)"));
    }
    total += key.size() + value.size();
  }
  if (total > kMaxMetadataBytes) {
    return Invalid(
        absl::StrCat(owner, " metadata"),
        absl::StrCat("keys plus values are ", total, " bytes; the limit is ",
                     kMaxMetadataBytes, " (128 KiB, ADR-33)"));
  }
  return absl::OkStatus();
}

absl::Status ValidateServe(absl::string_view owner, const ServeOptions& serve) {
  if (serve.workers < 0) {
    return Invalid(absl::StrCat(owner, " serve.workers ", serve.workers),
                   "must be >= 0 (0 runs the handler inline)");
  }
  if (serve.max_in_flight < 0) {
    return Invalid(
        absl::StrCat(owner, " serve.max_in_flight ", serve.max_in_flight),
        "must be >= 0 (0 means the default limit)");
  }
  // Connection::Serve refuses this too; checking it here keeps the promise
  // that nothing is subscribed when a config is invalid.
  if (serve.workers > 0 && serve.max_in_flight > 0 &&
      serve.max_in_flight < serve.workers) {
    return Invalid(
        absl::StrCat(owner, " serve.max_in_flight ", serve.max_in_flight),
        absl::StrCat("must be 0 or at least serve.workers (", serve.workers,
                     ")"));
  }
  if (serve.block_timeout < absl::ZeroDuration()) {
    return Invalid(absl::StrCat(owner, " serve.block_timeout ",
                                absl::FormatDuration(serve.block_timeout)),
                   "must not be negative");
  }
  return absl::OkStatus();
}

absl::Status Wrap(absl::string_view owner, const absl::Status& status) {
  if (status.ok()) return status;
  return absl::Status(status.code(),
                      absl::StrCat(owner, ": ", status.message()));
}

}  // namespace

absl::Status ValidateServiceConfig(const ServiceConfig& config) {
  if (!IsServiceName(config.name)) {
    return Invalid(absl::StrCat("service name ", Quote(config.name)),
                   "must be non-empty and match ^[A-Za-z0-9_-]+$");
  }
  const std::string service = absl::StrCat("service ", Quote(config.name));
  // The longest subject the service subscribes to must be a valid subject;
  // this bounds the name's length.
  NATSGW_RETURN_IF_ERROR(
      Wrap(absl::StrCat(service, " name is too long for its control subjects"),
           ValidateSubscribeSubject(internal::ControlSubject(
               "STATS", config.name, std::string(kMessageIdLength, 'x')))));
  if (!internal::IsSemVer(config.version)) {
    return Invalid(absl::StrCat(service, " version ", Quote(config.version)),
                   "must be a SemVer 2.0.0 version such as 1.0.0 or 2.1.0-rc.1 "
                   "(semver.org)");
  }
  NATSGW_RETURN_IF_ERROR(ValidateMetadata(service, config.metadata));
  NATSGW_RETURN_IF_ERROR(
      Wrap(absl::StrCat(service, " queue_group ", Quote(config.queue_group)),
           ValidateQueueGroup(config.queue_group)));
  NATSGW_RETURN_IF_ERROR(ValidateServe(service, config.serve));

  // Endpoints sharing a subject and queue group would split one stream of
  // requests between two handlers at random.
  std::map<std::pair<std::string, std::string>, size_t> seen;
  for (size_t i = 0; i < config.endpoints.size(); ++i) {
    const EndpointConfig& endpoint = config.endpoints[i];
    const std::string owner =
        absl::StrCat(service, " endpoint ", i, " (", Quote(endpoint.name), ")");
    if (!IsServiceName(endpoint.name)) {
      return Invalid(absl::StrCat(owner, " name"),
                     "must be non-empty and match ^[A-Za-z0-9_-]+$");
    }
    const std::string subject = internal::EndpointSubject(endpoint);
    NATSGW_RETURN_IF_ERROR(Wrap(absl::StrCat(owner, " subject"),
                                ValidateSubscribeSubject(subject)));
    if (absl::StartsWith(subject,
                         absl::StrCat(internal::kControlSubjectPrefix, "."))) {
      return Invalid(absl::StrCat(owner, " subject ", Quote(subject)),
                     "must not start with \"$SRV.\" (reserved for the "
                     "Services API control subjects)");
    }
    const std::string queue_group =
        internal::ResolveQueueGroup(config, endpoint);
    NATSGW_RETURN_IF_ERROR(
        Wrap(absl::StrCat(owner, " queue_group ", Quote(queue_group)),
             ValidateQueueGroup(queue_group)));
    auto [it, inserted] = seen.emplace(std::pair(subject, queue_group), i);
    if (!inserted) {
      return Invalid(
          absl::StrCat(owner, " subject ", Quote(subject), " queue_group ",
                       Quote(queue_group)),
          absl::StrCat("duplicates endpoint ", it->second, " (",
                       Quote(config.endpoints[it->second].name),
                       "); each subject + queue group may be served once"));
    }
    NATSGW_RETURN_IF_ERROR(ValidateMetadata(owner, endpoint.metadata));
    if (!endpoint.handler) {
      return Invalid(absl::StrCat(owner, " handler"), "must be set");
    }
    if (endpoint.serve.has_value()) {
      NATSGW_RETURN_IF_ERROR(ValidateServe(owner, *endpoint.serve));
    }
  }
  return absl::OkStatus();
}

}  // namespace natsgw
