#include "client/ctl/command.h"

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "client/ctl/ctl_flags.h"

namespace shmhub::ctl {

int ReportFailure(const Invocation& invocation, const absl::Status& status) {
  invocation.err << "shmhubctl: " << absl::StatusCodeToString(status.code()) << ": "
                 << status.message() << "\n";
  if (status.code() == absl::StatusCode::kUnavailable ||
      status.code() == absl::StatusCode::kDeadlineExceeded) {
    invocation.err << "shmhubctl: is shmhubd running and listening on "
                   << absl::GetFlag(FLAGS_hub) << "? (see --hub)\n";
  }
  return kExitFailure;
}

int ReportUsage(const Invocation& invocation, absl::string_view message) {
  invocation.err << "shmhubctl: " << message << "\n";
  return kExitUsage;
}

absl::StatusOr<uint32_t> ParseUint32Arg(absl::string_view what, absl::string_view text) {
  uint32_t value = 0;
  if (text.empty() || text[0] == '+' || text[0] == '-' || !absl::SimpleAtoi(text, &value)) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " must be a decimal number 0..4294967295, got '", text, "'"));
  }
  return value;
}

std::unique_ptr<client::HubClient> MakeHubClient() {
  auto hub = std::make_unique<client::HubClient>(absl::GetFlag(FLAGS_hub));
  hub->set_timeout(absl::GetFlag(FLAGS_timeout));
  return hub;
}

}  // namespace shmhub::ctl
