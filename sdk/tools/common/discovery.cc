#include "discovery.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <tuple>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "natsgw/message_id.h"
#include "natsgw/status_macros.h"
#include "nlohmann/json.hpp"

namespace natsgw::tools {
namespace {

using Json = nlohmann::json;

constexpr absl::string_view kPingType = "io.nats.micro.v1.ping_response";
constexpr absl::string_view kInfoType = "io.nats.micro.v1.info_response";
constexpr absl::string_view kStatsType = "io.nats.micro.v1.stats_response";

// ---------------------------------------------------------------------------
// Reading answers. Each reader names the field that is missing or mistyped;
// nothing here throws (nlohmann::json is only asked for what was checked,
// and the public parsers catch at the boundary anyway).

absl::Status Invalid(absl::string_view where, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(where, ": ", what));
}

absl::StatusOr<Json> ParseObject(absl::string_view text,
                                 absl::string_view kind) {
  Json doc = Json::parse(text.begin(), text.end(), nullptr,
                         /*allow_exceptions=*/false);
  if (doc.is_discarded()) {
    return Invalid(kind,
                   absl::StrCat("not valid JSON (", text.size(), " bytes)"));
  }
  if (!doc.is_object()) return Invalid(kind, "not a JSON object");
  return doc;
}

absl::Status CheckType(const Json& doc, absl::string_view want,
                       absl::string_view kind) {
  auto it = doc.find("type");
  if (it == doc.end() || !it->is_string()) {
    return Invalid(kind, "field \"type\" is missing or not a string");
  }
  if (it->get_ref<const std::string&>() != want) {
    return Invalid(
        kind, absl::StrCat("field \"type\" is \"",
                           absl::CHexEscape(it->get_ref<const std::string&>()),
                           "\", want \"", want, "\""));
  }
  return absl::OkStatus();
}

// A string field; `required` false: absent or null reads as "".
absl::Status ReadString(const Json& doc, const char* field, bool required,
                        absl::string_view where, std::string* out) {
  auto it = doc.find(field);
  if (it == doc.end() || it->is_null()) {
    if (required) {
      return Invalid(where, absl::StrCat("field \"", field, "\" is missing"));
    }
    out->clear();
    return absl::OkStatus();
  }
  if (!it->is_string()) {
    return Invalid(where,
                   absl::StrCat("field \"", field, "\" is not a string"));
  }
  *out = it->get<std::string>();
  return absl::OkStatus();
}

// An integer field (a float is refused, as `nats micro stats` refuses it).
absl::Status ReadInt(const Json& doc, const char* field,
                     absl::string_view where, long long* out) {
  auto it = doc.find(field);
  if (it == doc.end() || it->is_null()) {
    return Invalid(where, absl::StrCat("field \"", field, "\" is missing"));
  }
  if (it->is_number_unsigned()) {
    const auto value = it->get<unsigned long long>();
    if (value > static_cast<unsigned long long>(
                    std::numeric_limits<long long>::max())) {
      return Invalid(where,
                     absl::StrCat("field \"", field, "\" is out of range"));
    }
    *out = static_cast<long long>(value);
    return absl::OkStatus();
  }
  if (!it->is_number_integer()) {
    return Invalid(where,
                   absl::StrCat("field \"", field, "\" is not an integer"));
  }
  *out = it->get<long long>();
  return absl::OkStatus();
}

// Metadata: an object of strings; absent or null reads as empty.
absl::Status ReadMetadata(const Json& doc, absl::string_view where,
                          std::map<std::string, std::string>* out) {
  out->clear();
  auto it = doc.find("metadata");
  if (it == doc.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_object()) {
    return Invalid(where, "field \"metadata\" is not an object");
  }
  for (auto entry = it->begin(); entry != it->end(); ++entry) {
    if (!entry.value().is_string()) {
      return Invalid(where,
                     absl::StrCat("metadata \"", absl::CHexEscape(entry.key()),
                                  "\" is not a string"));
    }
    (*out)[entry.key()] = entry.value().get<std::string>();
  }
  return absl::OkStatus();
}

// The "endpoints" array: absent or null reads as empty when not `required`.
absl::StatusOr<const Json*> ReadEndpoints(const Json& doc, bool required,
                                          absl::string_view where) {
  static const Json* const kEmpty = new Json(Json::array());
  auto it = doc.find("endpoints");
  if (it == doc.end() || it->is_null()) {
    if (required) return Invalid(where, "field \"endpoints\" is missing");
    return kEmpty;
  }
  if (!it->is_array()) {
    return Invalid(where, "field \"endpoints\" is not an array");
  }
  for (const Json& e : *it) {
    if (!e.is_object()) {
      return Invalid(where, "an entry of \"endpoints\" is not an object");
    }
  }
  return &*it;
}

absl::StatusOr<ServiceInfo> ParseInfoUnsafe(absl::string_view json) {
  NATSGW_ASSIGN_OR_RETURN(Json doc, ParseObject(json, "INFO answer"));
  NATSGW_RETURN_IF_ERROR(CheckType(doc, kInfoType, "INFO answer"));
  ServiceInfo info;
  constexpr absl::string_view kWhere = "INFO answer";
  NATSGW_RETURN_IF_ERROR(ReadString(doc, "name", true, kWhere, &info.name));
  NATSGW_RETURN_IF_ERROR(ReadString(doc, "id", true, kWhere, &info.id));
  NATSGW_RETURN_IF_ERROR(
      ReadString(doc, "version", true, kWhere, &info.version));
  NATSGW_RETURN_IF_ERROR(
      ReadString(doc, "description", false, kWhere, &info.description));
  NATSGW_RETURN_IF_ERROR(ReadMetadata(doc, kWhere, &info.metadata));
  NATSGW_ASSIGN_OR_RETURN(const Json* endpoints,
                          ReadEndpoints(doc, false, kWhere));
  for (const Json& e : *endpoints) {
    EndpointInfo endpoint;
    const std::string where = absl::StrCat(
        "INFO answer of ", info.name, ", endpoint ", info.endpoints.size());
    NATSGW_RETURN_IF_ERROR(ReadString(e, "name", true, where, &endpoint.name));
    NATSGW_RETURN_IF_ERROR(
        ReadString(e, "subject", true, where, &endpoint.subject));
    NATSGW_RETURN_IF_ERROR(
        ReadString(e, "queue_group", false, where, &endpoint.queue_group));
    NATSGW_RETURN_IF_ERROR(ReadMetadata(e, where, &endpoint.metadata));
    info.endpoints.push_back(std::move(endpoint));
  }
  info.raw_json = std::string(json);
  return info;
}

absl::StatusOr<ServiceStatsInfo> ParseStatsUnsafe(absl::string_view json) {
  NATSGW_ASSIGN_OR_RETURN(Json doc, ParseObject(json, "STATS answer"));
  NATSGW_RETURN_IF_ERROR(CheckType(doc, kStatsType, "STATS answer"));
  ServiceStatsInfo stats;
  constexpr absl::string_view kWhere = "STATS answer";
  NATSGW_RETURN_IF_ERROR(ReadString(doc, "name", true, kWhere, &stats.name));
  NATSGW_RETURN_IF_ERROR(ReadString(doc, "id", true, kWhere, &stats.id));
  NATSGW_RETURN_IF_ERROR(
      ReadString(doc, "version", true, kWhere, &stats.version));
  NATSGW_RETURN_IF_ERROR(
      ReadString(doc, "started", true, kWhere, &stats.started));
  NATSGW_ASSIGN_OR_RETURN(const Json* endpoints,
                          ReadEndpoints(doc, true, kWhere));
  for (const Json& e : *endpoints) {
    EndpointStatsInfo endpoint;
    const std::string where = absl::StrCat(
        "STATS answer of ", stats.name, ", endpoint ", stats.endpoints.size());
    NATSGW_RETURN_IF_ERROR(ReadString(e, "name", true, where, &endpoint.name));
    NATSGW_RETURN_IF_ERROR(
        ReadString(e, "subject", true, where, &endpoint.subject));
    NATSGW_RETURN_IF_ERROR(
        ReadString(e, "queue_group", false, where, &endpoint.queue_group));
    NATSGW_RETURN_IF_ERROR(
        ReadInt(e, "num_requests", where, &endpoint.num_requests));
    NATSGW_RETURN_IF_ERROR(
        ReadInt(e, "num_errors", where, &endpoint.num_errors));
    NATSGW_RETURN_IF_ERROR(
        ReadInt(e, "processing_time", where, &endpoint.processing_time_ns));
    NATSGW_RETURN_IF_ERROR(ReadInt(e, "average_processing_time", where,
                                   &endpoint.average_processing_time_ns));
    NATSGW_RETURN_IF_ERROR(
        ReadString(e, "last_error", true, where, &endpoint.last_error));
    stats.endpoints.push_back(std::move(endpoint));
  }
  stats.raw_json = std::string(json);
  return stats;
}

absl::StatusOr<PingInfo> ParsePingUnsafe(absl::string_view json) {
  NATSGW_ASSIGN_OR_RETURN(Json doc, ParseObject(json, "PING answer"));
  NATSGW_RETURN_IF_ERROR(CheckType(doc, kPingType, "PING answer"));
  PingInfo ping;
  constexpr absl::string_view kWhere = "PING answer";
  NATSGW_RETURN_IF_ERROR(ReadString(doc, "name", true, kWhere, &ping.name));
  NATSGW_RETURN_IF_ERROR(ReadString(doc, "id", true, kWhere, &ping.id));
  NATSGW_RETURN_IF_ERROR(
      ReadString(doc, "version", true, kWhere, &ping.version));
  ping.rtt = absl::ZeroDuration();
  return ping;
}

// Runs `parse`, turning anything thrown into INVALID_ARGUMENT: no exception
// leaves this library.
template <class T, class Fn>
absl::StatusOr<T> NoThrow(absl::string_view kind, Fn&& parse) {
  try {
    return parse();
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(kind, " answer: ", e.what()));
  } catch (...) {
    return absl::InvalidArgumentError(
        absl::StrCat(kind, " answer: unreadable"));
  }
}

// ---------------------------------------------------------------------------
// Scatter-gather.

// [A-Za-z0-9_-]+: a Services API name, and what an id must be to sit in a
// subject token (services-api.md b.1).
bool IsNameToken(absl::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '_' &&
        c != '-') {
      return false;
    }
  }
  return true;
}

absl::Status ValidateDiscoverOptions(const DiscoverOptions& options) {
  if (!options.name.empty() && !IsNameToken(options.name)) {
    return absl::InvalidArgumentError(
        absl::StrCat("DiscoverOptions.name \"", absl::CHexEscape(options.name),
                     "\" is not a service name ([A-Za-z0-9_-]+)"));
  }
  if (!options.id.empty()) {
    if (options.name.empty()) {
      return absl::InvalidArgumentError(
          "DiscoverOptions.id needs DiscoverOptions.name ($SRV.<VERB>.<name>."
          "<id>)");
    }
    if (!IsNameToken(options.id)) {
      return absl::InvalidArgumentError(
          absl::StrCat("DiscoverOptions.id \"", absl::CHexEscape(options.id),
                       "\" is not an instance id ([A-Za-z0-9_-]+)"));
    }
  }
  if (options.wait <= absl::ZeroDuration() ||
      options.wait == absl::InfiniteDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("DiscoverOptions.wait must be positive and finite, got ",
                     absl::FormatDuration(options.wait)));
  }
  if (options.max_answers < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("DiscoverOptions.max_answers must not be negative, got ",
                     options.max_answers));
  }
  return absl::OkStatus();
}

// Whatever answers: collecting stops here, so that a flood on the inbox
// cannot exhaust memory.
constexpr size_t kMaxAnswers = 10000;
constexpr size_t kMaxAnswerBytes = 64 << 20;

struct Answer {
  std::string data;
  absl::Duration rtt;
};

// Whether `message` is the server's "no responders" status: nobody
// subscribes to the control subject, so no service runs at all.
bool IsNoResponders(const Message& message) {
  if (!message.data.empty()) return false;
  std::optional<absl::string_view> status = message.headers.Get("Status");
  return status.has_value() && absl::StartsWith(*status, "503");
}

// Sends one $SRV.<verb>[.<name>[.<id>]] request and collects the answers
// until options.wait passes, options.max_answers arrived, the server says
// nobody listens, or `enough` (if set) is true of an answer.
absl::StatusOr<std::vector<Answer>> Collect(
    Connection& conn, absl::string_view verb, const DiscoverOptions& options,
    std::function<bool(absl::string_view)> enough = nullptr) {
  NATSGW_RETURN_IF_ERROR(ValidateDiscoverOptions(options));
  std::string subject = absl::StrCat("$SRV.", verb);
  std::string metric_subject = subject;
  if (!options.name.empty()) {
    absl::StrAppend(&subject, ".", options.name);
    absl::StrAppend(&metric_subject, ".*");
  }
  if (!options.id.empty()) {
    absl::StrAppend(&subject, ".", options.id);
    absl::StrAppend(&metric_subject, ".*");
  }

  // Shared with the handler, which the subscription may destroy after this
  // frame has returned.
  struct State {
    std::mutex mu;
    std::condition_variable cv;
    std::vector<Answer> answers;
    size_t bytes = 0;
    bool finished = false;  // stop collecting
    bool closed = false;    // no more answers will be taken
    absl::Time start;
  };
  auto state = std::make_shared<State>();
  const size_t max_answers = static_cast<size_t>(options.max_answers);

  SubscribeOptions subscribe;
  // One label for every inbox: they are random, one per call.
  subscribe.metric_subject = "_INBOX.discover";
  const std::string inbox = absl::StrCat("_INBOX.", NewMessageId());
  NATSGW_ASSIGN_OR_RETURN(
      std::unique_ptr<Subscription> sub,
      conn.Subscribe(
          inbox, "",
          [state, max_answers,
           enough = std::move(enough)](const Message& message) {
            std::lock_guard<std::mutex> lock(state->mu);
            if (state->closed) return;
            if (IsNoResponders(message)) {
              state->finished = true;
            } else {
              state->answers.push_back(
                  {message.data, message.received_at - state->start});
              state->bytes += message.data.size();
              if ((max_answers > 0 && state->answers.size() >= max_answers) ||
                  state->answers.size() >= kMaxAnswers ||
                  state->bytes >= kMaxAnswerBytes ||
                  (enough && enough(message.data))) {
                state->finished = true;
              }
            }
            if (state->finished) state->closed = true;
            state->cv.notify_all();
          },
          subscribe));

  PublishOptions publish;
  publish.reply_to = inbox;
  publish.metric_subject = metric_subject;
  {
    std::lock_guard<std::mutex> lock(state->mu);
    state->start = absl::Now();
  }
  const auto deadline = std::chrono::steady_clock::now() +
                        absl::ToChronoNanoseconds(options.wait);
  // nats.js sends an empty body; natscli sends {}. Services ignore it.
  NATSGW_RETURN_IF_ERROR(conn.Publish(subject, "", publish).status());
  // Publishes are coalesced for up to ~1 ms; a ping's round trip is not to
  // include that. Answers are collected meanwhile, and a failed flush only
  // means fewer of them.
  (void)conn.Flush(options.wait);

  std::vector<Answer> answers;
  {
    std::unique_lock<std::mutex> lock(state->mu);
    state->cv.wait_until(lock, deadline, [&] { return state->finished; });
    state->closed = true;
    answers = std::move(state->answers);
  }
  // Answers arriving after this are dropped by the server (no interest).
  (void)sub->Unsubscribe();
  return answers;
}

template <class T>
void SortByNameAndId(std::vector<T>& items) {
  std::sort(items.begin(), items.end(), [](const T& a, const T& b) {
    return std::tie(a.name, a.id) < std::tie(b.name, b.id);
  });
}

// Whether the NATS subject `pattern` ('*' one token, '>' the rest) matches
// the concrete `subject`.
bool SubjectMatches(absl::string_view pattern, absl::string_view subject) {
  std::vector<absl::string_view> p = absl::StrSplit(pattern, '.');
  std::vector<absl::string_view> s = absl::StrSplit(subject, '.');
  for (size_t i = 0; i < p.size(); ++i) {
    if (p[i] == ">") return i == p.size() - 1 && s.size() > i;
    if (i >= s.size()) return false;
    if (p[i] != "*" && p[i] != s[i]) return false;
  }
  return p.size() == s.size();
}

const EndpointInfo* EndpointServing(const ServiceInfo& info,
                                    absl::string_view subject) {
  // An exact subject wins over a wildcard one.
  for (const EndpointInfo& e : info.endpoints) {
    if (e.subject == subject) return &e;
  }
  for (const EndpointInfo& e : info.endpoints) {
    if (SubjectMatches(e.subject, subject)) return &e;
  }
  return nullptr;
}

std::string Get(const std::map<std::string, std::string>& metadata,
                const std::string& key) {
  auto it = metadata.find(key);
  return it == metadata.end() ? std::string() : it->second;
}

bool HasTypes(const EndpointInfo& e) {
  return !Get(e.metadata, "fbs.request_type").empty() &&
         !Get(e.metadata, "fbs.response_type").empty();
}

}  // namespace

absl::StatusOr<ServiceInfo> ParseInfo(absl::string_view json) {
  return NoThrow<ServiceInfo>("INFO", [&] { return ParseInfoUnsafe(json); });
}

absl::StatusOr<ServiceStatsInfo> ParseStats(absl::string_view json) {
  return NoThrow<ServiceStatsInfo>("STATS",
                                   [&] { return ParseStatsUnsafe(json); });
}

absl::StatusOr<PingInfo> ParsePing(absl::string_view json) {
  return NoThrow<PingInfo>("PING", [&] { return ParsePingUnsafe(json); });
}

absl::StatusOr<std::vector<PingInfo>> DiscoverPing(
    Connection& conn, const DiscoverOptions& options, int* malformed) {
  NATSGW_ASSIGN_OR_RETURN(std::vector<Answer> answers,
                          Collect(conn, "PING", options));
  std::vector<PingInfo> out;
  int bad = 0;
  for (const Answer& answer : answers) {
    absl::StatusOr<PingInfo> ping = ParsePing(answer.data);
    if (!ping.ok()) {
      ++bad;
      continue;
    }
    ping->rtt = answer.rtt;
    out.push_back(*std::move(ping));
  }
  if (malformed != nullptr) *malformed = bad;
  SortByNameAndId(out);
  return out;
}

absl::StatusOr<std::vector<ServiceInfo>> DiscoverInfo(
    Connection& conn, const DiscoverOptions& options, int* malformed) {
  NATSGW_ASSIGN_OR_RETURN(std::vector<Answer> answers,
                          Collect(conn, "INFO", options));
  std::vector<ServiceInfo> out;
  int bad = 0;
  for (const Answer& answer : answers) {
    absl::StatusOr<ServiceInfo> info = ParseInfo(answer.data);
    if (!info.ok()) {
      ++bad;
      continue;
    }
    out.push_back(*std::move(info));
  }
  if (malformed != nullptr) *malformed = bad;
  SortByNameAndId(out);
  return out;
}

absl::StatusOr<std::vector<ServiceStatsInfo>> DiscoverStats(
    Connection& conn, const DiscoverOptions& options, int* malformed) {
  NATSGW_ASSIGN_OR_RETURN(std::vector<Answer> answers,
                          Collect(conn, "STATS", options));
  std::vector<ServiceStatsInfo> out;
  int bad = 0;
  for (const Answer& answer : answers) {
    absl::StatusOr<ServiceStatsInfo> stats = ParseStats(answer.data);
    if (!stats.ok()) {
      ++bad;
      continue;
    }
    out.push_back(*std::move(stats));
  }
  if (malformed != nullptr) *malformed = bad;
  SortByNameAndId(out);
  return out;
}

absl::StatusOr<MethodInfo> ResolveMethod(Connection& conn, SchemaSet& schemas,
                                         absl::string_view subject,
                                         absl::Duration wait) {
  absl::StatusOr<MethodInfo> local = schemas.MethodForSubject(subject);
  if (local.ok() || local.status().code() != absl::StatusCode::kNotFound) {
    return local;
  }

  // Every service is asked (the subject need not start with the service's
  // name); collecting stops at the first answer that settles it.
  DiscoverOptions options;
  options.wait = wait;
  const std::string wanted(subject);
  NATSGW_ASSIGN_OR_RETURN(
      std::vector<Answer> answers,
      Collect(conn, "INFO", options, [&wanted](absl::string_view data) {
        absl::StatusOr<ServiceInfo> info = ParseInfo(data);
        if (!info.ok()) return false;
        const EndpointInfo* e = EndpointServing(*info, wanted);
        return e != nullptr && HasTypes(*e);
      }));

  std::vector<ServiceInfo> infos;
  for (const Answer& answer : answers) {
    absl::StatusOr<ServiceInfo> info = ParseInfo(answer.data);
    if (info.ok()) infos.push_back(*std::move(info));
  }
  SortByNameAndId(infos);

  const ServiceInfo* serving = nullptr;
  const EndpointInfo* endpoint = nullptr;
  std::vector<std::string> untyped;
  for (const ServiceInfo& info : infos) {
    const EndpointInfo* e = EndpointServing(info, subject);
    if (e == nullptr) continue;
    if (!HasTypes(*e)) {
      untyped.push_back(info.name);
      continue;
    }
    serving = &info;
    endpoint = e;
    break;
  }
  if (endpoint == nullptr) {
    if (!untyped.empty()) {
      return absl::NotFoundError(absl::StrCat(
          "service ", untyped.front(), " serves '", subject,
          "' but does not announce its FlatBuffers types (endpoint metadata "
          "fbs.request_type, fbs.response_type); load its schema with "
          "--schema"));
    }
    return absl::NotFoundError(absl::StrCat(
        "no loaded schema serves '", absl::CHexEscape(subject), "' (",
        local.status().message(), "), and none of the ", infos.size(),
        " service instance(s) answering $SRV.INFO within ",
        absl::FormatDuration(wait),
        " serves it; check the subject, or load its schema with --schema"));
  }

  MethodInfo m;
  m.subject = endpoint->subject;
  m.service = Get(serving->metadata, "fbs.service");
  if (m.service.empty()) m.service = serving->name;
  m.method = endpoint->name;
  m.request_type = Get(endpoint->metadata, "fbs.request_type");
  m.response_type = Get(endpoint->metadata, "fbs.response_type");
  const std::string origin =
      absl::StrCat("$SRV.INFO of ", serving->name, " ", serving->id);
  if (!schemas.HasTable(m.request_type) || !schemas.HasTable(m.response_type)) {
    const std::string encoded = Get(serving->metadata, "fbs.bfbs");
    if (encoded.empty()) {
      return absl::NotFoundError(absl::StrCat(
          "service ", serving->name, " serves '", subject, "' with ",
          m.request_type, " -> ", m.response_type,
          ", but announces no binary schema (service metadata fbs.bfbs) and "
          "no loaded schema declares those types; load its schema with "
          "--schema"));
    }
    std::string bfbs;
    if (!absl::Base64Unescape(encoded, &bfbs)) {
      return absl::InvalidArgumentError(
          absl::StrCat(origin, ": service metadata fbs.bfbs is not base64"));
    }
    NATSGW_RETURN_IF_ERROR(schemas.AddBinarySchema(bfbs, origin));
    for (const std::string& type : {m.request_type, m.response_type}) {
      if (!schemas.HasTable(type)) {
        return absl::NotFoundError(absl::StrCat(
            "the binary schema announced in ", origin,
            " does not declare table ", type,
            " that its endpoint names; load the schema with --schema"));
      }
    }
  }
  m.file_identifier = Get(endpoint->metadata, "fbs.file_identifier");
  if (m.file_identifier.empty()) {
    absl::StatusOr<std::string> id = schemas.FileIdentifier(m.request_type);
    if (id.ok()) m.file_identifier = *id;
  }
  for (const MethodInfo& known : schemas.Methods()) {
    if (known.service == m.service && known.method == m.method) {
      m.idempotent = known.idempotent;
      break;
    }
  }
  return m;
}

std::vector<AnnouncedSchema> AnnouncedSchemas(
    const std::vector<ServiceInfo>& infos) {
  std::vector<AnnouncedSchema> out;
  std::set<std::string> seen;
  for (const ServiceInfo& info : infos) {
    auto encoded = info.metadata.find("fbs.bfbs");
    if (encoded == info.metadata.end()) continue;
    std::string bfbs;
    if (!absl::Base64Unescape(encoded->second, &bfbs)) continue;
    if (!seen.insert(bfbs).second) continue;
    AnnouncedSchema schema{info.name, std::move(bfbs), {}};
    for (const EndpointInfo& endpoint : info.endpoints) {
      auto type = endpoint.metadata.find("fbs.request_type");
      schema.request_types.push_back(
          type == endpoint.metadata.end() ? "" : type->second);
    }
    out.push_back(std::move(schema));
  }
  return out;
}

}  // namespace natsgw::tools
