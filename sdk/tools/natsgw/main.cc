// natsgw: the command-line tool for natsgw services. Calls them, publishes
// and subscribes with JSON turned into FlatBuffers and back through their
// schemas (local .fbs/.bfbs files, or the binary schema the services
// announce in their Services API metadata), lists and inspects them, and
// puts load on them.
//
//   natsgw call users.RegisterUser '{"email": "ada@example.com"}'
//   natsgw sub 'users.events.>'
//   natsgw services ls
//
// The command line is tokenized here rather than by absl::ParseCommandLine
// (the values are still parsed by Abseil, as each flag's type says) for
// three reasons: Abseil exits with status 1 on an unknown flag, where natsgw
// promises 2 for every usage error; a flag given to a command it does not
// apply to must be refused, which needs to know what was given, not merely
// what differs from the default; and --header repeats, where an Abseil flag
// keeps only its last value.
#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/commandlineflag.h"
#include "absl/flags/reflection.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "cli.h"
#include "natsgw/version.h"

namespace natsgw::cli {
namespace {

// The connection and logging flags of natsgw_example_support that every
// command takes (its other flags configure the example services).
struct SharedFlag {
  absl::string_view name;
  absl::string_view value;
};
constexpr SharedFlag kConnectionFlags[] = {
    {"nats_url", "URL"},           {"nats_user", "USER"},
    {"nats_password", "PASSWORD"}, {"nats_token", "TOKEN"},
    {"nats_creds", "FILE"},        {"nats_nkey", "NKEY"},
    {"nats_nkey_seed", "FILE"},    {"nats_ca", "FILE"},
    {"nats_cert", "FILE"},         {"nats_key", "FILE"},
    {"log_format", "json|text"},   {"log_level", "LEVEL"},
    {"trace_file", "FILE"},        {"trace_sample_ratio", "RATIO"},
};

constexpr absl::string_view kExitStatusHelp =
    "Exit status:\n"
    "  0    success\n"
    "  1    the operation failed: a remote error, a timeout, no responders,\n"
    "       --count not reached\n"
    "  2    usage error: unknown command or flag, bad argument, JSON that\n"
    "       does not match the schema, bad header\n"
    "  3    no schema for the subject or type\n"
    "  4    cannot connect to NATS\n"
    "  130  interrupted (Ctrl-C) before a command that cannot stop\n"
    "       gracefully was done\n";

// What a command's help says of the flags every command takes.
constexpr absl::string_view kConnectionFlagsSummary =
    "Connection and logging flags (every command; `natsgw --help` explains "
    "them): --nats_url (default $NATS_URL, else nats://127.0.0.1:4222), "
    "--nats_user and --nats_password, --nats_token, --nats_creds, "
    "--nats_nkey and --nats_nkey_seed, --nats_ca, --nats_cert and "
    "--nats_key (each defaulting to the environment variable of its name "
    "in capitals), --log_format (default text), --log_level (default "
    "warning), --trace_file, --trace_sample_ratio.";

bool IsConnectionFlag(absl::string_view name) {
  for (const SharedFlag& flag : kConnectionFlags) {
    if (flag.name == name) return true;
  }
  return false;
}

// `text` word-wrapped to `width` columns, every line but the first indented
// by `indent` spaces.
std::string Wrap(absl::string_view text, size_t indent, size_t width,
                 size_t first_column) {
  std::string out;
  size_t column = first_column;
  for (absl::string_view word : absl::StrSplit(text, ' ', absl::SkipEmpty())) {
    if (column > indent && column + 1 + word.size() > width) {
      absl::StrAppend(&out, "\n", std::string(indent, ' '));
      column = indent;
    } else if (column > indent ||
               (column == first_column && first_column > indent)) {
      out += ' ';
      ++column;
    }
    out.append(word.data(), word.size());
    column += word.size();
  }
  return out;
}

// One flag per entry: "  --name=VALUE   help", aligned.
std::string FlagList(
    const std::vector<std::pair<std::string, std::string>>& flags) {
  constexpr size_t kColumn = 28;
  std::string out;
  for (const auto& [spec, help] : flags) {
    std::string line = absl::StrCat("  ", spec);
    if (line.size() + 2 > kColumn) {
      absl::StrAppend(&line, "\n", std::string(kColumn, ' '));
      absl::StrAppend(&line, Wrap(help, kColumn, 79, kColumn));
    } else {
      line.append(kColumn - line.size(), ' ');
      absl::StrAppend(&line, Wrap(help, kColumn, 79, kColumn));
    }
    absl::StrAppend(&out, line, "\n");
  }
  return out;
}

std::string ConnectionFlagHelp() {
  std::vector<std::pair<std::string, std::string>> flags;
  for (const SharedFlag& shared : kConnectionFlags) {
    absl::CommandLineFlag* flag = absl::FindCommandLineFlag(shared.name);
    if (flag == nullptr) continue;
    flags.emplace_back(absl::StrCat("--", shared.name, "=", shared.value),
                       flag->Help());
  }
  return FlagList(flags);
}

std::string TopHelp() {
  std::string out = absl::StrCat(
      "natsgw ", Version(),
      ": call natsgw services, publish and subscribe from the command\n"
      "line, with JSON turned into FlatBuffers and back through the "
      "services' schemas.\n\n"
      "Usage: natsgw <command> [arguments] [flags]\n\nCommands:\n");
  std::vector<std::vector<std::string>> rows;
  for (const Command& command : Commands()) {
    absl::StrAppend(&out, "  ", command.name,
                    std::string(10 - command.name.size(), ' '),
                    Wrap(command.summary, 12, 79, 12), "\n");
  }
  absl::StrAppend(
      &out,
      "  help      natsgw help <command>: the command's arguments, flags and "
      "examples\n\n"
      "Schemas come from --schema (comma-separated .fbs/.bfbs files or "
      "directories;\ndefault $NATSGW_SCHEMA_PATH, colon-separated), else from "
      "the metadata the\nrunning services announce ($SRV.INFO).\n\n"
      "Connection and logging flags (every command):\n",
      ConnectionFlagHelp(),
      "The diagnostics default to --log_format=text --log_level=warning.\n",
      "\nOther flags: --help (also after a command), --helpfull (every flag of "
      "every\ncommand), --version.\n\n",
      kExitStatusHelp,
      "\nExamples:\n"
      "  natsgw services ls\n"
      "  natsgw call users.RegisterUser '{\"email\": \"ada@example.com\"}'\n"
      "  natsgw sub 'users.events.>'\n");
  return out;
}

std::string CommandHelp(const Command& command) {
  std::string out =
      absl::StrCat("Usage: natsgw ", command.synopsis, " [flags]\n\n");
  for (absl::string_view paragraph :
       absl::StrSplit(command.description, "\n\n")) {
    absl::StrAppend(&out, Wrap(paragraph, 0, 79, 0), "\n\n");
  }
  std::vector<std::pair<std::string, std::string>> flags;
  for (const FlagDoc& doc : command.flags) {
    flags.emplace_back(doc.value.empty()
                           ? absl::StrCat("--", doc.name)
                           : absl::StrCat("--", doc.name, "=", doc.value),
                       std::string(doc.help));
  }
  absl::StrAppend(&out, "Flags:\n", FlagList(flags), "\n",
                  Wrap(kConnectionFlagsSummary, 0, 79, 0), "\n\nExamples:\n");
  for (absl::string_view example :
       absl::StrSplit(command.examples, '\n', absl::SkipEmpty())) {
    absl::StrAppend(&out, "  ", example, "\n");
  }
  absl::StrAppend(&out, "\n", kExitStatusHelp);
  return out;
}

const Command* FindCommand(absl::string_view name) {
  for (const Command& command : Commands()) {
    if (command.name == name) return &command;
  }
  return nullptr;
}

// The commands that take `flag`, for the error naming them.
std::vector<std::string> CommandsTaking(absl::string_view flag) {
  std::vector<std::string> names;
  for (const Command& command : Commands()) {
    for (const FlagDoc& doc : command.flags) {
      if (doc.name == flag) names.emplace_back(command.name);
    }
  }
  return names;
}

// Every flag natsgw takes (those linked in for other programs, such as
// Abseil's --flagfile, are refused and not listed), grouped by the file
// defining it, in the form of Abseil's --helpfull ("  Flags from <file>:"
// headings).
std::string FullHelp() {
  std::map<std::string, std::vector<absl::CommandLineFlag*>> by_file;
  for (const auto& [name, flag] : absl::GetAllFlags()) {
    if (flag->IsRetired()) continue;
    if (!IsConnectionFlag(name) && CommandsTaking(name).empty()) continue;
    by_file[flag->Filename()].push_back(flag);
  }
  std::string out = absl::StrCat(
      "natsgw: every flag, by the file defining it; `natsgw help <command>` "
      "lists the ones\neach command takes and what they mean for it.\n");
  for (auto& [file, flags] : by_file) {
    std::sort(flags.begin(), flags.end(),
              [](absl::CommandLineFlag* a, absl::CommandLineFlag* b) {
                return a->Name() < b->Name();
              });
    absl::StrAppend(&out, "\n  Flags from ", file, ":\n");
    for (absl::CommandLineFlag* flag : flags) {
      std::string line =
          absl::StrCat("--", flag->Name(), " (", flag->Help(),
                       "); default: ", flag->DefaultValue(), ";");
      if (flag->CurrentValue() != flag->DefaultValue()) {
        absl::StrAppend(&line, " currently: ", flag->CurrentValue(), ";");
      }
      absl::StrAppend(&out, "    ", Wrap(line, 6, 79, 4), "\n");
    }
  }
  return out;
}

struct ParsedLine {
  std::vector<std::string> positional;
  absl::flat_hash_set<std::string> given;
  std::vector<std::string> headers;
  bool help = false;
  bool helpfull = false;
  bool version = false;
  // The first problem found; reported once the command is known.
  std::string error;
};

ParsedLine Tokenize(int argc, char** argv) {
  ParsedLine line;
  bool only_positional = false;
  for (int i = 1; i < argc; ++i) {
    const absl::string_view arg = argv[i];
    if (only_positional || arg == "-" || !absl::StartsWith(arg, "-")) {
      line.positional.emplace_back(arg);
      continue;
    }
    if (arg == "--") {
      only_positional = true;
      continue;
    }
    absl::string_view body = arg.substr(absl::StartsWith(arg, "--") ? 2 : 1);
    if (body == "h" || body == "help" || body == "helpshort") {
      line.help = true;
      continue;
    }
    if (body == "helpfull") {
      line.helpfull = true;
      continue;
    }
    if (body == "version") {
      line.version = true;
      continue;
    }
    std::pair<absl::string_view, absl::string_view> kv =
        absl::StrSplit(body, absl::MaxSplits('=', 1));
    std::string name(kv.first);
    const bool has_value = body.size() > kv.first.size();
    std::string value(kv.second);
    absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
    if (flag == nullptr && !has_value && absl::StartsWith(name, "no")) {
      // --nojson: Abseil's spelling of --json=false.
      absl::CommandLineFlag* negated =
          absl::FindCommandLineFlag(name.substr(2));
      if (negated != nullptr && negated->IsOfType<bool>()) {
        flag = negated;
        name = name.substr(2);
        value = "false";
      }
    }
    if (flag == nullptr || flag->IsRetired()) {
      if (line.error.empty()) {
        line.error = absl::StrCat("unknown flag ", arg);
      }
      continue;
    }
    if (!has_value && value.empty()) {
      if (flag->IsOfType<bool>()) {
        value = "true";
      } else if (i + 1 < argc) {
        value = argv[++i];
      } else {
        if (line.error.empty()) {
          line.error = absl::StrCat("flag --", name, " needs a value");
        }
        continue;
      }
    }
    std::string error;
    if (!flag->ParseFrom(value, &error)) {
      if (line.error.empty()) {
        line.error =
            absl::StrCat("bad value \"", value, "\" for --", name, ": ", error);
      }
      continue;
    }
    line.given.insert(name);
    if (name == "header") line.headers.push_back(value);
  }
  return line;
}

// A usage error, with where to read more.
int Usage(absl::string_view message, absl::string_view command) {
  PrintError(UsageError(message));
  Err(command.empty()
          ? "Run 'natsgw --help' for the commands.\n"
          : absl::StrCat("Run 'natsgw help ", command, "' for its usage.\n"));
  return kExitUsage;
}

int Run(int argc, char** argv) {
  // A command line tool is quiet: only warnings and errors, as plain text
  // (the example services' defaults are JSON lines from level info).
  for (auto [name, value] :
       {std::pair{"log_format", "text"}, std::pair{"log_level", "warning"}}) {
    std::string error;
    if (absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name)) {
      flag->ParseFrom(value, &error);
    }
  }
  ParsedLine line = Tokenize(argc, argv);
  if (line.version) {
    Out(absl::StrCat("natsgw ", Version(), "\n"));
    return kExitOk;
  }
  if (line.helpfull) {
    Out(FullHelp());
    return kExitOk;
  }
  if (line.positional.empty()) {
    if (line.help) {
      Out(TopHelp());
      return kExitOk;
    }
    if (!line.error.empty()) return Usage(line.error, "");
    Err(TopHelp());
    return kExitUsage;
  }
  std::string name = line.positional[0];
  std::vector<std::string> args(line.positional.begin() + 1,
                                line.positional.end());
  if (name == "help") {
    if (args.empty()) {
      Out(TopHelp());
      return kExitOk;
    }
    name = args[0];
    line.help = true;
  }
  const Command* command = FindCommand(name);
  if (command == nullptr) {
    std::vector<std::string> names;
    for (const Command& c : Commands()) names.emplace_back(c.name);
    return Usage(
        absl::StrCat("unknown command \"", name, "\"; the commands are ",
                     absl::StrJoin(names, ", ")),
        "");
  }
  if (line.help) {
    Out(CommandHelp(*command));
    return kExitOk;
  }
  if (!line.error.empty()) return Usage(line.error, command->name);

  // Flags of other commands (or of the example services) are refused:
  // silently ignoring one hides a typo or a misunderstanding.
  std::vector<std::string> given(line.given.begin(), line.given.end());
  std::sort(given.begin(), given.end());
  for (const std::string& flag : given) {
    if (IsConnectionFlag(flag)) continue;
    bool takes = false;
    for (const FlagDoc& doc : command->flags) takes |= doc.name == flag;
    if (takes) continue;
    const std::vector<std::string> takers = CommandsTaking(flag);
    return Usage(
        takers.empty()
            ? absl::StrCat("flag --", flag, " is not a flag of natsgw")
            : absl::StrCat("flag --", flag, " does not apply to natsgw ",
                           command->name, " (it is a flag of natsgw ",
                           absl::StrJoin(takers, ", natsgw "), ")"),
        command->name);
  }
  const int n = static_cast<int>(args.size());
  if (n < command->min_args || n > command->max_args) {
    return Usage(absl::StrCat(n < command->min_args ? "missing" : "too many",
                              " arguments; usage: natsgw ", command->synopsis),
                 command->name);
  }
  Invocation invocation{.command = std::string(command->name),
                        .args = std::move(args),
                        .given = std::move(line.given),
                        .headers = std::move(line.headers)};
  const absl::Status status = command->run(invocation);
  PrintError(status);
  const int exit_status = ExitStatusOf(status);
  if (exit_status == kExitUsage && !IsReported(status)) {
    Err(absl::StrCat("Run 'natsgw help ", command->name, "' for its usage.\n"));
  }
  return exit_status;
}

// Takes SIGINT and SIGTERM for the whole process on a thread of its own, so
// that they reach the command as OnInterruptSignal() calls instead of
// interrupting whichever thread the kernel picks. Constructed before any
// other thread exists (the mask is inherited); joined before main returns.
class SignalThread {
 public:
  SignalThread() {
    sigset_t set = Signals();
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    thread_ = std::thread([this] { Loop(); });
  }
  ~SignalThread() {
    stopping_.store(true);
    pthread_kill(thread_.native_handle(), SIGUSR1);
    thread_.join();
  }
  SignalThread(const SignalThread&) = delete;
  SignalThread& operator=(const SignalThread&) = delete;

 private:
  // SIGUSR1 only wakes the thread to end it.
  static sigset_t Signals() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGUSR1);
    return set;
  }
  void Loop() {
    const sigset_t set = Signals();
    for (;;) {
      int signal = 0;
      if (sigwait(&set, &signal) != 0) continue;
      if (signal == SIGUSR1) {
        if (stopping_.load()) return;
        continue;
      }
      OnInterruptSignal();
    }
  }

  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

}  // namespace

const std::vector<Command>& Commands() {
  static const std::vector<Command>* commands =
      new std::vector<Command>{CallCommand(), PubCommand(), SubCommand(),
                               ServicesCommand(), BenchCommand()};
  return *commands;
}

}  // namespace natsgw::cli

int main(int argc, char** argv) {
  int exit_status;
  {
    natsgw::cli::SignalThread signals;
    exit_status = natsgw::cli::Run(argc, argv);
  }
  return exit_status;
}
