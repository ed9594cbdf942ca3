// Every flag of shmhubctl. Global ones apply to all commands; the others
// are accepted only by the commands that list them (commands.cc), so a flag
// given to the wrong command is a usage error rather than silently ignored.
// --label is not here: it may repeat, which absl flags do not support, so
// the command-line parser collects its values itself (command_line.h).
#ifndef SHMHUB_CLIENT_CTL_CTL_FLAGS_H_
#define SHMHUB_CLIENT_CTL_CTL_FLAGS_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/flags/declare.h"
#include "absl/time/time.h"

// Global.
ABSL_DECLARE_FLAG(std::string, hub);
ABSL_DECLARE_FLAG(bool, json);
ABSL_DECLARE_FLAG(absl::Duration, timeout);

// reserve
ABSL_DECLARE_FLAG(std::optional<absl::Duration>, ttl);
ABSL_DECLARE_FLAG(std::string, owner);
ABSL_DECLARE_FLAG(std::string, request_id);
// evict
ABSL_DECLARE_FLAG(std::string, reason);
// list, inspect
ABSL_DECLARE_FLAG(bool, all);
// watch
ABSL_DECLARE_FLAG(bool, snapshot);
ABSL_DECLARE_FLAG(std::optional<uint64_t>, resume_after);
ABSL_DECLARE_FLAG(std::string, instance);
ABSL_DECLARE_FLAG(bool, exit_on_shutdown);

#endif  // SHMHUB_CLIENT_CTL_CTL_FLAGS_H_
