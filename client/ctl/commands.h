// shmhubctl's command table and driver: which commands exist, which
// arguments and flags each takes, the --help text, and RunShmhubctl, which
// main() calls with the process's argv and streams.
#ifndef SHMHUB_CLIENT_CTL_COMMANDS_H_
#define SHMHUB_CLIENT_CTL_COMMANDS_H_

#include <cstddef>
#include <ostream>
#include <string>
#include <vector>

#include "client/ctl/command.h"

namespace shmhub::ctl {

struct CommandSpec {
  std::string name;
  // Arguments and command flags as shown in usage, e.g. "PEER EPOCH [--reason=TEXT]".
  std::string synopsis;
  std::string summary;
  // Command-specific flags it accepts (the global ones always apply).
  std::vector<std::string> flags;
  size_t min_args = 0;
  size_t max_args = 0;
  int (*run)(const Invocation&) = nullptr;
};

// Every command, in the order --help lists them.
const std::vector<CommandSpec>& Commands();

// The overview --help prints, and one command's help.
std::string GeneralUsage();
std::string CommandUsage(const CommandSpec& command);

// Parses argv, prints help or runs the command; returns the exit status
// (0 ok, 1 failure, 2 usage error). Help goes to `out`, errors to `err`.
int RunShmhubctl(int argc, const char* const* argv, std::ostream& out, std::ostream& err);

}  // namespace shmhub::ctl

#endif  // SHMHUB_CLIENT_CTL_COMMANDS_H_
