// The command-line grammar of shmhubctl:
//
//   shmhubctl [flags] <command> [args] [flags]
//
// Flags may come before or after the command and its arguments:
// --name=value, --name value (not for booleans), --name / --noname for
// booleans; a single dash works too. "--" ends the flags, and everything
// after it is an argument. Flags named in `repeated` may be given any number
// of times; their values are collected in order instead of being set.
// Every other flag must be a registered absl flag named in `known`; its
// value is parsed and stored into that flag.
//
// absl::ParseCommandLine is not used because it exits the process itself
// (status 1) on a bad flag, keeps only the last value of a repeated flag,
// and cannot tell which command a flag was given to.
#ifndef SHMHUB_CLIENT_CTL_COMMAND_LINE_H_
#define SHMHUB_CLIENT_CTL_COMMAND_LINE_H_

#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace shmhub::ctl {

struct CommandLine {
  // The command and its arguments, in order.
  std::vector<std::string> positionals;
  // Names of the flags given (known and repeated ones).
  std::set<std::string> flags_given;
  // Values of each repeated flag, in order.
  std::map<std::string, std::vector<std::string>> repeated;
  // --help, -h or -help was given.
  bool help = false;
};

// Parses argv[1..argc-1]. INVALID_ARGUMENT, naming the flag, for an unknown
// flag, a missing value, or a value the flag's type does not accept; flags
// parsed before the error keep their new values.
absl::StatusOr<CommandLine> ParseCommandLine(int argc, const char* const* argv,
                                             const std::set<std::string>& known,
                                             const std::set<std::string>& repeated);

}  // namespace shmhub::ctl

#endif  // SHMHUB_CLIENT_CTL_COMMAND_LINE_H_
