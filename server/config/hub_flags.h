// shmhubd's command-line flags and their translation into a HubConfig.
//
// The flag names are part of the product's interface (scripts and
// deployments spell them): `shmhubd --help` lists them with their defaults.
// Durations are written the Abseil way: "100ms", "1s", "2m".
//
// Thread safety: read the flags after absl::ParseCommandLine, from one thread.
#ifndef SHMHUB_SERVER_CONFIG_HUB_FLAGS_H_
#define SHMHUB_SERVER_CONFIG_HUB_FLAGS_H_

#include <cstdint>
#include <string>

#include "absl/flags/declare.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "server/config/hub_config.h"

ABSL_DECLARE_FLAG(std::string, segment);
ABSL_DECLARE_FLAG(uint32_t, max_guests);
ABSL_DECLARE_FLAG(uint32_t, ring_bytes);
ABSL_DECLARE_FLAG(std::string, slot_classes);
ABSL_DECLARE_FLAG(uint32_t, max_payload_size);
ABSL_DECLARE_FLAG(absl::Duration, heartbeat_interval);
ABSL_DECLARE_FLAG(absl::Duration, crash_timeout);
ABSL_DECLARE_FLAG(bool, require_heartbeat);
ABSL_DECLARE_FLAG(absl::Duration, heartbeat_grace);
ABSL_DECLARE_FLAG(absl::Duration, default_lease_ttl);
ABSL_DECLARE_FLAG(absl::Duration, max_lease_ttl);
ABSL_DECLARE_FLAG(uint32_t, journal_capacity);
ABSL_DECLARE_FLAG(uint32_t, watcher_queue);
ABSL_DECLARE_FLAG(uint32_t, max_watchers);
ABSL_DECLARE_FLAG(absl::Duration, watch_progress_interval);
ABSL_DECLARE_FLAG(std::string, listen);
ABSL_DECLARE_FLAG(absl::Duration, shutdown_grace);
ABSL_DECLARE_FLAG(absl::Duration, host_ack_timeout);
ABSL_DECLARE_FLAG(std::string, stop_mode);
ABSL_DECLARE_FLAG(bool, reset_segment);

namespace shmhub::server {

// Builds a HubConfig from the current flag values and validates it. The
// error names the flag, the value and the allowed range.
absl::StatusOr<HubConfig> HubConfigFromFlags();

// For absl::FlagsUsageConfig: true for the file that defines shmhubd's
// flags, so --help lists them, and that file's name as --help shows it
// ("server/config/hub_flags.cc" rather than the build machine's absolute path).
bool IsHubFlagsFile(absl::string_view filename);
std::string NormalizeFlagsFile(absl::string_view filename);

}  // namespace shmhub::server

#endif  // SHMHUB_SERVER_CONFIG_HUB_FLAGS_H_
