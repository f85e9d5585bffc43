// natsgw services ls|info|stats [name]: what the NATS Services API says
// about the running services ($SRV.PING, $SRV.INFO, $SRV.STATS), as tables
// for people or JSON for scripts.
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "cli.h"
#include "flags.h"
#include "natsgw/status_macros.h"

namespace natsgw::cli {
namespace {

tools::DiscoverOptions Options(const std::string& name) {
  tools::DiscoverOptions options;
  options.name = name;
  options.wait = absl::GetFlag(FLAGS_wait);
  return options;
}

std::string Nobody(const std::string& name) {
  return absl::StrCat(
      name.empty() ? "no service"
                   : absl::StrCat("no instance of service \"", name, "\""),
      " answered within ", absl::FormatDuration(absl::GetFlag(FLAGS_wait)));
}

// Answers as received, as one JSON array.
template <typename Answer>
std::string RawArray(const std::vector<Answer>& answers) {
  std::vector<absl::string_view> raw;
  for (const Answer& answer : answers) raw.push_back(answer.raw_json);
  return absl::StrCat("[", absl::StrJoin(raw, ","), "]\n");
}

absl::Status Ls(Connection& conn, const std::string& name) {
  // Both questions at once, each collecting for --wait: an instance that
  // answers PING but whose INFO is lost or malformed still counts.
  absl::StatusOr<std::vector<tools::PingInfo>> pings =
      absl::UnknownError("not asked");
  std::thread ping([&] { pings = tools::DiscoverPing(conn, Options(name)); });
  absl::StatusOr<std::vector<tools::ServiceInfo>> infos =
      tools::DiscoverInfo(conn, Options(name));
  ping.join();
  if (!infos.ok()) return infos.status();
  if (!pings.ok()) return pings.status();

  struct Row {
    std::set<std::string> instances;
    std::set<std::string> endpoints;
    std::string description;
  };
  std::map<std::pair<std::string, std::string>, Row> rows;
  for (const tools::PingInfo& p : *pings) {
    rows[{p.name, p.version}].instances.insert(p.id);
  }
  for (const tools::ServiceInfo& info : *infos) {
    Row& row = rows[{info.name, info.version}];
    row.instances.insert(info.id);
    for (const tools::EndpointInfo& endpoint : info.endpoints) {
      row.endpoints.insert(endpoint.subject);
    }
    if (row.description.empty()) row.description = info.description;
  }
  if (absl::GetFlag(FLAGS_json)) {
    std::vector<std::string> items;
    for (const auto& [key, row] : rows) {
      std::vector<std::string> instances, endpoints;
      for (const std::string& id : row.instances) {
        instances.push_back(JsonString(id));
      }
      for (const std::string& subject : row.endpoints) {
        endpoints.push_back(JsonString(subject));
      }
      items.push_back(
          absl::StrCat("{\"name\":", JsonString(key.first),
                       ",\"version\":", JsonString(key.second),
                       ",\"instances\":[", absl::StrJoin(instances, ","),
                       "],\"endpoints\":[", absl::StrJoin(endpoints, ","),
                       "],\"description\":", JsonString(row.description), "}"));
    }
    Out(absl::StrCat("[", absl::StrJoin(items, ","), "]\n"));
  } else if (rows.empty() && name.empty()) {
    Err(absl::StrCat(Nobody(name), "\n"));
  } else if (!rows.empty()) {
    std::vector<std::vector<std::string>> table = {
        {"NAME", "VERSION", "INSTANCES", "ENDPOINTS", "DESCRIPTION"}};
    for (const auto& [key, row] : rows) {
      table.push_back(
          {key.first, key.second, absl::StrCat(row.instances.size()),
           row.endpoints.empty() ? "-" : absl::StrJoin(row.endpoints, ","),
           row.description});
    }
    Out(FormatTable(table));
  }
  if (rows.empty() && !name.empty()) return absl::NotFoundError(Nobody(name));
  return absl::OkStatus();
}

absl::Status Info(Connection& conn, const std::string& name) {
  NATSGW_ASSIGN_OR_RETURN(std::vector<tools::ServiceInfo> infos,
                          tools::DiscoverInfo(conn, Options(name)));
  if (absl::GetFlag(FLAGS_json)) {
    Out(RawArray(infos));
  } else if (infos.empty() && name.empty()) {
    Err(absl::StrCat(Nobody(name), "\n"));
  }
  if (infos.empty()) {
    return name.empty() ? absl::OkStatus() : absl::NotFoundError(Nobody(name));
  }
  if (absl::GetFlag(FLAGS_json)) return absl::OkStatus();
  std::string out;
  for (const tools::ServiceInfo& info : infos) {
    if (!out.empty()) out += "\n";
    absl::StrAppend(
        &out, info.name, " ", info.version, ", instance ", info.id,
        info.description.empty() ? "" : absl::StrCat(": ", info.description),
        "\n");
    if (!info.metadata.empty()) {
      std::vector<std::string> metadata;
      for (const auto& [key, value] : info.metadata) {
        // The binary schema is long base64: its size says enough.
        metadata.push_back(
            key == "fbs.bfbs"
                ? absl::StrCat(key, "=(", value.size(), " bytes of base64)")
                : absl::StrCat(key, "=", value));
      }
      absl::StrAppend(&out, "  metadata: ", absl::StrJoin(metadata, " "), "\n");
    }
    std::vector<std::vector<std::string>> table = {
        {"  ENDPOINT", "SUBJECT", "QUEUE", "REQUEST -> RESPONSE"}};
    for (const tools::EndpointInfo& endpoint : info.endpoints) {
      auto get = [&endpoint](const std::string& key) -> std::string {
        auto it = endpoint.metadata.find(key);
        return it == endpoint.metadata.end() ? "?" : it->second;
      };
      const bool typed = endpoint.metadata.contains("fbs.request_type");
      table.push_back(
          {absl::StrCat("  ", endpoint.name), endpoint.subject,
           endpoint.queue_group.empty() ? "-" : endpoint.queue_group,
           typed ? absl::StrCat(get("fbs.request_type"), " -> ",
                                get("fbs.response_type"))
                 : "-"});
    }
    absl::StrAppend(&out, FormatTable(table));
  }
  Out(out);
  return absl::OkStatus();
}

absl::Status Stats(Connection& conn, const std::string& name) {
  NATSGW_ASSIGN_OR_RETURN(std::vector<tools::ServiceStatsInfo> stats,
                          tools::DiscoverStats(conn, Options(name)));
  if (absl::GetFlag(FLAGS_json)) {
    Out(RawArray(stats));
  } else if (stats.empty() && name.empty()) {
    Err(absl::StrCat(Nobody(name), "\n"));
  } else if (!stats.empty()) {
    std::vector<std::vector<std::string>> table = {
        {"SERVICE", "INSTANCE", "ENDPOINT", "SUBJECT", "REQUESTS", "ERRORS",
         "AVG TIME", "LAST ERROR"}};
    for (const tools::ServiceStatsInfo& service : stats) {
      for (const tools::EndpointStatsInfo& endpoint : service.endpoints) {
        table.push_back({service.name, service.id, endpoint.name,
                         endpoint.subject, absl::StrCat(endpoint.num_requests),
                         absl::StrCat(endpoint.num_errors),
                         endpoint.num_requests == 0
                             ? "-"
                             : HumanDuration(absl::Nanoseconds(
                                   endpoint.average_processing_time_ns)),
                         endpoint.last_error.empty() ? std::string("-")
                                                     : endpoint.last_error});
      }
    }
    Out(FormatTable(table));
  }
  if (stats.empty() && !name.empty()) return absl::NotFoundError(Nobody(name));
  return absl::OkStatus();
}

absl::Status RunServices(const Invocation& invocation) {
  const std::string& verb = invocation.args[0];
  const std::string name = invocation.args.size() > 1 ? invocation.args[1] : "";
  if (verb != "ls" && verb != "info" && verb != "stats") {
    return UsageError(absl::StrCat("unknown services command \"", verb,
                                   "\"; expected ls, info or stats"));
  }
  if (absl::GetFlag(FLAGS_wait) <= absl::ZeroDuration()) {
    return UsageError("--wait must be positive");
  }
  NATSGW_ASSIGN_OR_RETURN(std::unique_ptr<Connection> conn, Connect());
  if (verb == "ls") return Ls(*conn, name);
  if (verb == "info") return Info(*conn, name);
  return Stats(*conn, name);
}

}  // namespace

const Command& ServicesCommand() {
  static const Command* command = new Command{
      .name = "services",
      .synopsis = "services ls|info|stats [name]",
      .summary = "list, describe and show statistics of the running services",
      .description =
          "Asks the NATS Services API ($SRV.PING, $SRV.INFO, $SRV.STATS, as "
          "`nats micro` does) and collects every instance's answer for "
          "--wait; [name] restricts it to one service.\n\n"
          "ls: a table NAME VERSION INSTANCES ENDPOINTS DESCRIPTION, one row "
          "per service and version.\n\n"
          "info: per instance, its metadata and endpoints: name, subject, "
          "queue group, and the FlatBuffers request -> response types "
          "(endpoint metadata fbs.request_type, fbs.response_type).\n\n"
          "stats: per instance and endpoint: requests, errors, average "
          "processing time and the last error.\n\n"
          "With --json, ls prints an array of {name, version, instances, "
          "endpoints, description}; info and stats print the array of the "
          "instances' Services API answers as received "
          "(io.nats.micro.v1.info_response, stats_response). No answer is "
          "not an error (\"no service answered\" on stderr), except when "
          "[name] was given.",
      .flags =
          {
              {"wait", "DURATION",
               "How long answers are collected (default 1s)"},
              {"json", "", "Print JSON instead of a table"},
          },
      .examples =
          "natsgw services ls\n"
          "natsgw services info users\n"
          "natsgw services stats users --json | jq "
          "'.[].endpoints[].num_requests'",
      .min_args = 1,
      .max_args = 2,
      .run = RunServices,
  };
  return *command;
}

}  // namespace natsgw::cli
