// What every shmhubctl command gets and how it reports back.
//
// A command receives its arguments (the words after the command name), the
// values of --label, and the streams to write to; it reads its flags from
// ctl_flags.h. It returns the process exit status: kExitOk, kExitFailure
// (the RPC or the operation failed: "shmhubctl: CODE: message" on err), or
// kExitUsage (the arguments are wrong).
#ifndef SHMHUB_CLIENT_CTL_COMMAND_H_
#define SHMHUB_CLIENT_CTL_COMMAND_H_

#include <cstdint>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "client/hub/hub_client.h"

namespace shmhub::ctl {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;

struct Invocation {
  std::vector<std::string> args;
  std::vector<std::string> labels;
  std::ostream& out;
  std::ostream& err;
};

// Writes "shmhubctl: CODE: message" (plus a hint when the daemon could not
// be reached) to err and returns kExitFailure.
int ReportFailure(const Invocation& invocation, const absl::Status& status);
// Writes "shmhubctl: message" to err and returns kExitUsage.
int ReportUsage(const Invocation& invocation, absl::string_view message);

// A decimal argument such as PEER or EPOCH; INVALID_ARGUMENT naming `what`.
absl::StatusOr<uint32_t> ParseUint32Arg(absl::string_view what, absl::string_view text);

// A client for --hub with --timeout.
std::unique_ptr<client::HubClient> MakeHubClient();

}  // namespace shmhub::ctl

#endif  // SHMHUB_CLIENT_CTL_COMMAND_H_
