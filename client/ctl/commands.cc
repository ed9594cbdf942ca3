#include "client/ctl/commands.h"

#include <algorithm>
#include <set>

#include "absl/flags/commandlineflag.h"
#include "absl/flags/flag.h"
#include "absl/flags/reflection.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/ctl/command_line.h"
#include "client/ctl/ctl_flags.h"
#include "client/ctl/inspect_command.h"
#include "client/ctl/rpc_commands.h"
#include "client/ctl/watch_command.h"

namespace shmhub::ctl {
namespace {

const std::vector<std::string>& GlobalFlags() {
  static const auto* const flags = new std::vector<std::string>{"hub", "json", "timeout"};
  return *flags;
}

// --label repeats, so it is collected by the parser instead of being an
// absl flag (ctl_flags.h); its help lives here.
constexpr char kLabelFlag[] = "label";
constexpr char kLabelHelp[] =
    "A label KEY=VALUE kept with the slot; repeat the flag for more labels.";

const CommandSpec* FindCommand(const std::string& name) {
  for (const CommandSpec& command : Commands()) {
    if (command.name == name) return &command;
  }
  return nullptr;
}

std::string FlagHelpLine(const std::string& name) {
  if (name == kLabelFlag) return absl::StrCat("  --label=KEY=VALUE\n      ", kLabelHelp, "\n");
  const absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
  if (flag == nullptr) return absl::StrCat("  --", name, "\n");
  const std::string default_value = flag->DefaultValue();
  return absl::StrCat("  --", name,
                      default_value.empty() ? "" : absl::StrCat(" (default: ", default_value, ")"),
                      "\n      ", flag->Help(), "\n");
}

std::string Exits() {
  return "exit status: 0 ok; 1 the RPC or operation failed (code and message on stderr); "
         "2 usage error\n";
}

int Usage(std::ostream& err, const std::string& message, const std::string& hint) {
  err << "shmhubctl: " << message << "\n" << hint;
  return kExitUsage;
}

}  // namespace

const std::vector<CommandSpec>& Commands() {
  static const auto* const commands = new std::vector<CommandSpec>{
      {"info", "", "Show the segment's geometry, heartbeat settings and the hub instance.", {},
       0, 0, &RunInfo},
      {"reserve", "[--ttl=30s] [--owner=NAME] [--label=KEY=VALUE ...] [--request_id=ID]",
       "Reserve the lowest free slot for a guest; prints its peer_id and epoch.",
       {"ttl", "owner", kLabelFlag, "request_id"}, 0, 0, &RunReserve},
      {"release", "PEER EPOCH", "Give back an unclaimed reservation (fenced by EPOCH).", {}, 2,
       2, &RunRelease},
      {"evict", "PEER EPOCH [--reason=TEXT]",
       "Remove an attached guest and recover its slot (fenced by EPOCH).", {"reason"}, 2, 2,
       &RunEvict},
      {"get", "PEER", "Show one slot in detail.", {}, 1, 1, &RunGet},
      {"list", "[--all]", "Show the occupied slots (--all: every slot) as a table.", {"all"}, 0,
       0, &RunList},
      {"watch", "[--snapshot] [--resume_after=N [--instance=ID]] [--exit_on_shutdown]",
       "Print the hub's events as they happen, one line each, until Ctrl-C; reconnects and "
       "resumes by itself.",
       {"snapshot", "resume_after", "instance", "exit_on_shutdown"}, 0, 0, &RunWatch},
      {"inspect", "PATH [--all]",
       "Dump a segment file offline (header, peers, rings, pool); needs no daemon.", {"all"}, 1,
       1, &RunInspect},
      {"health", "", "Ask the daemon's health service; exit 0 when SERVING.", {}, 0, 0,
       &RunHealth},
  };
  return *commands;
}

std::string GeneralUsage() {
  std::string out =
      "shmhubctl: manage the guest slots of a shmhubd, watch its events, inspect a segment.\n\n"
      "usage: shmhubctl [--hub=127.0.0.1:50051] [--json] [--timeout=5s] <command> [args]\n\n"
      "commands:\n";
  for (const CommandSpec& command : Commands()) {
    absl::StrAppend(&out, "  ", command.name, command.synopsis.empty() ? "" : " ",
                    command.synopsis, "\n      ", command.summary, "\n");
  }
  out += "\nglobal flags:\n";
  for (const std::string& flag : GlobalFlags()) out += FlagHelpLine(flag);
  out += "\n'shmhubctl help COMMAND' (or COMMAND --help) shows a command's flags.\n";
  out += Exits();
  return out;
}

std::string CommandUsage(const CommandSpec& command) {
  std::string out = absl::StrCat("usage: shmhubctl [global flags] ", command.name,
                                 command.synopsis.empty() ? "" : " ", command.synopsis, "\n\n",
                                 command.summary, "\n");
  if (!command.flags.empty()) {
    out += "\nflags:\n";
    for (const std::string& flag : command.flags) out += FlagHelpLine(flag);
  }
  out += "\nglobal flags:\n";
  for (const std::string& flag : GlobalFlags()) out += FlagHelpLine(flag);
  out += Exits();
  return out;
}

int RunShmhubctl(int argc, const char* const* argv, std::ostream& out, std::ostream& err) {
  std::set<std::string> known(GlobalFlags().begin(), GlobalFlags().end());
  for (const CommandSpec& command : Commands()) {
    for (const std::string& flag : command.flags) {
      if (flag != kLabelFlag) known.insert(flag);
    }
  }
  const std::string hint = "run 'shmhubctl --help' for usage\n";
  absl::StatusOr<CommandLine> line = ParseCommandLine(argc, argv, known, {kLabelFlag});
  if (!line.ok()) return Usage(err, std::string(line.status().message()), hint);

  std::vector<std::string> words = line->positionals;
  if (words.empty()) {
    if (line->help) {
      out << GeneralUsage();
      return kExitOk;
    }
    return Usage(err, "no command given", hint);
  }
  if (words[0] == "help") {
    if (words.size() == 1) {
      out << GeneralUsage();
      return kExitOk;
    }
    const CommandSpec* command = FindCommand(words[1]);
    if (command == nullptr) return Usage(err, absl::StrCat("unknown command '", words[1], "'"), hint);
    out << CommandUsage(*command);
    return kExitOk;
  }
  const CommandSpec* command = FindCommand(words[0]);
  if (command == nullptr) return Usage(err, absl::StrCat("unknown command '", words[0], "'"), hint);
  const std::string command_hint =
      absl::StrCat("run 'shmhubctl help ", command->name, "' for usage\n");
  if (line->help) {
    out << CommandUsage(*command);
    return kExitOk;
  }

  std::vector<std::string> misplaced;
  for (const std::string& flag : line->flags_given) {
    const bool global =
        std::find(GlobalFlags().begin(), GlobalFlags().end(), flag) != GlobalFlags().end();
    const bool own = std::find(command->flags.begin(), command->flags.end(), flag) !=
                     command->flags.end();
    if (!global && !own) misplaced.push_back("--" + flag);
  }
  if (!misplaced.empty()) {
    return Usage(err,
                 absl::StrCat("'", command->name, "' does not take ",
                              absl::StrJoin(misplaced, ", ")),
                 command_hint);
  }
  const size_t arg_count = words.size() - 1;
  if (arg_count < command->min_args || arg_count > command->max_args) {
    return Usage(err,
                 absl::StrCat("'", command->name, "' takes ",
                              command->min_args == command->max_args
                                  ? absl::StrCat(command->min_args)
                                  : absl::StrCat(command->min_args, "..", command->max_args),
                              " argument(s), got ", arg_count),
                 command_hint);
  }
  if (absl::GetFlag(FLAGS_timeout) <= absl::ZeroDuration()) {
    return Usage(err, "--timeout must be positive", hint);
  }

  Invocation invocation{std::vector<std::string>(words.begin() + 1, words.end()),
                        line->repeated[kLabelFlag], out, err};
  return command->run(invocation);
}

}  // namespace shmhub::ctl
