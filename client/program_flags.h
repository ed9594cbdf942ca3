// What every small shmhub program (shmhub-guest, examples/echo_host,
// examples/echo_guest) does before its real work: point --help at the flags
// of its own main file, and wait for SIGTERM/SIGINT with a timeout.
// Header-only, so programs outside client/ need no extra library.
#ifndef SHMHUB_CLIENT_PROGRAM_FLAGS_H_
#define SHMHUB_CLIENT_PROGRAM_FLAGS_H_

#include <signal.h>
#include <time.h>

#include <string>

#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace shmhub::client {

// --help and --helpshort list the flags defined in the file whose path ends
// with `main_file` (Abseil's default looks for a file named after the
// binary), under `usage`.
inline void ConfigureProgramUsage(absl::string_view main_file, absl::string_view usage) {
  absl::FlagsUsageConfig config;
  config.contains_help_flags = [file = std::string(main_file)](absl::string_view path) {
    return absl::EndsWith(path, file);
  };
  config.contains_helpshort_flags = config.contains_help_flags;
  absl::SetFlagsUsageConfig(config);
  absl::SetProgramUsageMessage(usage);
}

// Waits up to `timeout` for one of `signals` (which the caller has blocked
// in every thread); returns its number, or 0 when none arrived.
inline int WaitForSignal(const sigset_t& signals, absl::Duration timeout) {
  const timespec ts = absl::ToTimespec(timeout);
  const int sig = sigtimedwait(&signals, nullptr, &ts);
  return sig > 0 ? sig : 0;
}

}  // namespace shmhub::client

#endif  // SHMHUB_CLIENT_PROGRAM_FLAGS_H_
